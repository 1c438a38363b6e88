"""Counterfactual identity swaps: change only identity terms in the evaluation texts and see what flips.

Axes: each sensitive column whose values appear as words in the texts (e.g. Male -> Female), gendered words
and pronouns (he/she, husband/wife, ...), and first names by gender and by race/ethnicity (langtest lexicons).
The originals' predictions come from Evidence; only the swapped texts need new forward passes.
"""
from __future__ import annotations

import re

import numpy as np

from ..results import Measurement, ModelRole, Status
from ..stats import bootstrap_mean_ci, wilson_ci

NAME = "bias"
ROLES = (ModelRole.ADAPTED.value, ModelRole.BASE_PROBE.value)


def _case_like(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def pair_swapper(pairs: dict[str, str]):
    """A function that swaps every listed word for its partner in one pass, keeping capitalisation."""
    table = {a.lower(): b for a, b in pairs.items()}
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, table), key=len, reverse=True)) + r")\b", re.I)

    def swap(text: str) -> str:
        return pattern.sub(lambda m: _case_like(table[m.group(0).lower()], m.group(0)), text)

    return pattern, swap


SEX_PAIRS = {"male": "female", "man": "woman", "men": "women", "he": "she", "him": "her", "his": "her",
             "husband": "wife", "father": "mother", "son": "daughter", "boy": "girl", "boys": "girls",
             "brother": "sister", "mr": "ms", "himself": "herself", "king": "queen", "uncle": "aunt"}
SEX_PAIRS.update({v: k for k, v in list(SEX_PAIRS.items()) if v != "her"})
SEX_PAIRS["her"] = "his"


def _axes(evidence, split, rng) -> dict:
    """{axis: (row indices, swapped texts)} for every axis that occurs in the texts."""
    from ..builtin_data import identity_lexicon

    texts = split.texts
    axes = {}
    for col in evidence.dataset.sensitive:
        values = [v for v in sorted(split.frame[col].astype(str).unique()) if v.strip()]
        if len(values) < 2:
            continue
        rows, new = [], []
        for i, (t, v) in enumerate(zip(texts, split.frame[col].astype(str))):
            pat = re.compile(r"\b" + re.escape(v) + r"\b")
            if pat.search(t):
                other = values[(values.index(v) + 1 + int(rng.integers(len(values) - 1))) % len(values)]
                rows.append(i)
                new.append(pat.sub(other, t))
        if rows:
            axes[f"{col} values"] = (rows, new)
    pattern, swap = pair_swapper(SEX_PAIRS)
    rows = [i for i, t in enumerate(texts) if pattern.search(t)]
    if rows:
        axes["gendered words"] = (rows, [swap(texts[i]) for i in rows])
    lex = identity_lexicon()
    capitalised = re.compile(r"\b[A-Z][a-z]+\b")        # one cheap scan; names are looked up in a dict
    for axis, groups in (("names by gender", lex["gender_names"]), ("names by race", lex["race_names"])):
        owner = {}
        for g, names in groups.items():
            for name in names:
                owner.setdefault(name, g)
        if not owner:
            continue
        rows, new = [], []
        for i, t in enumerate(texts):
            if any(w in owner for w in capitalised.findall(t)):
                def repl(m):
                    if m.group(0) not in owner:
                        return m.group(0)
                    others = [g for g in groups if g != owner[m.group(0)]]
                    pool = groups[others[int(rng.integers(len(others)))]]
                    return pool[int(rng.integers(len(pool)))]
                rows.append(i)
                new.append(capitalised.sub(repl, t))
        if rows:
            axes[axis] = (rows, new)
    return axes


def counterfactual_measurements(evidence, config, stats):
    from ..evidence import score_texts

    split = evidence.dataset.splits[config.split]
    rng = np.random.default_rng(stats.seed)
    axes = _axes(evidence, split, rng)
    if not axes:
        return [], None, ["Counterfactual test skipped: no identity terms (sensitive values, gendered words, "
                          "lexicon names) occur in the evaluation texts."]
    pos = evidence.dataset.positive
    for axis, (rows, new) in list(axes.items()):
        if len(rows) > config.counterfactual_samples:
            keep = np.sort(rng.choice(len(rows), config.counterfactual_samples, replace=False))
            axes[axis] = ([rows[i] for i in keep], [new[i] for i in keep])
    # One bucketed pass over every axis's swapped texts, then split back per axis.
    all_new = [t for _, new in axes.values() for t in new]
    scored = score_texts(evidence, all_new, f"counterfactual swaps ({len(axes)} axes)")
    out, examples, offset = [], [], 0
    for axis, (rows, new) in axes.items():
        rows = np.asarray(rows)
        n = len(rows)
        swapped = {role: p[offset:offset + n] for role, p in scored.items()}
        offset += n
        for role in ROLES:
            before = evidence.probs[role][config.split][rows]
            after = swapped[role]
            flips = before.argmax(1) != after.argmax(1)
            change = np.abs(after[:, pos] - before[:, pos]) if pos is not None else 0.5 * np.abs(after - before).sum(1)
            grp = {"axis": axis}
            out.append(Measurement(NAME, "bias.counterfactual_flip_rate", role, float(flips.mean()),
                                   wilson_ci(int(flips.sum()), n, stats.ci_level), n, Status.MEASURED, grp))
            out.append(Measurement(NAME, "bias.counterfactual_prob_change", role, float(change.mean()),
                                   bootstrap_mean_ci(change, stats.n_boot, stats.seed, stats.ci_level), n, Status.MEASURED, grp,
                                   {"measure": "mean |change in P(positive)|" if pos is not None else "mean total variation"}))
            if role == ModelRole.ADAPTED.value:
                for j in np.argsort(-change, kind="stable")[:3]:
                    examples.append([axis, split.texts[rows[j]], new[j], float(before[j, pos if pos is not None else 0]),
                                     float(after[j, pos if pos is not None else 0]), bool(flips[j])])
    table = {"title": "Counterfactual pairs with the largest change (adapted model)",
             "columns": ["axis", "original text", "swapped text", "P(positive) before", "P(positive) after", "flipped"],
             "rows": examples}
    return out, table, []
