"""Transfer: negative transfer (paired bootstrap + exact McNemar), per-group gains, transferability (LogME,
linear-probe CV with a corrected resampled interval), forgetting on a source-task set, and layer-wise debiased
CKA between base and adapted encoders with a permutation noise floor."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import option
from ..results import CheckResult, Measurement, ModelRole, Status
from ..simultaneous import with_simultaneous
from ..stats import CellBootstrap, mcnemar_exact, percentile_ci
from ..transfer_stats import cka_noise_floor, corrected_cv_interval, logme
from .common import accuracy_samples, group_codes, macro_f1, macro_f1_samples

NAME = "transfer"
METRICS = ("transfer.gain_vs_no_transfer", "transfer.gain_vs_base_probe", "transfer.group_gain",
           "transfer.logme", "transfer.linear_probe_cv_accuracy", "transfer.forgetting", "transfer.cka")
A, M1, M0 = ModelRole.ADAPTED.value, ModelRole.BASE_PROBE.value, ModelRole.NO_TRANSFER.value


@dataclass(frozen=True)
class TransferConfig:
    split: str = option("current", "split the gains are measured on", choices=("current", "reference"))
    logme_rows: int = option(2000, "train rows LogME and the probe cross-validation use at most", lo=20)
    cv_folds: int = option(5, "folds of the probe cross-validation and the forgetting probes", lo=2, hi=20)
    cka_permutations: int = option(200, "row shuffles per layer for the CKA noise floor", lo=20, hi=10000)


def paired_gain(y, pred_a, pred_b, k, cells, metric: str, level: float, with_samples: bool = False):
    """(point, CI, McNemar p, discordant counts) of metric(a) - metric(b) on the same resamples."""
    if metric == "accuracy":
        point = float(np.mean(pred_a == y) - np.mean(pred_b == y))
        samples = accuracy_samples(y, pred_a, cells) - accuracy_samples(y, pred_b, cells)
    else:
        point = macro_f1(y, pred_a, k) - macro_f1(y, pred_b, k)
        samples = macro_f1_samples(y, pred_a, k, cells) - macro_f1_samples(y, pred_b, k, cells)
    p, b, c = mcnemar_exact(pred_a == y, pred_b == y)
    out = (point, percentile_ci(samples, level), p, b, c)
    return out + (samples,) if with_samples else out


def gains(evidence, config, stats) -> list[Measurement]:
    """Gains over each control in accuracy and macro F1: a rule on one gain decides both at once, on
    Bonferroni-adjusted intervals (simultaneous.py)."""
    split = config.split
    y = evidence.y(split)
    k = evidence.dataset.n_classes
    cells = evidence.cells(split, stats.n_boot)
    pa = evidence.pred(A, split)
    items = []
    for metric_name, other in (("transfer.gain_vs_no_transfer", M0), ("transfer.gain_vs_base_probe", M1)):
        pb = evidence.pred(other, split)
        for metric in ("accuracy", "macro_f1"):
            point, ci, p, b, c, samples = paired_gain(y, pa, pb, k, cells, metric, stats.ci_level, with_samples=True)
            details = {"mcnemar_p": p, "adapted_only_right": b, "other_only_right": c, "versus": other}
            items.append((Measurement(NAME, metric_name, A, point, ci, int(y.size), Status.MEASURED,
                                      {"metric": metric}, details),
                          lambda lv, samples=samples: percentile_ci(samples, lv)))
    return with_simultaneous(items, stats.ci_level)


def group_gains(evidence, config, stats) -> list[Measurement]:
    """Accuracy gain over the no-transfer control inside each sensitive group, same resamples."""
    split = evidence.dataset.splits[config.split]
    y = split.y
    ca = evidence.pred(A, config.split) == y
    cb = evidence.pred(M0, config.split) == y
    cells = evidence.cells(config.split, stats.n_boot)
    items = []
    for feature in evidence.dataset.sensitive:
        codes, names = group_codes(split.frame, [feature])
        g = len(names)
        cell = codes * 4 + ca * 2 + cb
        boot = cells.counts_of(cell, g * 4).reshape(-1, g, 2, 2).astype(float)
        point = np.bincount(cell, minlength=g * 4).reshape(g, 2, 2).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            gain_b = (boot[:, :, 1, :].sum(-1) - boot[:, :, :, 1].sum(-1)) / boot.sum((-1, -2))
        for i, name in enumerate(names):
            n = int(point[i].sum())
            grp = {"feature": feature, "value": name}
            if n < stats.min_group_n:
                items.append((Measurement(NAME, "transfer.group_gain", A, None, None, n, Status.INSUFFICIENT_DATA, grp,
                                          {"reason": f"n={n} < min_group_n={stats.min_group_n}",
                                           "missing_rows": {name: stats.min_group_n - n}}), None))
                continue
            value = float((point[i, 1, :].sum() - point[i, :, 1].sum()) / n)
            p, b, c = mcnemar_exact(ca[codes == i], cb[codes == i])
            items.append((Measurement(NAME, "transfer.group_gain", A, value,
                                      percentile_ci(gain_b[:, i], stats.ci_level), n, Status.MEASURED, grp,
                                      {"metric": "accuracy", "versus": M0, "mcnemar_p": p, "rows": {name: n}}),
                          lambda lv, s=gain_b[:, i]: percentile_ci(s, lv)))
    return with_simultaneous(items, stats.ci_level)


def transferability(evidence, config, stats) -> list[Measurement]:
    """Advisory: how well the frozen base features suit the labels, with a no-pretraining control."""
    from ..models.baselines import probe_cv_accuracy

    train = evidence.dataset.splits["train"]
    rows = np.arange(min(len(train), config.logme_rows))
    emb = evidence.embeddings["base"]["train"][rows]
    y = train.y[rows]
    n = int(rows.size)
    out = [Measurement(NAME, "transfer.logme", ModelRole.BASE.value, logme(emb, y), None, n, Status.MEASURED,
                       None, {"features": "base encoder, mean-pooled", "advisory": True})]
    control = evidence.modality.control_features([train.inputs[i] for i in rows], emb.shape[1], stats.seed)
    out.append(Measurement(NAME, "transfer.logme", M0, logme(control, y), None, n, Status.MEASURED, None,
                           {"features": f"{evidence.modality.control_features_name}, random projection to "
                                        f"{emb.shape[1]} dims", "advisory": True}))
    scores = probe_cv_accuracy(emb, y, config.cv_folds, stats.seed)
    out.append(Measurement(NAME, "transfer.linear_probe_cv_accuracy", ModelRole.BASE.value, float(scores.mean()),
                           corrected_cv_interval(scores, stats.ci_level), n, Status.MEASURED, None,
                           {"folds": config.cv_folds, "fold_scores": [float(v) for v in scores],
                            "interval": "Nadeau-Bengio corrected resampled t (folds share training rows)"}))
    return out


def forgetting(evidence, stats, folds: int) -> list[Measurement]:
    """Source-task accuracy of the base encoder minus that of the adapted encoder, each with a probe refit
    on the source set (out-of-fold predictions, paired bootstrap, exact McNemar)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from ..models.baselines import linear_probe

    src = evidence.dataset.splits.get("source_eval")
    if src is None:
        return [Measurement(NAME, "transfer.forgetting", A, None, None, 0, Status.SKIPPED, None,
                            {"reason": "no source-task evaluation set (data.source_eval) in the spec"})]
    y = src.y
    cv = StratifiedKFold(folds, shuffle=True, random_state=stats.seed)
    probe = linear_probe(stats.seed, evidence.embeddings["base"]["source_eval"].shape[1])
    pred_base = cross_val_predict(probe, evidence.embeddings["base"]["source_eval"], y, cv=cv)
    pred_adapted = cross_val_predict(probe, evidence.embeddings["adapted"]["source_eval"], y, cv=cv)
    cells = CellBootstrap([y, pred_base, pred_adapted], stats.n_boot, stats.seed)
    point, ci, p, b, c = paired_gain(y, pred_base, pred_adapted, int(y.max()) + 1, cells, "accuracy", stats.ci_level)
    return [Measurement(NAME, "transfer.forgetting", A, point, ci, int(y.size), Status.MEASURED, {"metric": "accuracy"},
                        {"mcnemar_p": p, "base_accuracy": float(np.mean(pred_base == y)),
                         "adapted_accuracy": float(np.mean(pred_adapted == y))})]


def representation_change(evidence, config, stats) -> list[Measurement]:
    """Debiased linear CKA between base and adapted states at every layer (text) or stage (images: each stage
    has its own width; CKA compares any two), with the permutation noise floor."""
    base, adapted = evidence.layers.get("base"), evidence.layers.get("adapted")
    if base is None or adapted is None or len(base) != len(adapted):
        return [Measurement(NAME, "transfer.cka", A, None, None, 0, Status.SKIPPED, None,
                            {"reason": "per-layer states of both encoders are not available"})]
    names = evidence.info.get("layer_names") or ["embeddings"] + [f"layer {i}" for i in range(1, len(base))]
    n = int(base[0].shape[0])
    out = []
    for layer in range(len(base)):
        res = cka_noise_floor(base[layer], adapted[layer], config.cka_permutations, stats.seed + layer)
        name = names[layer]
        if not np.isfinite(res["cka"]):
            out.append(Measurement(NAME, "transfer.cka", A, None, None, n, Status.SKIPPED, {"layer": layer},
                                   {"layer_name": name, "reason": "a representation is constant on these rows"}))
            continue
        out.append(Measurement(NAME, "transfer.cka", A, res["cka"], None, n, Status.MEASURED, {"layer": layer},
                               {"layer_name": name, "estimator": "linear CKA, unbiased HSIC (debiased)",
                                "noise_floor": res["noise_floor"], "null_mean": res["null_mean"],
                                "p_value": res["p_value"], "permutations": res["permutations"]}))
    return out


def run(evidence, config: TransferConfig, stats) -> CheckResult:
    out = gains(evidence, config, stats)
    if evidence.dataset.sensitive:
        out += group_gains(evidence, config, stats)
    else:       # a record that says why, so a group rule reads "not applicable", not "nothing measured"
        out.append(Measurement(NAME, "transfer.group_gain", A, None, None, 0, Status.SKIPPED, None,
                               {"reason": "no sensitive column declared (data.sensitive): per-group gains need one"}))
    out += transferability(evidence, config, stats)
    out += forgetting(evidence, stats, config.cv_folds)
    out += representation_change(evidence, config, stats)
    notes = ["LogME and the linear-probe accuracy are advisory: transferability rankings are unstable across "
             "tasks (methods §2); they never block by default.",
             f"no_transfer is {evidence.info.get('controls', {}).get('chosen', 'n/a')}, "
             "the stronger control on the reference split.",
             "The probe's cross-validation interval is the corrected resampled t interval (Nadeau and Bengio 2003): "
             "folds share training rows, so the plain sd/sqrt(K) interval is too narrow."]
    cka = [m for m in out if m.metric == "transfer.cka" and m.value is not None]
    if cka:
        notes.append("CKA is debiased (unbiased HSIC): 1 means the layer's geometry is unchanged by fine-tuning "
                     "(up to rotation and scale), 0 means no more alike than two unrelated representations. "
                     "The noise floor is the 95th percentile of CKA with the rows shuffled "
                     f"({cka[0].details['permutations']} shuffles, {cka[0].n} rows); a layer at or below it was "
                     "rewritten beyond recognition.")
    g = next(m for m in out if m.metric == "transfer.gain_vs_no_transfer" and m.group["metric"] == "accuracy")
    if g.ci and g.ci[1] < 0:
        notes.insert(0, f"Negative transfer: the adapted model is significantly less accurate than the no-transfer "
                        f"control ({g.value:+.3f}, 95% CI [{g.ci[0]:+.3f}, {g.ci[1]:+.3f}], "
                        f"McNemar p={g.details['mcnemar_p']:.3g}).")
    elif g.ci and g.ci[0] <= 0:
        notes.insert(0, f"The adapted model does not significantly beat the no-transfer control "
                        f"({g.value:+.3f}, 95% CI [{g.ci[0]:+.3f}, {g.ci[1]:+.3f}]).")
    table = {"title": "Representation change: debiased linear CKA between base and adapted encoders, per layer "
                      "or stage",
             "columns": ["layer", "CKA", "noise floor (95% of shuffled)", "rows"],
             "rows": [[m.details["layer_name"], m.value, m.details["noise_floor"], m.n] for m in cka]}
    return CheckResult(NAME, Status.MEASURED, tuple(out), tables={"cka": table}, notes=tuple(notes))
