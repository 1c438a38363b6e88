"""Every malformed input in the corpus exits with its documented code, prints no traceback, names the file,
and no pickle payload ever runs."""
from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

import pytest

from transfer_audit.cli import main

CORPUS = Path(__file__).resolve().parent / "fixtures" / "malformed"
CASES = json.loads((CORPUS / "cases.json").read_text())


def test_corpus_is_large_enough():
    assert len(CASES) >= 150
    kinds = {c["name"].split("_", 1)[0] for c in CASES}
    assert kinds == {"policy", "spec", "model", "cli"}


@pytest.fixture
def no_deserialisers(monkeypatch):
    """Count every call into pickle and torch.load; the refusal must happen before any of them."""
    import pickle

    import torch

    calls = []

    def counting(name, real):
        def wrapper(*a, **k):
            calls.append(name)
            return real(*a, **k)
        return wrapper

    monkeypatch.setattr(pickle, "load", counting("pickle.load", pickle.load))
    monkeypatch.setattr(pickle, "loads", counting("pickle.loads", pickle.loads))
    monkeypatch.setattr(pickle, "Unpickler", counting("pickle.Unpickler", pickle.Unpickler))
    monkeypatch.setattr(torch, "load", counting("torch.load", torch.load))
    return calls


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_malformed_input(case, tiny_bert, tmp_path, capsys, no_deserialisers):
    folder = tmp_path / case["name"]
    source = CORPUS / "cases" / case["name"]
    if source.exists():
        shutil.copytree(source, folder)
    else:                       # a case with no input files (git keeps no empty folders)
        folder.mkdir()
    for spec in folder.rglob("*.yaml"):
        spec.write_bytes(spec.read_bytes().replace(b"{TINY}", str(tiny_bert).encode()))
    args = [a.replace("{DIR}", str(folder)) for a in case["args"]]
    try:
        code = main(args)
    except SystemExit as e:            # argparse usage errors
        code = e.code
    out, err = capsys.readouterr()
    text = out + err
    assert code == case["code"], text
    assert "Traceback" not in text
    assert case["mentions"] in text, text
    if "--allow-pickle" not in args:
        assert no_deserialisers == [], no_deserialisers
    assert not glob.glob("/tmp/transfer_audit_canary_*") and not os.path.exists("/tmp/ta_canary_yaml")
