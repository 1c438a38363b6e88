"""Drift between the reference and current splits: raw columns and text descriptors (evidently), the base
encoder's embeddings (MMD² permutation test after a pooled PCA, plus evidently's domain classifier), and model
predictions (KS and chi-square tests, PSI).

Everything reads Evidence: embeddings and probabilities come from the one inference pass, so drift adds no
forward pass. Per-column tests are Holm-corrected; the spaces (features, embeddings, predictions) are
combined with Bonferroni into one `drift.detected` flag. Every record carries its test statistic and an
effect size next to its p-value, and both sample sizes (docs/methods-drift-transfer.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..drift_stats import chi2_with_effect, embedding_mmd_test, ks_with_effect, pooled_pca, psi_null
from ..options import option
from ..results import CheckResult, Measurement, ModelRole, Status
from ..stats import holm

NAME = "drift"
METRICS = ("drift.features", "drift.column", "drift.embedding_mmd", "drift.embedding_mmd_p_value",
           "drift.embedding_auc", "drift.prediction_psi", "drift.prediction_ks_p_value",
           "drift.prediction_label_p_value", "drift.detected")
DATA = ModelRole.DATA.value


@dataclass(frozen=True)
class DriftConfig:
    # 1%, not 5%: the check runs on every CI build, and a 5% false alarm rate would flag one unchanged
    # build in twenty.
    alpha: float = option(0.01, "family-wise level of drift.detected (Bonferroni over the spaces tested)",
                          lo=1e-6, hi=0.5)
    permutations: int = option(999, "permutations of the MMD² test (999: p-values in steps of 0.001, and "
                                    "p <= 0.05 or p <= 0.01 has exactly that false-alarm rate)", lo=99, hi=100000)
    pca_components: int = option(32, "principal components (fitted on reference + current pooled) the "
                                     "embeddings are projected on before the MMD² test", lo=2, hi=512)
    evidently_embeddings: bool = option(True, "also run evidently's domain-classifier embedding drift")
    text_descriptors: bool = option(True, "test per-row input descriptors (length, out-of-vocabulary share, ...)")
    # With 10 bins, PSI exceeds 0.2 in 49% of no-drift runs at 1,000 reference / 50 current rows, 40% at
    # 100 / 100 and 2% at 200 / 200 (simulated; docs/methods-drift-transfer.md).
    psi_min_rows: int = option(200, "rows each split needs before PSI is reported; below, the PSI record is "
                                    "INSUFFICIENT_DATA and a PSI rule INCONCLUSIVE", lo=10)


HOMOGENEITY = "chi2_homogeneity"


def chi2_homogeneity(reference, current, feature_type=None, threshold: float = 0.05):
    """Two-sample chi-square test of homogeneity on the 2 x K table of category counts (drift_stats).

    evidently's own 'chisquare' is a goodness-of-fit test that takes the reference counts as exact expected
    values: a category absent from the reference gives an infinite statistic and p = 0, which made random
    splits of one population "drift" in 18 of 20 trials here. Categories seen fewer than 10 times in both
    samples together are pooled so the chi-square approximation holds.
    """
    p = chi2_with_effect(reference, current)["p_value"]
    return p, p < threshold


def _register_homogeneity_test() -> None:
    """Make the homogeneity test available to evidently's ValueDrift by name (once per process)."""
    from evidently.legacy.calculations.stattests.registry import StatTest, _registered_stat_tests, register_stattest
    from evidently.legacy.core import ColumnType

    if HOMOGENEITY in _registered_stat_tests:
        return
    register_stattest(StatTest(name=HOMOGENEITY, display_name="chi-square homogeneity p_value",
                               allowed_feature_types=[ColumnType.Categorical]), default_impl=chi2_homogeneity)


def column_drift(ref, cur, numerical, categorical) -> list[dict]:
    """Per-column drift with evidently's ValueDrift: KS for numbers, a two-sample chi-square for categories
    (p-values, so the family can be Holm-corrected). Each p-value comes with the test statistic and an effect
    size of the same test on the same values (drift_stats: KS D and the Wasserstein distance in reference
    standard deviations; chi² and Cramér's V)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    _register_homogeneity_test()

    dd = DataDefinition(numerical_columns=list(numerical), categorical_columns=list(categorical))
    cols = list(numerical) + list(categorical)
    r = Dataset.from_pandas(ref[cols].reset_index(drop=True), data_definition=dd)
    c = Dataset.from_pandas(cur[cols].reset_index(drop=True), data_definition=dd)
    metrics = [ValueDrift(column=col, method="ks") for col in numerical] + \
              [ValueDrift(column=col, method=HOMOGENEITY) for col in categorical]
    import warnings

    with warnings.catch_warnings():          # scipy's "exact KS unsuccessful, switching to asymp" on ties
        warnings.simplefilter("ignore", RuntimeWarning)
        snap = Report(metrics, include_tests=False).run(c, r).dict()
    out = []
    for m in snap["metrics"]:
        col, method = m["config"]["column"], m["config"]["method"]
        effect = (chi2_with_effect if method == HOMOGENEITY else ks_with_effect)(ref[col].dropna(), cur[col].dropna())
        out.append(dict(effect, column=col, method=method, p_value=float(m["value"])))
    return out


def evidently_embedding_auc(ref_emb, cur_emb, seed: int) -> dict:
    """evidently's domain-classifier embedding drift (ModelDriftMethod): ROC AUC of telling reference from
    current, with its bootstrap threshold. Called directly: the Report wrapper adds ~6 s of rendering."""
    import pandas as pd
    from evidently.metrics.embeddings import ModelDriftMethod

    cols = [f"e{i}" for i in range(ref_emb.shape[1])]
    auc, drifted, _ = ModelDriftMethod(bootstrap=True)(pd.DataFrame(cur_emb, columns=cols),
                                                       pd.DataFrame(ref_emb, columns=cols))
    return {"auc": float(auc), "evidently_drift_detected": bool(drifted)}


def feature_drift(evidence, config, stats) -> tuple[list[Measurement], list[list], float]:
    ds = evidence.dataset
    ref, cur = ds.splits["reference"], ds.splits["current"]
    frames_ref, frames_cur, numerical, categorical = [], [], [], []
    cols = [c for c in ds.features if c in ref.frame.columns and c in cur.frame.columns]
    if cols:
        for c in cols:
            (numerical if np.issubdtype(ref.frame[c].dtype, np.number) else categorical).append(c)
        frames_ref.append(ref.frame[cols].copy())
        frames_cur.append(cur.frame[cols].copy())
        for c in categorical:
            frames_ref[-1][c] = frames_ref[-1][c].astype(str)
            frames_cur[-1][c] = frames_cur[-1][c].astype(str)
    if config.text_descriptors:
        train_inputs = ds.splits["train"].inputs
        dr = evidence.modality.descriptors(ref.inputs, train_inputs)
        dc = evidence.modality.descriptors(cur.inputs, train_inputs)
        frames_ref.append(dr)
        frames_cur.append(dc)
        numerical += list(dr.columns)
    if not frames_ref:
        return [], [], float("nan")
    import pandas as pd

    r = pd.concat([f.reset_index(drop=True) for f in frames_ref], axis=1)
    c = pd.concat([f.reset_index(drop=True) for f in frames_cur], axis=1)
    tests = column_drift(r, c, numerical, categorical)
    adj = holm([t["p_value"] for t in tests])
    out, rows = [], []
    sizes = {"n_reference": len(ref), "n_current": len(cur)}
    for t, p_adj in zip(tests, adj):
        drifted = bool(p_adj < config.alpha)
        out.append(Measurement(NAME, "drift.column", DATA, float(p_adj), None, len(cur), Status.MEASURED,
                               {"column": t["column"]},
                               dict(sizes, method=t["method"], statistic=t["statistic"],
                                    statistic_name=t["statistic_name"], effect_size=t["effect_size"],
                                    effect_size_name=t["effect_size_name"], p_value=t["p_value"],
                                    p_holm=float(p_adj), drifted=drifted)))
        rows.append([t["column"], t["method"], f"{t['statistic_name']} {_fmt(t['statistic'])}",
                     f"{t['effect_size_name']} {_fmt(t['effect_size'])}", t["p_value"], float(p_adj),
                     "yes" if drifted else "no", f"{len(ref)} / {len(cur)}"])
    share = float(np.mean([m.details["drifted"] for m in out]))
    out.append(Measurement(NAME, "drift.features", DATA, share, None, len(cur), Status.MEASURED, None,
                           dict(sizes, columns=len(out), correction="Holm",
                                drifted=[m.group["column"] for m in out if m.details["drifted"]])))
    return out, rows, float(np.nanmin(adj)) if len(adj) else float("nan")


def _fmt(x: float) -> str:
    return f"{x:.3g}" if np.isfinite(x) else "n/a"


def embedding_drift(evidence, config, stats) -> tuple[list[Measurement], float]:
    """MMD² permutation test on the base encoder's embeddings, projected on the principal components of the
    pooled reference + current rows (drift_stats.pooled_pca says why pooled, not the reference alone)."""
    ref, cur = evidence.embeddings["base"]["reference"], evidence.embeddings["base"]["current"]
    res = embedding_mmd_test(ref, cur, config.pca_components, config.permutations, stats.seed)
    base = ModelRole.BASE.value
    sizes = {"n_reference": len(ref), "n_current": len(cur)}
    details = dict(sizes, pca_components=res["pca_components"], projection="PCA fitted on the pooled rows",
                   permutations=res["permutations"], bandwidth_sigma2=res["bandwidth_sigma2"],
                   statistic=res["mmd2"], statistic_name="MMD² (unbiased)", effect_size=res["mmd"],
                   effect_size_name="MMD (RBF kernel; 0 = same distribution, at most √2)", p_value=res["p_value"],
                   null_mean=res["null_mean"], null_q95=res["null_q95"], rows_tested=[res["n_ref"], res["n_cur"]])
    out = [Measurement(NAME, "drift.embedding_mmd", base, res["mmd2"], None, len(cur), Status.MEASURED, None, details),
           Measurement(NAME, "drift.embedding_mmd_p_value", base, res["p_value"], None, len(cur), Status.MEASURED,
                       None, details)]
    if config.evidently_embeddings:
        r, c, _ = pooled_pca(ref, cur, config.pca_components)
        ev = evidently_embedding_auc(r, c, stats.seed)
        out.append(Measurement(NAME, "drift.embedding_auc", base, ev["auc"], None, len(cur), Status.MEASURED, None,
                               dict(sizes, method="evidently ModelDriftMethod (domain classifier, bootstrap)",
                                    evidently_drift_detected=ev["evidently_drift_detected"],
                                    effect_size_name="ROC AUC of telling current from reference rows",
                                    bands="<=0.55 negligible, 0.55-0.65 moderate, >0.65 strong")))
    return out, res["p_value"]


def prediction_psi(sr, sc, role: str, score: str, config, stats) -> Measurement:
    """PSI of one model's scores, with its permutation null; INSUFFICIENT_DATA below psi_min_rows a split."""
    res = psi_null(sr, sc, 200, stats.seed)
    sizes = {"n_reference": len(sr), "n_current": len(sc)}
    details = dict(sizes, score=score, bins="10 reference-quantile bins", psi=res["psi"], p_value=res["p_value"],
                   null_q95=res["null_q95"], permutations=res["permutations"], min_rows=config.psi_min_rows)
    missing = {split: config.psi_min_rows - n for split, n in (("reference", len(sr)), ("current", len(sc)))
               if n < config.psi_min_rows}
    if missing:
        return Measurement(NAME, "drift.prediction_psi", role, None, None, len(sc), Status.INSUFFICIENT_DATA, None,
                           dict(details, missing_rows=missing,
                                reason=f"PSI needs {config.psi_min_rows} rows in each split (reference {len(sr)}, "
                                       f"current {len(sc)}): below that it exceeds 0.2 by chance too often"))
    return Measurement(NAME, "drift.prediction_psi", role, res["psi"], None, len(sc), Status.MEASURED, None, details)


def prediction_drift(evidence, config, stats) -> tuple[list[Measurement], float]:
    from scipy.stats import chi2_contingency

    pos = evidence.dataset.positive
    k = evidence.dataset.n_classes
    out, ps = [], []
    for role in (ModelRole.ADAPTED.value, ModelRole.BASE_PROBE.value):
        pr, pc = evidence.probs[role]["reference"], evidence.probs[role]["current"]
        sr = pr[:, pos] if pos is not None else pr.max(1)
        sc = pc[:, pos] if pos is not None else pc.max(1)
        ks = ks_with_effect(sr, sc)
        table = np.vstack([np.bincount(pr.argmax(1), minlength=k), np.bincount(pc.argmax(1), minlength=k)])
        table = table[:, table.sum(0) > 0]
        chi2, chi_p = (float(v) for v in chi2_contingency(table)[:2]) if table.shape[1] > 1 else (0.0, 1.0)
        score = "P(positive)" if pos is not None else "max class probability"
        n = len(pc)
        sizes = {"n_reference": len(pr), "n_current": n}
        out += [prediction_psi(sr, sc, role, score, config, stats),
                Measurement(NAME, "drift.prediction_ks_p_value", role, ks["p_value"], None, n, Status.MEASURED, None,
                            dict(sizes, score=score, statistic=ks["statistic"], statistic_name=ks["statistic_name"],
                                 effect_size=ks["effect_size"], effect_size_name=ks["effect_size_name"])),
                Measurement(NAME, "drift.prediction_label_p_value", role, chi_p, None, n, Status.MEASURED, None,
                            dict(sizes, test="chi-square on predicted label counts", statistic=chi2,
                                 statistic_name=f"chi² ({table.shape[1] - 1} df)",
                                 effect_size=float(np.sqrt(chi2 / table.sum())), effect_size_name="Cramér's V"))]
        if role == ModelRole.ADAPTED.value:
            ps.append(min(1.0, 2 * min(ks["p_value"], chi_p)))     # Bonferroni over the two tests
    return out, min(ps) if ps else float("nan")


def run(evidence, config: DriftConfig, stats) -> CheckResult:
    out = []
    feats, rows, p_features = feature_drift(evidence, config, stats)
    out += feats
    emb, p_emb = embedding_drift(evidence, config, stats)
    out += emb
    preds, p_pred = prediction_drift(evidence, config, stats)
    out += preds
    spaces = {"features": p_features, "embeddings": p_emb, "predictions": p_pred}
    spaces = {k: v for k, v in spaces.items() if np.isfinite(v)}
    threshold = config.alpha / max(len(spaces), 1)
    detected = [k for k, v in spaces.items() if v < threshold]
    splits = evidence.dataset.splits
    out.append(Measurement(NAME, "drift.detected", DATA, float(bool(detected)), None, len(splits["current"]),
                           Status.MEASURED, None,
                           {"spaces": spaces, "bonferroni_threshold": threshold, "detected_in": detected,
                            "n_reference": len(splits["reference"]), "n_current": len(splits["current"])}))
    notes = [f"Drift {'detected in ' + ', '.join(detected) if detected else 'not detected'} "
             f"(alpha {config.alpha}, Bonferroni across {len(spaces)} spaces, Holm within columns).",
             "Compare drift.prediction_* of adapted and base_probe: a larger shift for the adapted model means "
             "fine-tuning made it more sensitive to this change in the data."]
    table = {"title": "Per-column drift (evidently ValueDrift; Holm-corrected p-values)",
             "columns": ["column", "method", "statistic", "effect size", "p-value", "Holm p-value", "drifted",
                         "n reference / current"], "rows": rows}
    return CheckResult(NAME, Status.MEASURED, tuple(out), tables={"columns": table}, notes=tuple(notes))
