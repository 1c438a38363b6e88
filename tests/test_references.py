"""Models where users keep them: Hub ids in the local HF cache (symlinked snapshots), PEFT adapters whose base is a
Hub id, sentence-transformers pooling, MLflow URIs; symlinks that leave the cache repo are refused."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from hf_cache import COMMIT, add_to_cache

from transfer_audit.errors import ExitCode, InputError, UnsafeArtifactError


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, tiny_bert):
    """An HF cache holding the tiny BERT as org/tiny-bert, found through HF_HUB_CACHE."""
    cache = tmp_path / "hf" / "hub"
    add_to_cache(cache, "org/tiny-bert", tiny_bert)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_hub_id_resolves_offline_from_the_cache(hub_cache):
    from transfer_audit.models.references import RefKind, resolve_model

    for ref in ("org/tiny-bert", "org/tiny-bert@main", f"org/tiny-bert@{COMMIT}"):
        r = resolve_model(ref, "model.base")
        assert r.kind is RefKind.HUB and r.hub_id == "org/tiny-bert" and r.revision == COMMIT
        assert r.path == hub_cache / "models--org--tiny-bert" / "snapshots" / COMMIT
    with pytest.raises(InputError, match="nor in the local Hugging Face cache"):
        resolve_model("org/tiny-bert@v2", "model.base")
    with pytest.raises(InputError, match="hf download org/other"):
        resolve_model("org/other", "model.base")


def test_hf_home_names_the_cache_when_hf_hub_cache_is_unset(tmp_path, monkeypatch, tiny_bert):
    from transfer_audit.models.references import resolve_model

    add_to_cache(tmp_path / "home" / "hub", "org/tiny-bert", tiny_bert)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert resolve_model("org/tiny-bert", "model.base").revision == COMMIT


def test_symlinked_snapshot_loads_and_a_cache_folder_keeps_its_hub_id(hub_cache):
    from transfer_audit.fileio import sha256_tree
    from transfer_audit.models.loading import load_encoder
    from transfer_audit.models.references import resolve_model

    snapshot = resolve_model("org/tiny-bert", "model.base").path
    assert any(p.is_symlink() for p in snapshot.iterdir())
    model = load_encoder(snapshot)
    assert model.config.hidden_size == 32
    given_as_folder = resolve_model(str(snapshot), "model.base")
    assert given_as_folder.hub_id == "org/tiny-bert" and given_as_folder.name == "org/tiny-bert"
    assert sha256_tree(snapshot) == sha256_tree(snapshot)          # digests read through the links


@pytest.mark.parametrize("target", ["outside", "sibling_repo", "blob_dir", "no_cache"])
def test_links_leaving_the_repo_blobs_are_refused(hub_cache, tmp_path, tiny_bert, target):
    from transfer_audit.models.references import resolve_model
    from transfer_audit.models.safety import check_model_dir

    snapshot = resolve_model("org/tiny-bert", "model.base").path
    link = snapshot / "tokenizer.json"
    link.unlink()
    if target == "outside":
        secret = tmp_path / "secret.json"
        secret.write_text("{}")
        link.symlink_to(secret)
    elif target == "sibling_repo":
        other = add_to_cache(hub_cache, "org/other", tiny_bert, commit="f" * 40)
        link.symlink_to(os.path.relpath((other / "tokenizer.json").resolve(), link.parent))
    elif target == "blob_dir":
        (hub_cache / "models--org--tiny-bert" / "blobs" / "adir").mkdir()
        link.symlink_to("../../blobs/adir")
    else:
        plain = tmp_path / "plain"
        shutil.copytree(tiny_bert, plain)
        (plain / "tokenizer.json").unlink()
        (plain / "tokenizer.json").symlink_to(tiny_bert / "tokenizer.json")
        snapshot = plain
    with pytest.raises(UnsafeArtifactError) as e:
        check_model_dir(snapshot, False, "model.base")
    assert e.value.exit_code == ExitCode.UNSAFE_ARTIFACT and "tokenizer.json" in e.value.message


def test_peft_adapter_id_with_its_base_resolved_from_the_cache(hub_cache, tmp_path, tiny_bert):
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from transfer_audit.models.loading import load_classifier
    from transfer_audit.models.references import resolve_model

    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    peft = get_peft_model(base, LoraConfig(task_type=TaskType.SEQ_CLS, r=2, target_modules=["query", "value"]))
    folder = tmp_path / "adapter"
    peft.save_pretrained(str(folder), safe_serialization=True)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "org/tiny-bert"                       # a Hub id, as on the Hub
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    add_to_cache(hub_cache, "org/tiny-bert-lora", folder, commit="a" * 40)

    adapter = resolve_model("org/tiny-bert-lora", "model.adapted")
    assert adapter.hub_id == "org/tiny-bert-lora"
    # model.base points nowhere: loading works only because the adapter's declared base resolves in the cache
    model, relation, pickled = load_classifier(adapter.path, tmp_path / "absent", 2)
    assert relation == "adapter" and not pickled and model.config.num_labels == 2


@pytest.mark.parametrize("modes", [("cls",), ("mean",), ("max",), ("mean_sqrt_len",), ("weightedmean",),
                                   ("lasttoken",), ("cls", "mean")])
def test_pooling_matches_sentence_transformers(modes):
    import torch
    from sentence_transformers.models import Pooling

    from transfer_audit.tasks.text_inference import pool

    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 8)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    st_flag = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
               "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
               "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}
    flags = {st_flag[m]: True for m in modes}
    st = Pooling(8, **{"pooling_mode_mean_tokens": False, **flags})
    want = st({"token_embeddings": hidden, "attention_mask": mask})["sentence_embedding"]
    assert torch.allclose(pool(hidden, mask, modes), want, atol=1e-6)


def test_base_probe_uses_the_models_own_pooling(tiny_bert, tmp_path):
    """A sentence-transformers folder that pools CLS gives CLS embeddings to the probe; without the config, mean."""
    from transfer_audit.models.loading import load_encoder, load_tokenizer, pooling_modes
    from transfer_audit.tasks.text_inference import forward_split

    folder = tmp_path / "st"
    shutil.copytree(tiny_bert, folder)
    assert pooling_modes(folder) == ("mean",)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                                  "pooling_mode_cls_token": True,
                                                                  "pooling_mode_mean_tokens": False}))
    assert pooling_modes(folder) == ("cls",)
    model, tok = load_encoder(folder), load_tokenizer(folder)
    texts = ["a short text", "a somewhat longer text with more words in it"]
    cls = forward_split(model, tok, texts, 32, False, pooling=pooling_modes(folder))["pooled"]
    mean = forward_split(model, tok, texts, 32, False)["pooled"]
    import torch

    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        first = model(**enc).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(cls, first, atol=1e-5)
    assert not np.allclose(cls, mean, atol=1e-3)


def test_mlflow_uris_resolve_from_a_local_file_store(tmp_path, monkeypatch, tiny_bert):
    mlflow = pytest.importorskip("mlflow")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from transfer_audit.models.loading import load_classifier
    from transfer_audit.models.references import RefKind, resolve_model

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")       # MLflow 3 keeps file stores behind this switch
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    with mlflow.start_run() as run:
        mlflow.transformers.log_model({"model": model, "tokenizer": AutoTokenizer.from_pretrained(str(tiny_bert))},
                                      name="clf", task="text-classification", registered_model_name="tiny-clf",
                                      pip_requirements=["transformers"])
    for uri in (f"runs:/{run.info.run_id}/clf", "models:/tiny-clf/1"):
        r = resolve_model(uri, "model.adapted", tmp_path / "cache")
        assert r.kind is RefKind.MLFLOW and r.name == uri and (r.path / "config.json").is_file()
        loaded, relation, _ = load_classifier(r.path, tiny_bert, 2)
        assert relation == "finetune" and loaded.config.num_labels == 2
    with pytest.raises(InputError, match="cannot resolve MLflow URI"):
        resolve_model("models:/absent/3", "model.adapted", tmp_path / "cache")


def test_mlflow_uri_without_mlflow_says_what_to_install(monkeypatch):
    import sys

    from transfer_audit.models.references import resolve_model

    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.artifacts", None)
    with pytest.raises(InputError, match=r"transfer-audit\[mlflow\]"):
        resolve_model("models:/x/1", "model.adapted")


def test_spec_accepts_hub_ids_and_uris_but_not_missing_paths(tmp_path):
    from transfer_audit.spec import _model_ref
    from transfer_audit.validate import Section

    s = Section({"a": "org/name@v1", "b": "runs:/abc/model", "c": "./missing", "d": "package:x"}, "f.yaml", "model",
                {"a", "b", "c", "d"})
    assert _model_ref(s, "a", tmp_path) == "org/name@v1"
    assert _model_ref(s, "b", tmp_path) == "runs:/abc/model"
    assert _model_ref(s, "d", tmp_path) == "package:x"
    with pytest.raises(InputError, match="does not exist"):
        _model_ref(s, "c", tmp_path)
