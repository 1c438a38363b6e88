"""Attribution: which words the adapted model relies on, whether the explanations converge, how much weight
sensitive words carry, and how all that shifted from the base probe (M1) to the fine-tuned model (M2)."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..results import CheckResult, Measurement, ModelRole, Status, skipped
from ..stats import bootstrap_mean_ci, wilson_ci

NAME = "attribution"
METRICS = ("attribution.converged_share", "attribution.sensitive_share", "attribution.shift_spearman",
           "attribution.shift_top10_overlap", "attribution.sensitive_share_change", "attribution.infidelity",
           "attribution.sensitivity_max")
OPTIONS = frozenset({"samples", "n_steps", "adaptive", "max_steps", "tolerance", "quality_samples", "min_freq",
                     "sensitive_terms"})
A, M1 = ModelRole.ADAPTED.value, ModelRole.BASE_PROBE.value
GENERIC_WORDS = {"other", "unknown", "none", "not", "and", "or", "of"}  # category fillers, not identity
IDENTITY_TERMS = ("male", "female", "man", "woman", "men", "women", "he", "she", "him", "her", "his", "hers",
                  "husband", "wife", "father", "mother", "son", "daughter", "boy", "girl", "white", "black",
                  "asian", "hispanic", "latino", "latina", "indian", "eskimo", "islander", "african", "american",
                  "caucasian", "jewish", "muslim", "christian", "gay", "lesbian", "transgender")


@dataclass(frozen=True)
class AttributionConfig:
    samples: int = 64
    n_steps: int = 50
    adaptive: bool = True
    max_steps: int = 300
    tolerance: float = 0.05
    quality_samples: int = 4
    min_freq: int = 3
    sensitive_terms: tuple = ()

    def schedule(self) -> tuple[int, ...]:
        """Step counts tried in turn: adaptive starts low and doubles; fixed starts at n_steps."""
        ladder = [8, 16, 24, 32] + [s for s in (50, 100, 200, 300) if s >= self.n_steps] if self.adaptive \
            else [self.n_steps] + [s for s in (100, 200, 300) if s > self.n_steps]
        return tuple(sorted({s for s in ladder if s <= self.max_steps} | {min(self.n_steps, self.max_steps)}))


def parse_config(section) -> AttributionConfig:
    return AttributionConfig(samples=section.int("samples", 64, lo=2, hi=100000),
                             n_steps=section.int("n_steps", 50, lo=4, hi=1000),
                             adaptive=bool(section.bool("adaptive", True)),
                             max_steps=section.int("max_steps", 300, lo=4, hi=5000),
                             tolerance=section.float("tolerance", 0.05, lo=1e-6, hi=1.0),
                             quality_samples=section.int("quality_samples", 4, lo=0, hi=1000),
                             min_freq=section.int("min_freq", 3, lo=1),
                             sensitive_terms=tuple(section.str_list("sensitive_terms", []) or []))


def stratified_sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Equal numbers per label where possible, seeded; returns sorted row indices."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per = max(1, n // len(classes))
    rows = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        rows.extend(rng.choice(idx, min(per, idx.size), replace=False))
    rest = np.setdiff1d(np.arange(y.size), rows)
    if len(rows) < n and rest.size:
        rows.extend(rng.choice(rest, min(n - len(rows), rest.size), replace=False))
    return np.sort(np.asarray(rows[:n], dtype=int))


def sensitive_words(evidence, config) -> set[str]:
    words = set(IDENTITY_TERMS) | {t.lower() for t in config.sensitive_terms}
    for col in evidence.dataset.sensitive:
        for value in evidence.dataset.splits["current"].frame[col].astype(str).unique():
            words |= {w.lower() for w in re.findall(r"[A-Za-z]+", value)} - GENERIC_WORDS
    return words


def summarise(attrs, special, sensitive: set[str]) -> dict:
    """Per-example word shares, sensitive share, and global importance over the sample."""
    from ..attribution_engine import words_of

    per_example, shares, totals = [], [], {}
    for a in attrs:
        words = words_of(a.tokens, a.scores, special)
        mass = sum(abs(s) for _, s in words) or 1.0
        per_example.append([(w, s / mass) for w, s in words])
        sens = sum(abs(s) for w, s in words if w in sensitive)
        shares.append(sens / mass if any(w in sensitive for w, _ in words) else np.nan)
    for words in per_example:
        for w, s in words:
            t = totals.setdefault(w, [0.0, 0, 0.0])
            t[0] += abs(s)
            t[1] += 1
            t[2] += s
    return {"words": per_example, "sensitive_share": np.array(shares, dtype=float), "totals": totals}


def importance(summary: dict, min_freq: int) -> dict[str, float]:
    return {w: t[0] / t[1] for w, t in summary["totals"].items() if t[1] >= min_freq}


def spearman_and_overlap(imp_a: dict, imp_b: dict, k: int = 10) -> tuple[float, float]:
    from scipy.stats import spearmanr

    vocab = sorted(set(imp_a) | set(imp_b))
    if len(vocab) < 3:
        return float("nan"), float("nan")
    va = np.array([imp_a.get(w, 0.0) for w in vocab])
    vb = np.array([imp_b.get(w, 0.0) for w in vocab])
    rho = 1.0 if np.allclose(va, vb) else float(spearmanr(va, vb).statistic)
    top_a = set(sorted(imp_a, key=lambda w: (-imp_a[w], w))[:k])
    top_b = set(sorted(imp_b, key=lambda w: (-imp_b[w], w))[:k])
    return rho, len(top_a & top_b) / max(1, min(k, len(top_a), len(top_b)))


def run(evidence, config: AttributionConfig, stats) -> CheckResult:
    from ..attribution_engine import ProbeClassifier, attribute_many
    from ..models.baselines import probe_as_linear

    models = evidence.models
    if models is None:
        return skipped(NAME, "attribution needs the models themselves; this evidence came from a cache without them")
    split = evidence.dataset.splits["current"]
    rows = stratified_sample(split.y, min(config.samples, len(split)), stats.seed)
    texts = [split.texts[i] for i in rows]
    max_len = evidence.info["max_length"]
    targets = [int(t) for t in evidence.pred(A, "current")[rows]]
    special = set(models.tokenizer.all_special_tokens)
    sensitive = sensitive_words(evidence, config)
    schedule = config.schedule()
    w, b = probe_as_linear(evidence.probe)
    probe_module = ProbeClassifier(models.base, w, b)
    runs = {A: attribute_many(models.adapted, models.tokenizer, texts, targets, max_len, schedule, config.tolerance,
                              "attribution: adapted model"),
            M1: attribute_many(probe_module, models.tokenizer, texts,
                               [int(t) for t in evidence.pred(M1, "current")[rows]], max_len, schedule,
                               config.tolerance, "attribution: base probe")}
    out, tables, cost = [], {}, {}
    summaries = {}
    n = len(rows)
    for role, (attrs, seconds) in runs.items():
        conv = sum(a.converged for a in attrs)
        passes = sum(a.passes for a in attrs)
        cost[role] = {"passes": passes, "seconds": round(seconds, 2)}
        steps = [a.steps for a in attrs]
        rel = [abs(a.delta) / max(abs(a.gap), 1e-8) for a in attrs]
        out.append(Measurement(NAME, "attribution.converged_share", role, conv / n, wilson_ci(conv, n, stats.ci_level),
                               n, Status.MEASURED, None,
                               {"tolerance": config.tolerance, "median_steps": float(np.median(steps)),
                                "max_relative_delta": float(max(rel)), "forward_backward_passes": passes,
                                "schedule": list(schedule)}))
        s = summarise(attrs, special, sensitive)
        summaries[role] = s
        share = s["sensitive_share"]
        have = int(np.isfinite(share).sum())
        if have == 0:
            out.append(Measurement(NAME, "attribution.sensitive_share", role, None, None, 0, Status.SKIPPED, None,
                                   {"reason": "no sampled text contains a sensitive term"}))
        else:
            out.append(Measurement(NAME, "attribution.sensitive_share", role, float(np.nanmean(share)),
                                   bootstrap_mean_ci(share, stats.n_boot, stats.seed, stats.ci_level), have, Status.MEASURED,
                                   None, {"terms_seen": sorted({wd for ex in s["words"] for wd, _ in ex if wd in sensitive})}))
    imp = {role: importance(summaries[role], config.min_freq) for role in summaries}
    rho, overlap = spearman_and_overlap(imp[A], imp[M1])
    out.append(Measurement(NAME, "attribution.shift_spearman", A, rho, None, n, Status.MEASURED, None,
                           {"versus": M1, "vocabulary": len(set(imp[A]) | set(imp[M1])), "min_freq": config.min_freq}))
    out.append(Measurement(NAME, "attribution.shift_top10_overlap", A, overlap, None, n, Status.MEASURED, None,
                           {"versus": M1}))
    sa, sb = summaries[A]["sensitive_share"], summaries[M1]["sensitive_share"]
    both = np.isfinite(sa) & np.isfinite(sb)
    if both.any():
        diff = sa[both] - sb[both]
        out.append(Measurement(NAME, "attribution.sensitive_share_change", A, float(diff.mean()),
                               bootstrap_mean_ci(diff, stats.n_boot, stats.seed, stats.ci_level), int(both.sum()),
                               Status.MEASURED, None, {"versus": M1, "reading": "share(adapted) - share(base_probe)"}))
    out += _quality(models, probe_module, runs, texts, max_len, config, stats, cost)
    tables["top_words"] = _top_table(summaries, imp, config.min_freq)
    tables["top_words_by_class"] = _class_table(summaries[A], runs[A][0], evidence.dataset.classes, config.min_freq)
    tables["cost"] = {"title": "Attribution cost", "columns": ["model", "examples", "forward+backward passes"],
                      "rows": [[r, n, c["passes"]] for r, c in cost.items()]}
    notes = [f"LayerIntegratedGradients on the embedding layer, {n} label-stratified examples of the current split, "
             f"baseline [CLS] [PAD]... [SEP]; steps tried per example: {', '.join(map(str, schedule))} until "
             f"|delta| <= {config.tolerance:.0%} of |F(x) - F(baseline)|.",
             f"Sensitive words: the values of {', '.join(evidence.dataset.sensitive) or 'no column'} and an identity "
             "lexicon (extend it with checks.attribution.sensitive_terms)."]
    evidence.info.setdefault("attribution_seconds", {}).update({r: c["seconds"] for r, c in cost.items()})
    return CheckResult(NAME, Status.MEASURED, tuple(out), tables=tables, notes=tuple(notes))


def _quality(models, probe_module, runs, texts, max_len, config, stats, cost) -> list[Measurement]:
    from ..attribution_engine import quality_scores

    out = []
    k = min(config.quality_samples, len(texts))
    if k == 0:
        return out
    for role, module in ((A, models.adapted), (M1, probe_module)):
        attrs = runs[role][0]
        scores = [quality_scores(module, models.tokenizer, texts[i], attrs[i].target, attrs[i].steps, max_len,
                                 stats.seed + i) for i in range(k)]
        cost[role]["passes"] += sum(s["passes"] for s in scores)
        for metric in ("infidelity", "sensitivity_max"):
            vals = np.array([s[metric] for s in scores])
            out.append(Measurement(NAME, f"attribution.{metric}", role, float(vals.mean()),
                                   bootstrap_mean_ci(vals, stats.n_boot, stats.seed, stats.ci_level), k, Status.MEASURED,
                                   None, {"normalized": metric == "infidelity",
                                          "perturbation": "Gaussian, 5% of the embedding std" if metric == "infidelity"
                                          else "uniform, radius 2% of the embedding std"}))
    return out


def _top_table(summaries, imp, min_freq) -> dict:
    rows = []
    for role in (A, M1):
        top = sorted(imp[role], key=lambda w: (-imp[role][w], w))[:15]
        for rank, word in enumerate(top, 1):
            rows.append([role, rank, word, imp[role][word], summaries[role]["totals"][word][1]])
    return {"title": f"Top words by mean |attribution share| (words seen at least {min_freq} times)",
            "columns": ["model", "rank", "word", "mean |share|", "count"], "rows": rows}


def _class_table(summary, attrs, classes, min_freq) -> dict:
    per = {}
    for ex, a in zip(summary["words"], attrs):
        for w, s in ex:
            d = per.setdefault(a.target, {}).setdefault(w, [0.0, 0])
            d[0] += s
            d[1] += 1
    rows = []
    for target in sorted(per):
        means = {w: v[0] / v[1] for w, v in per[target].items() if v[1] >= min_freq}
        for word in sorted(means, key=lambda w: (-means[w], w))[:10]:
            rows.append([classes[target], word, means[word], per[target][word][1]])
    return {"title": "Words pushing towards each predicted class (adapted model, mean signed share)",
            "columns": ["predicted class", "word", "mean signed share", "count"], "rows": rows}
