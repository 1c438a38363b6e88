"""Attribution: which units (words of a text, cells of an image) the adapted model relies on, whether the
explanations converge, how much weight sensitive units carry (identity words; image cells in a region of
interest) next to their share of the input, and how all that shifted from the base probe (M1) to the
fine-tuned model (M2). Modalities that draw pictures (images) add a few saliency overlays for the report."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import option
from ..results import CheckResult, Measurement, ModelRole, Status, skipped
from ..stats import bootstrap_mean_ci, wilson_ci

NAME = "attribution"
METRICS = ("attribution.converged_share", "attribution.sensitive_share", "attribution.sensitive_lift",
           "attribution.shift_spearman",
           "attribution.shift_top10_overlap", "attribution.sensitive_share_change", "attribution.infidelity",
           "attribution.sensitivity_max")
A, M1 = ModelRole.ADAPTED.value, ModelRole.BASE_PROBE.value


@dataclass(frozen=True)
class AttributionConfig:
    samples: int = option(64, "examples explained per model (label-stratified, current split)", lo=2, hi=100000)
    n_steps: int = option(50, "integration steps when not adaptive (and the top of the adaptive ladder)",
                          lo=4, hi=1000)
    adaptive: bool = option(True, "per-example step counts: start low, double until the completeness check holds")
    max_steps: int = option(300, "most integration steps tried per example", lo=4, hi=5000)
    tolerance: float = option(0.05, "completeness criterion: |delta| <= tolerance * |F(x) - F(baseline)|",
                              lo=1e-6, hi=1.0)
    quality_samples: int = option(16, "converged examples per model for infidelity (below 16: advisory, no "
                                      "interval)", lo=0, hi=1000)
    # one example keeps the quality metrics under a quarter of the check's time at 16 examples (bench)
    sensitivity_samples: int = option(1, "the first of the quality examples that also get sensitivity_max, three "
                                          "perturbations each (below 16: advisory, no interval; each costs 3 "
                                          "attributions)", lo=0, hi=1000)
    min_freq: int = option(3, "a word counts in the top-word tables when seen at least this often", lo=1)
    sensitive_terms: tuple[str, ...] = option((), "extra sensitive units: words on top of the identity lexicon; "
                                                      "image cells (r1c1 ...) on top of the region of interest")
    overlays: int = option(3, "explained examples drawn as saliency pictures per model in the report (image tasks)",
                           lo=0, hi=12)

    def schedule(self) -> tuple[int, ...]:
        """Step counts tried in turn: adaptive starts low and doubles; fixed starts at n_steps."""
        ladder = [8, 16, 24, 32] + [s for s in (50, 100, 200, 300) if s >= self.n_steps] if self.adaptive \
            else [self.n_steps] + [s for s in (100, 200, 300) if s > self.n_steps]
        return tuple(sorted({s for s in ladder if s <= self.max_steps} | {min(self.n_steps, self.max_steps)}))


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


ADVISORY_BELOW = 16      # quality metrics on fewer examples get no interval and say they are advisory


def summarise(unit_lists, sensitive: set[str], keep=None) -> dict:
    """Per-example unit shares, sensitive share (and the sensitive units' share of all units: words of a text,
    equal-area cells of an image), and global importance over the sample. unit_lists holds, per example,
    (unit, attribution) pairs as the modality names them. Examples with keep False (explanations that did not
    converge) stay in place, empty, so lists remain aligned across models, but add nothing to the shares or the
    importance tables."""
    per_example, shares, areas, totals = [], [], [], {}
    keep = [True] * len(unit_lists) if keep is None else list(keep)
    for words, ok in zip(unit_lists, keep):
        if not ok:
            per_example.append([])
            shares.append(np.nan)
            areas.append(np.nan)
            continue
        mass = sum(abs(s) for _, s in words) or 1.0
        per_example.append([(w, s / mass) for w, s in words])
        sens = sum(abs(s) for w, s in words if w in sensitive)
        count = sum(w in sensitive for w, _ in words)
        shares.append(sens / mass if count else np.nan)
        areas.append(count / len(words) if count else np.nan)
    for words in per_example:
        for w, s in words:
            t = totals.setdefault(w, [0.0, 0, 0.0])
            t[0] += abs(s)
            t[1] += 1
            t[2] += s
    return {"words": per_example, "sensitive_share": np.array(shares, dtype=float),
            "sensitive_area": np.array(areas, dtype=float), "totals": totals, "excluded": len(keep) - sum(keep)}


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


def run(evidence, config: AttributionConfig, stats, models=None) -> CheckResult:
    if models is None:
        return skipped(NAME, "attribution needs the models themselves; this evidence came from a cache without them")
    modality = models.modality
    split = evidence.dataset.splits["current"]
    rows = stratified_sample(split.y, min(config.samples, len(split)), stats.seed)
    inputs = [split.inputs[i] for i in rows]
    schedule = config.schedule()
    explainers = modality.explainers(models)
    labels = {A: "adapted model", M1: "base probe"}
    runs = {role: modality.attribute(explainers[role], inputs, [int(t) for t in evidence.pred(role, "current")[rows]],
                                     schedule, config.tolerance, f"attribution: {labels[role]}") for role in (A, M1)}
    sensitive = modality.sensitive_units(evidence.dataset, config.sensitive_terms)
    cost = {role: {"passes": sum(a.passes for a in attrs), "seconds": round(seconds, 2)}
            for role, (attrs, seconds) in runs.items()}
    summaries = {role: summarise([modality.attribution_units(a) for a in attrs], sensitive,
                                 [a.converged for a in attrs]) for role, (attrs, _) in runs.items()}
    out = []
    for role, (attrs, _) in runs.items():
        out += _convergence(role, attrs, cost[role]["passes"], schedule, config, stats)
        out += _sensitive_share(role, summaries[role], sensitive, stats, modality.unit_name)
    imp = {role: importance(summaries[role], config.min_freq) for role in summaries}
    out += _shift(summaries, imp, config, stats, len(rows))
    out += _quality(modality, explainers, runs, inputs, config, stats, cost)
    unit = modality.unit_name
    tables = {"top_words": _top_table(summaries, imp, config.min_freq, unit),
              "top_words_by_class": _class_table(summaries[A], runs[A][0], evidence.dataset.classes, config.min_freq,
                                                 unit),
              # seconds vary run to run, so they go to CheckResult.cost (the manifest), not to the results
              "cost": {"title": "Attribution cost", "columns": ["model", "examples", "forward+backward passes",
                                                                "of which quality metrics"],
                       "rows": [[r, len(rows), c["passes"], c["quality_passes"]] for r, c in cost.items()]}}
    pictures = _overlay_table(modality, inputs, runs, split.y[rows], evidence.dataset.classes, config.overlays)
    if pictures:
        tables["saliency"] = pictures
    excluded = {role: s["excluded"] for role, s in summaries.items()}
    notes = [modality.attribution_note(len(rows), schedule, config.tolerance),
             modality.sensitive_note(evidence.dataset),
             "Examples whose attributions did not converge are left out of the sensitive share, the shift and the "
             "top tables (left out: " + ", ".join(f"{r} {n}" for r, n in excluded.items()) + ")."]
    if min(config.quality_samples, config.sensitivity_samples) < ADVISORY_BELOW:
        notes.append(f"Quality metrics on fewer than {ADVISORY_BELOW} examples are advisory (no interval): "
                     f"infidelity on up to {config.quality_samples}, sensitivity_max on up to "
                     f"{min(config.sensitivity_samples, config.quality_samples)} converged examples per model.")
    return CheckResult(NAME, Status.MEASURED, tuple(out), tables=tables, notes=tuple(notes),
                       cost={"seconds": {r: c["seconds"] for r, c in cost.items()},
                             "quality_seconds": {r: c["quality_seconds"] for r, c in cost.items()}})


def _convergence(role, attrs, passes, schedule, config, stats) -> list[Measurement]:
    n = len(attrs)
    conv = sum(a.converged for a in attrs)
    rel = [abs(a.delta) / max(abs(a.gap), 1e-8) for a in attrs]
    return [Measurement(NAME, "attribution.converged_share", role, conv / n, wilson_ci(conv, n, stats.ci_level), n,
                        Status.MEASURED, None,
                        {"tolerance": config.tolerance, "median_steps": float(np.median([a.steps for a in attrs])),
                         "max_relative_delta": float(max(rel)), "forward_backward_passes": passes,
                         "schedule": list(schedule)})]


def _sensitive_share(role, summary, sensitive, stats, unit: str) -> list[Measurement]:
    """The share of |attribution| on sensitive units, and that share over the units' share of the input (lift:
    1 = no more than their size; 5 = five times it), per example, averaged with bootstrap intervals."""
    share, area = summary["sensitive_share"], summary["sensitive_area"]
    have = np.isfinite(share)
    if not have.any():
        reason = {"reason": f"no explained example with a converged explanation has a sensitive {unit}",
                  "excluded_unconverged": summary["excluded"]}
        return [Measurement(NAME, metric, role, None, None, 0, Status.SKIPPED, None, reason)
                for metric in ("attribution.sensitive_share", "attribution.sensitive_lift")]
    seen = {"units_seen": sorted({wd for ex in summary["words"] for wd, _ in ex if wd in sensitive})[:40],
            "excluded_unconverged": summary["excluded"]}
    lift = share[have] / area[have]
    n = int(have.sum())
    ci = (stats.n_boot, stats.seed, stats.ci_level)
    return [Measurement(NAME, "attribution.sensitive_share", role, float(share[have].mean()),
                        bootstrap_mean_ci(share[have], *ci), n, Status.MEASURED, None, seen),
            Measurement(NAME, "attribution.sensitive_lift", role, float(lift.mean()), bootstrap_mean_ci(lift, *ci), n,
                        Status.MEASURED, None, {"mean_area_share": float(area[have].mean()),
                                                "reading": f"share of attribution / share of the {unit}s"})]


def _shift(summaries, imp, config, stats, n) -> list[Measurement]:
    rho, overlap = spearman_and_overlap(imp[A], imp[M1])
    out = [Measurement(NAME, "attribution.shift_spearman", A, rho, None, n, Status.MEASURED, None,
                       {"versus": M1, "vocabulary": len(set(imp[A]) | set(imp[M1])), "min_freq": config.min_freq}),
           Measurement(NAME, "attribution.shift_top10_overlap", A, overlap, None, n, Status.MEASURED, None,
                       {"versus": M1})]
    sa, sb = summaries[A]["sensitive_share"], summaries[M1]["sensitive_share"]
    both = np.isfinite(sa) & np.isfinite(sb)
    if both.any():
        diff = sa[both] - sb[both]
        out.append(Measurement(NAME, "attribution.sensitive_share_change", A, float(diff.mean()),
                               bootstrap_mean_ci(diff, stats.n_boot, stats.seed, stats.ci_level), int(both.sum()),
                               Status.MEASURED, None, {"versus": M1, "reading": "share(adapted) - share(base_probe)"}))
    return out


def _quality(modality, explainers, runs, inputs, config, stats, cost) -> list[Measurement]:
    """Infidelity on up to quality_samples and sensitivity_max on up to sensitivity_samples converged examples,
    reusing their attributions; fewer than ADVISORY_BELOW examples give an advisory value with no interval."""
    import time

    from ..progress import Progress

    out = []
    for role in (A, M1):
        attrs = runs[role][0]
        usable = [i for i, a in enumerate(attrs) if a.converged]
        chosen = usable[:config.quality_samples]          # sensitivity_max runs on the first of these
        start = time.perf_counter()
        bar = Progress(f"attribution quality metrics: {role}", len(chosen), "examples")
        scores = []
        for rank, i in enumerate(chosen):
            s = modality.quality_scores(explainers[role], inputs[i], attrs[i], stats.seed + i,
                                        sensitivity=rank < config.sensitivity_samples)
            scores.append(s)
            bar.update(1)
        bar.close()
        cost[role]["quality_passes"] = sum(s["passes"] for s in scores)
        cost[role]["passes"] += cost[role]["quality_passes"]
        cost[role]["quality_seconds"] = round(time.perf_counter() - start, 2)
        for metric, perturbation in (("infidelity", "Gaussian, 5% of the input's std (embeddings or pixels)"),
                                     ("sensitivity_max", "uniform, radius 2% of the input's std (embeddings or "
                                                         "pixels)")):
            vals = np.array([s[metric] for s in scores if s[metric] is not None], dtype=float)
            details = {"normalized": metric == "infidelity", "perturbation": perturbation,
                       "examples": "converged explanations only"}
            if vals.size == 0:
                if not (config.quality_samples if metric == "infidelity"
                        else min(config.quality_samples, config.sensitivity_samples)):
                    continue                                        # not asked for
                out.append(Measurement(NAME, f"attribution.{metric}", role, None, None, 0, Status.SKIPPED, None,
                                       {**details, "reason": "no converged example was sampled for it"}))
                continue
            advisory = vals.size < ADVISORY_BELOW
            ci = None if advisory else bootstrap_mean_ci(vals, stats.n_boot, stats.seed, stats.ci_level)
            if advisory:
                details.update(advisory=True, reason=f"{vals.size} examples < {ADVISORY_BELOW}: advisory, no interval")
            out.append(Measurement(NAME, f"attribution.{metric}", role, float(vals.mean()), ci, int(vals.size),
                                   Status.MEASURED, None, details))
    return out


def _top_table(summaries, imp, min_freq, unit: str) -> dict:
    rows = []
    for role in (A, M1):
        top = sorted(imp[role], key=lambda w: (-imp[role][w], w))[:15]
        for rank, word in enumerate(top, 1):
            rows.append([role, rank, word, imp[role][word], summaries[role]["totals"][word][1]])
    return {"title": f"Top {unit}s by mean |attribution share| ({unit}s seen at least {min_freq} times)",
            "columns": ["model", "rank", unit, "mean |share|", "count"], "rows": rows}


def _class_table(summary, attrs, classes, min_freq, unit: str) -> dict:
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
    return {"title": f"{unit.capitalize()}s pushing towards each predicted class (adapted model, mean signed share)",
            "columns": ["predicted class", unit, "mean signed share", "count"], "rows": rows}


def _overlay_table(modality, inputs, runs, y, classes, limit: int) -> dict | None:
    """The first `limit` explained examples side by side for both models, as PNG data the report embeds."""
    pictures = {role: modality.illustrate(inputs, runs[role][0], limit) for role in (A, M1)} if limit else {}
    k = min(len(p) for p in pictures.values()) if pictures else 0
    if k == 0:
        return None
    rows = [[str(inputs[i]).rsplit("/", 1)[-1], classes[int(y[i])],
             classes[runs[A][0][i].target], {"image/png": pictures[A][i]},
             classes[runs[M1][0][i].target], {"image/png": pictures[M1][i]}] for i in range(k)]
    return {"title": "Saliency: where each model looked (|integrated gradients| in red on the gray image)",
            "columns": ["example", "label", "adapted: predicted", "adapted (M2)", "base probe: predicted",
                        "base + probe (M1)"], "rows": rows}
