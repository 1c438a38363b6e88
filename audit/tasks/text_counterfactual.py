"""Counterfactual text: swap only identity terms and keep everything else.

Axes: each sensitive column whose values appear as words in the texts (e.g. Male -> Female), gendered words
and pronouns (he/she, husband/wife, ...), and first names by gender and by race/ethnicity (langtest's lexicons,
shipped in resources/).
"""
from __future__ import annotations

import re

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


def counterfactual_axes(dataset, split, rng) -> dict:
    """{axis: (row indices, swapped texts)} for every axis that occurs in the texts."""
    from ..builtin_data import identity_lexicon

    texts = split.inputs
    axes = {}
    for col in dataset.sensitive:
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
