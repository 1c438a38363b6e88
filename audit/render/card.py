"""Hugging Face model-card front matter and `.eval_results/` entries, built as data and dumped with
yaml.safe_dump (never templated)."""
from __future__ import annotations

from pathlib import PurePosixPath

HF_METRIC = {"performance.accuracy": ("accuracy", "Accuracy"), "performance.macro_f1": ("f1", "Macro F1"),
             "performance.roc_auc": ("roc_auc", "ROC AUC")}


EVAL_RESULTS = ".eval_results/transfer-audit.yaml"   # beside model_card.md; pushed with it as the repo's README


def _card_metrics(results: dict) -> list[dict]:
    """The adapted model's overall headline metrics: what model-index and .eval_results both report."""
    return [m for m in results["measurements"] if m["model"] == "adapted" and m["metric"] in HF_METRIC
            and not m.get("group")]


def dataset_id(source: str) -> str:
    """A Hub-style dataset name from a split's source: builtin:adult/test -> adult; /data/loans.csv -> loans."""
    if source.startswith("builtin:"):
        return source[len("builtin:"):].split("/")[0]
    if source.startswith("hf:"):
        return card_dataset(source)
    path = PurePosixPath(source.replace("\\", "/"))
    return path.stem if path.suffix else path.name


def card_dataset(source: str) -> str:
    """The dataset name the card's front matter gives a split's source: a Hub dataset id for hf:org/name/...,
    builtin:NAME for shipped data, a file's stem otherwise (never a folder path)."""
    if source.startswith("hf:"):
        parts = source[len("hf:"):].split("/")
        return "/".join(parts[:2]).split("@")[0]
    if source.startswith("builtin:"):
        return source.split("/")[0]
    return dataset_id(source)


def eval_results(results: dict) -> str:
    """The Hub's `.eval_results/*.yaml`: one entry per headline metric on the current split, serialised by
    huggingface_hub's own EvalResultEntry. The interval, n and verdict go in `notes` (the format has one value)."""
    import yaml
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    current = results["data"].get("current", {})
    verdict, policy = results["gate"]["verdict"], results["policy"].get("name")
    tool = f"{results['tool']['name']} {results['tool']['version']}"
    entries = []
    for m in _card_metrics(results):
        if m["value"] is None:
            continue
        ci = f", 95% CI [{m['ci'][0]:.4f}, {m['ci'][1]:.4f}]" if m.get("ci") else ""
        entries.append(EvalResultEntry(
            dataset_id=dataset_id(current.get("source", "current")), task_id=HF_METRIC[m["metric"]][0],
            value=round(m["value"], 4),
            notes=f"{tool}: {m['metric']} of the adapted model on the current split (n={m['n']}{ci}); "
                  f"policy {policy} verdict {verdict}"))
    return yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False, allow_unicode=False)


def front_matter(results: dict) -> str:
    import yaml

    models, data = results["models"], results["data"]
    adapted = models.get("adapted", {})
    meta = {}
    if models.get("base", {}).get("license"):
        meta["license"] = models["base"]["license"]
    meta["base_model"] = models.get("base", {}).get("hub_id") or models.get("base", {}).get("name")
    meta["base_model_relation"] = adapted.get("relation", "finetune")
    datasets = sorted({card_dataset(d["source"]) for d in data.values()})
    meta["datasets"] = datasets
    pipeline = "image-classification" if results["audit"]["task"] == "image-classification" else "text-classification"
    meta["pipeline_tag"] = pipeline
    meta["tags"] = ["transfer-audit"]
    metrics = _card_metrics(results)
    meta["metrics"] = sorted({HF_METRIC[m["metric"]][0] for m in metrics})
    current = data.get("current", {})
    meta["model-index"] = [{
        "name": results["audit"]["name"],
        "results": [{
            "task": {"type": pipeline},
            "dataset": {"name": current.get("source", "current split"),
                        "type": card_dataset(current.get("source", "")), "split": "current"},
            "metrics": [{"type": HF_METRIC[m["metric"]][0], "name": HF_METRIC[m["metric"]][1],
                         "value": round(m["value"], 4) if m["value"] is not None else None} for m in metrics],
        }],
    }]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=False) + "---"
