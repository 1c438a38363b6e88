"""M0, the no-pretraining controls: the modality's own (TF-IDF + logistic regression for text) and, when the
spec declares raw `features`, gradient-boosted trees on those columns. The stronger one on the reference split
(held out from train, not the audited current split) becomes `no_transfer`, the control that defines negative
transfer."""
from __future__ import annotations

import numpy as np

from .results import ModelRole


def build_controls(dataset, modality, seed: int, splits) -> tuple[dict, dict, dict]:
    """({role: {split: probabilities}} for every control and `no_transfer`, {'chosen', 'reference_accuracy'},
    the fitted controls {'input': {role: model}, 'tabular': model or None} (a streamed split scores with them))."""
    from .models.baselines import TabularControl, full_proba

    train = dataset.splits["train"]
    k = dataset.n_classes
    probs = {}
    fitted = {"input": modality.input_controls(train, seed), "tabular": None}
    for role, model in fitted["input"].items():
        probs[role] = {s: full_proba(model, list(dataset.splits[s].inputs), k) for s in splits}
    if dataset.features:
        tab = fitted["tabular"] = TabularControl(dataset.features, seed).fit(train.frame, train.y)
        probs[ModelRole.NO_TRANSFER_TABULAR.value] = {s: full_proba(tab, dataset.splits[s].frame, k) for s in splits}
    ref_y = dataset.splits["reference"].y
    scores = {role: float(np.mean(p["reference"].argmax(1) == ref_y)) for role, p in probs.items()}
    chosen = max(sorted(scores), key=lambda r: scores[r])
    probs[ModelRole.NO_TRANSFER.value] = probs[chosen]
    return probs, {"chosen": chosen, "reference_accuracy": scores}, fitted
