"""Hugging Face model-card front matter, built as data and dumped with yaml.safe_dump (never templated)."""
from __future__ import annotations

HF_METRIC = {"performance.accuracy": ("accuracy", "Accuracy"), "performance.macro_f1": ("f1", "Macro F1"),
             "performance.roc_auc": ("roc_auc", "ROC AUC")}


def front_matter(results: dict) -> str:
    import yaml

    models, data = results["models"], results["data"]
    adapted = models.get("adapted", {})
    meta = {}
    if models.get("base", {}).get("license"):
        meta["license"] = models["base"]["license"]
    meta["base_model"] = models.get("base", {}).get("hub_id") or models.get("base", {}).get("name")
    meta["base_model_relation"] = adapted.get("relation", "finetune")
    datasets = sorted({d["source"].split("/")[0] for d in data.values()})
    meta["datasets"] = datasets
    meta["pipeline_tag"] = "text-classification"
    meta["tags"] = ["transfer-audit"]
    metrics = [m for m in results["measurements"] if m["model"] == "adapted" and m["metric"] in HF_METRIC
               and not m.get("group")]
    meta["metrics"] = sorted({HF_METRIC[m["metric"]][0] for m in metrics})
    current = data.get("current", {})
    meta["model-index"] = [{
        "name": results["audit"]["name"],
        "results": [{
            "task": {"type": "text-classification"},
            "dataset": {"name": current.get("source", "current split"), "type": current.get("source", "").split("/")[0],
                        "split": "current"},
            "metrics": [{"type": HF_METRIC[m["metric"]][0], "name": HF_METRIC[m["metric"]][1],
                         "value": round(m["value"], 4) if m["value"] is not None else None} for m in metrics],
        }],
    }]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=False) + "---"
