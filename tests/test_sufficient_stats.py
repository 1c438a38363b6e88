"""Mergeable sufficient statistics: any partition of the rows merges to the same statistics, the cell bootstrap
is the rows' CellBootstrap draw, AUC/KS stay within their stated grid bounds, and a Parquet folder scanned on
this machine and on a local Ray instance gives the same answer. A missing column is exit 2, one sentence."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from transfer_audit.sufficient_stats import PredictionStats, from_json, row_priority, score_shift, to_json

ROLES = ("adapted", "base_probe")


def synthetic(n: int, seed: int, shift: float = 0.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    group = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    scores = {r: np.clip(rng.normal(0.35 + 0.3 * y + shift + 0.05 * k, 0.2), 0, 1) for k, r in enumerate(ROLES)}
    preds = {r: (s >= 0.5).astype(int) for r, s in scores.items()}
    texts = np.array([f"row {seed}-{i}" for i in range(n)], dtype=object)
    return y, group, scores, preds, texts


def stats_of(rows, parts):
    y, group, scores, preds, texts = rows
    out = PredictionStats(ROLES, ("group",), 2, seed=7, sample_size=50)
    for idx in parts:
        block = PredictionStats(ROLES, ("group",), 2, seed=7, sample_size=50)
        block.add(y[idx], {r: p[idx] for r, p in preds.items()}, {"group": group[idx]},
                  {r: s[idx] for r, s in scores.items()}, row_priority(pd.DataFrame({"t": texts[idx]}), 7),
                  texts[idx])
        out = out.merge(from_json(to_json(block)))       # through the wire format, as Ray workers send it
    return out


def test_any_partition_merges_to_the_same_statistics():
    rows = synthetic(3000, 0)
    whole = stats_of(rows, [np.arange(3000)])
    rng = np.random.default_rng(1)
    for _ in range(3):
        cuts = np.sort(rng.choice(np.arange(1, 3000), size=rng.integers(1, 12), replace=False))
        perm = rng.permutation(3000)                      # blocks in any order, rows in any order
        parted = stats_of(rows, np.split(perm, cuts))
        assert parted.cells == whole.cells
        assert all(np.array_equal(parted.hist[r], whole.hist[r]) for r in ROLES)
        assert parted.sample == whole.sample              # the sample does not depend on the blocks
    assert whole.n == 3000 and len(whole.sample) == 50


def test_cell_bootstrap_is_the_row_bootstrap_draw():
    from transfer_audit.stats import CellBootstrap

    y, group, scores, preds, texts = rows = synthetic(2000, 2)
    stats = stats_of(rows, np.array_split(np.arange(2000), 5))
    codes = np.unique(group, return_inverse=True)[1]
    by_rows = CellBootstrap([y, preds["adapted"], preds["base_probe"], codes], n_boot=200, seed=11)
    assert np.array_equal(stats.cell_bootstrap(200, 11), by_rows.counts)


def test_group_confusion_accuracy_auc_and_shift_against_exact_values():
    from scipy.stats import ks_2samp
    from sklearn.metrics import roc_auc_score

    y, group, scores, preds, texts = rows = synthetic(4000, 3)
    stats = stats_of(rows, np.array_split(np.arange(4000), 3))
    for g in ("a", "b", "c"):
        m = group == g
        p = preds["adapted"][m]
        assert stats.group_confusion("adapted", "group")[g] == {
            "tp": int(((p == 1) & (y[m] == 1)).sum()), "fp": int(((p == 1) & (y[m] == 0)).sum()),
            "tn": int(((p == 0) & (y[m] == 0)).sum()), "fn": int(((p == 0) & (y[m] == 1)).sum())}
    assert stats.accuracy("adapted") == pytest.approx((preds["adapted"] == y).mean(), abs=1e-12)
    for r in ROLES:
        auc, bound = stats.auc(r)
        assert abs(auc - roc_auc_score(y, scores[r])) <= bound + 1e-12
        assert bound < 1e-3
    cur = synthetic(4000, 4, shift=0.1)
    shifted = stats_of(cur, [np.arange(4000)])
    shift = score_shift(stats, shifted, "adapted")
    exact = ks_2samp(scores["adapted"], cur[2]["adapted"]).statistic
    assert abs(shift["ks"] - exact) <= shift["ks_bound"] + 1e-12 and shift["ks"] > 0.1 and shift["psi"] > 0.05


def parquet_folder(folder, n_files=3, rows=400):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n_files):
        y, group, scores, _, texts = synthetic(rows, 10 + k)
        pd.DataFrame({"text": texts, "label": np.where(y == 1, "yes", "no"), "group": group,
                      "score": scores["adapted"]}).to_parquet(folder / f"part-{k}.parquet")
    return folder


def test_parquet_folder_scanned_locally_and_on_ray_gives_the_same_statistics(tmp_path):
    ray = pytest.importorskip("ray")
    from transfer_audit.distributed.ray_scan import scan_ray
    from transfer_audit.scan import ScanSpec, scan_local

    spec = ScanSpec(parquet_folder(tmp_path / "current"), "label", ("no", "yes"), ("group",),
                    score_columns={"adapted": "score"}, text="text", seed=3, sample_size=64)
    local = scan_local(spec)
    from transfer_audit.distributed.ray_runtime import init_kwargs

    ray.init(num_cpus=2, **init_kwargs())
    try:
        remote = scan_ray(spec, actors=2, batch_size=150)      # blocks unlike the local row groups
    finally:
        ray.shutdown()
    assert local.n == remote.n == 1200
    assert local.cells == remote.cells and np.array_equal(local.hist["adapted"], remote.hist["adapted"])
    assert local.sample == remote.sample


def test_parquet_split_missing_a_declared_column_is_exit_2_one_sentence(tmp_path):
    from transfer_audit.errors import MSG_MISSING_COLUMN, InputError
    from transfer_audit.scan import ScanSpec, scan_local

    spec = ScanSpec(parquet_folder(tmp_path / "current", n_files=2, rows=20), "label", ("no", "yes"),
                    ("sex",), score_columns={"adapted": "score"}, where="audit.yaml: data.current")
    with pytest.raises(InputError) as e:
        scan_local(spec)
    assert e.value.code == MSG_MISSING_COLUMN.code and int(e.value.exit_code) == 2
    assert "'sex'" in e.value.message and "part-0.parquet" in e.value.message and "\n" not in e.value.message


def test_scan_with_a_model_counts_the_predictions_of_the_audits_forward_pass(tmp_path):
    """The model path: a classifier folder scores each block with the audit's own forward pass (length-bucketed
    per block); the merged cells are the counts of those predictions over all rows."""
    import shutil

    import torch
    from conftest import TOKENIZER_FILES, minilm_dir
    from transformers import BertConfig, BertForSequenceClassification

    from transfer_audit.evidence import softmax
    from transfer_audit.models.loading import load_classifier, load_tokenizer
    from transfer_audit.scan import ScanSpec, scan_local
    from transfer_audit.tasks.text_inference import forward_split

    torch.manual_seed(0)
    model_dir = tmp_path / "clf"
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(str(model_dir), safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (minilm_dir() / name).exists():
            shutil.copy(minilm_dir() / name, model_dir / name)
    folder = parquet_folder(tmp_path / "current", n_files=2, rows=60)
    spec = ScanSpec(folder, "label", ("no", "yes"), ("group",), model=model_dir, text="text", max_length=32)
    stats = scan_local(spec)

    frame = pd.concat([pd.read_parquet(f) for f in sorted(folder.glob("*.parquet"))], ignore_index=True)
    model, _, _ = load_classifier(model_dir, model_dir, 2)
    probs = softmax(forward_split(model, load_tokenizer(model_dir), frame["text"].tolist(), 32, True)["logits"])
    y = (frame["label"] == "yes").to_numpy().astype(int)
    expected = pd.Series(list(zip(y.tolist(), probs.argmax(1).tolist(), frame["group"].tolist()))).value_counts()
    assert dict(stats.cells) == expected.to_dict()
    assert np.array_equal(stats.hist["adapted"].sum(0), np.bincount(
        np.minimum((probs[:, 1] * 4000).astype(int), 3999), minlength=4000))
