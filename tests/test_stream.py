"""A streamed current split (data.current.stream: true): Parquet read in chunks into sufficient statistics. The
performance and bias checks read its cells weighted by their rows, so they give the numbers (values, paired
bootstrap intervals, n) of every row, whatever sample of rows the other checks keep; on Ray the results are
the same; bad input is one sentence, exit 2, nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import adult_spec, write_spec

from transfer_audit.cli import main
from transfer_audit.errors import InputError

CHECKS = {"performance": {}, "bias": {"counterfactual_samples": 10}}
COUNTS_METRICS = ("performance.accuracy", "performance.macro_f1", "bias.")


@pytest.fixture(scope="module")
def adult_parquet(tmp_path_factory) -> dict:
    """The same 300 rows as one Parquet file and as three files in a folder."""
    from transfer_audit.builtin_data import load_builtin

    folder = tmp_path_factory.mktemp("stream-data")
    rows = load_builtin("adult", "test").head(300)
    rows.to_parquet(folder / "all.parquet", index=False)
    (folder / "parts").mkdir()
    for i in range(3):
        rows.iloc[i * 100:(i + 1) * 100].to_parquet(folder / "parts" / f"part-{i}.parquet", index=False)
    return {"file": folder / "all.parquet", "folder": folder / "parts", "rows": rows}


def spec_with(tiny_bert, out: Path, current: dict, name: str) -> dict:
    spec = adult_spec(str(tiny_bert), out, checks=CHECKS, name=name)
    spec["data"]["current"] = current
    return spec


def measurements(results: dict) -> dict:
    return {(m["metric"], m["model"], json.dumps(m.get("group"), sort_keys=True)): m
            for m in results["measurements"]}


def test_counts_checks_read_every_row_of_a_streamed_split(tiny_bert, adult_parquet, tmp_path):
    from transfer_audit.runner import run_audit

    out = tmp_path / "runs"          # one output folder: the fine-tuned model is trained once
    held = run_audit(write_spec(tmp_path / "a", spec_with(tiny_bert, out, {"path": str(adult_parquet["file"])},
                                                          "held")))
    streamed = run_audit(write_spec(tmp_path / "b", spec_with(
        tiny_bert, out, {"path": str(adult_parquet["folder"]), "stream": True, "sample": 120}, "streamed")))
    data = streamed.results["data"]["current"]
    assert data["n"] == 120 and data["stream"]["rows"] == 300 and data["stream"]["files"] == 3
    assert data["stream"]["label_counts"] == held.results["data"]["current"]["label_counts"]
    a, b = measurements(held.results), measurements(streamed.results)
    counted = [k for k in a if k[0].startswith(COUNTS_METRICS) and "counterfactual" not in k[0]]
    assert len(counted) > 100
    for key in counted:
        # the same value, the same paired-bootstrap interval (the same multinomial draw), the same n: every row
        assert (a[key]["value"], a[key].get("ci"), a[key]["n"], a[key]["status"]) == (
            b[key]["value"], b[key].get("ci"), b[key]["n"], b[key]["status"]), key
    for key in (k for k in a if k[0] == "performance.roc_auc"):
        bound = b[key]["details"]["grid_bound"]
        assert abs(a[key]["value"] - b[key]["value"]) <= bound + 1e-12, key
        assert b[key]["ci"][0] <= a[key]["value"] <= b[key]["ci"][1]
    # counterfactual swaps need the rows' text: they ran on the 120-row sample
    swaps = [m for k, m in b.items() if k[0] == "bias.counterfactual_flip_rate" and m["value"] is not None]
    assert swaps and all(m["n"] <= 120 * 4 for m in swaps)


def test_the_sample_does_not_depend_on_how_the_rows_are_split_into_files(adult_parquet, tmp_path):
    from transfer_audit.spec import DataSpec, SplitSource
    from transfer_audit.stream import sample_split

    data = DataSpec(train=None, reference=None, current=None, label="income", template="{age} {sex}",
                    sensitive=("sex",))
    one = sample_split(SplitSource("current", path=adult_parquet["file"], stream=True, sample=50), data, 7, "t")
    three = sample_split(SplitSource("current", path=adult_parquet["folder"], stream=True, sample=50), data, 7, "t")
    glob = sample_split(SplitSource("current", path=adult_parquet["folder"], stream=True, sample=50,
                                    pattern=str(adult_parquet["folder"] / "part-*.parquet")), data, 7, "t")
    assert one[1] == three[1] == glob[1] == 300 and len(one[0]) == 50
    assert one[0].equals(three[0]) and one[0].equals(glob[0])
    other_seed = sample_split(SplitSource("current", path=adult_parquet["file"], stream=True, sample=50), data, 8, "t")
    assert not one[0].equals(other_seed[0])
    # a uniform sample: its positive share is near the split's (300 rows, 72 positive)
    share = np.mean(one[0]["income"] == ">50K")
    assert abs(share - 72 / 300) < 0.15


def test_weighted_cells_draw_the_same_bootstrap_as_their_rows():
    from transfer_audit.stats import CellBootstrap

    rng = np.random.default_rng(0)
    y, p, g = rng.integers(0, 2, 5000), rng.integers(0, 2, 5000), rng.integers(0, 3, 5000)
    rows = CellBootstrap([y, p, g], 200, seed=3)
    cells, counts = np.unique(np.stack([y, p, g], 1), axis=0, return_counts=True)
    weighted = CellBootstrap([cells[:, 0], cells[:, 1], cells[:, 2]], 200, seed=3, weights=counts)
    assert weighted.n == rows.n == 5000
    np.testing.assert_array_equal(weighted.counts, rows.counts)
    code = (y == p).astype(np.int64)
    np.testing.assert_array_equal(weighted.counts_of((cells[:, 0] == cells[:, 1]).astype(np.int64), 2),
                                  rows.counts_of(code, 2))


def test_streamed_split_on_ray_gives_the_same_results(tiny_bert, adult_parquet, tmp_path):
    ray = pytest.importorskip("ray")
    from transfer_audit.distributed.ray_runtime import init_kwargs
    from transfer_audit.executor import Executor
    from transfer_audit.runner import run_audit

    current = {"path": str(adult_parquet["folder"]), "stream": True, "sample": 120}
    spec = write_spec(tmp_path, spec_with(tiny_bert, tmp_path / "runs", current, "streamed"))
    local = run_audit(spec)
    bad = spec_with(tiny_bert, tmp_path / "bad-runs", {"path": str(bad_label_folder(adult_parquet["rows"], tmp_path)),
                                                       "stream": True, "sample": 50}, "bad")
    ray.init(num_cpus=2, **init_kwargs())
    try:
        remote = run_audit(spec, executor=Executor.RAY)
        # a label seen only by a worker (not in the sample) is the same input error as locally, nothing written
        with pytest.raises(InputError, match="'unknown-label'"):
            run_audit(write_spec(tmp_path / "bad", bad), executor=Executor.RAY)
    finally:
        ray.shutdown()
    texts = [(r.run_dir / "results.json").read_text() for r in (local, remote)]
    assert texts[0] == texts[1]
    assert not [p for p in (tmp_path / "bad-runs").iterdir() if not p.name.startswith(".")]


def bad_label_folder(rows, tmp_path: Path) -> Path:
    """Two files; the last row of the second has a label the train split lacks."""
    folder = tmp_path / "bad-label"
    folder.mkdir()
    rows.iloc[:150].to_parquet(folder / "a.parquet", index=False)
    tail = rows.iloc[150:].copy()
    tail.loc[tail.index[-1], "income"] = "unknown-label"
    tail.to_parquet(folder / "b.parquet", index=False)
    return folder


def _run(spec: Path, capsys) -> tuple[int, str]:
    code = main(["run", str(spec), "--quiet"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", ["reference", "csv", "missing_column", "no_match", "mix", "unknown_label"])
def test_bad_streamed_splits_are_one_sentence_exit_2_nothing_written(case, tiny_bert, adult_parquet, tmp_path,
                                                                    capsys):
    rows = adult_parquet["rows"]
    spec = spec_with(tiny_bert, tmp_path / "runs", {"path": str(adult_parquet["folder"]), "stream": True},
                     "bad")
    if case == "reference":
        spec["data"]["reference"] = {"path": str(adult_parquet["file"]), "stream": True}
        expect = "data.reference.stream"
    elif case == "csv":
        rows.to_csv(tmp_path / "rows.csv", index=False)
        spec["data"]["current"]["path"] = str(tmp_path / "rows.csv")
        expect = "data.current.path"
    elif case == "missing_column":
        (tmp_path / "parts").mkdir()
        rows.iloc[:100].to_parquet(tmp_path / "parts" / "a.parquet", index=False)
        rows.iloc[100:200].drop(columns="sex").to_parquet(tmp_path / "parts" / "b.parquet", index=False)
        spec["data"]["current"]["path"] = str(tmp_path / "parts")
        expect = "'sex'"
    elif case == "no_match":
        spec["data"]["current"]["path"] = str(adult_parquet["folder"] / "nothing-*.parquet")
        expect = "matches no Parquet files"
    elif case == "unknown_label":
        spec["data"]["current"].update(path=str(bad_label_folder(rows, tmp_path)), sample=50)
        expect = "'unknown-label'"
    else:
        spec["data"]["current"]["mix"] = {"column": "sex", "shares": {"Male": 0.5, "Female": 0.5}}
        expect = "data.current.mix"
    code, err = _run(write_spec(tmp_path, spec), capsys)
    assert code == 2, err
    assert expect in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not [p for p in (tmp_path / "runs").iterdir()
                                                     if not p.name.startswith(".")]
