"""The task seam: what a modality (text, image, table) owns, so that Evidence, the checks and the gate never
depend on what a row is.

A Modality turns rows into model inputs and runs the models on them. Everything else in an audit sees only
arrays: class probabilities, pooled embeddings, per-layer states, per-row descriptors, attributions per unit.
tasks/text.py is the reference implementation; read it next to this interface.

| what                      | method                      | who calls it                 |
|---------------------------|-----------------------------|------------------------------|
| rows -> model inputs      | read_inputs, fingerprint    | data.load_dataset            |
| load / fine-tune models   | prepare_models              | runner                       |
| the forward pass (floor)  | forward, cache_key          | evidence.build_evidence      |
| no-transfer controls (M0) | input_controls              | controls.build_controls      |
| drift descriptors         | descriptors                 | checks.drift                 |
| LogME control features    | control_features            | checks.transfer              |
| counterfactual swaps      | counterfactual_axes         | checks.counterfactual        |
| attribution               | explainers, attribute, ...  | checks.attribution           |

tasks/image.py is the second implementation (image files; pixels; perturbations as counterfactuals).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np


@dataclass
class Attribution:
    """One explained example: scores per input unit (word pieces, pixels, ...), and the completeness test."""

    units: list             # the input units as the modality names them (tokens for text)
    scores: np.ndarray      # one attribution per unit
    target: int
    delta: float            # completeness error: sum(scores) - gap
    gap: float              # F(x) - F(baseline) on the target logit
    steps: int              # integration steps of the accepted run
    passes: int             # forward+backward passes spent (all tries)
    converged: bool
    skip: frozenset = frozenset()   # units that carry no meaning (special tokens), left out of summaries
    embedding_scores: object = None  # attributions before summing per unit (e.g. L x H), for quality metrics


@dataclass(frozen=True)
class Models:
    """The models of one audit. Handed only to checks that declare `needs_models` (bias, attribution)."""

    modality: Modality
    base: object                 # the frozen pre-trained encoder
    adapted: object              # the adapted classifier under audit
    processor: object            # what turns inputs into tensors (a tokenizer, an image processor)
    probe: object = None         # M1's head: a fitted sklearn pipeline on the base's pooled embeddings
    pickle_accepted: bool = False
    pooling: tuple = ("mean",)   # how the base pools token states (its sentence-transformers config, if any)
    controls: dict | None = None  # M0's fitted controls (controls.build_controls), to score a streamed split

    def with_probe(self, probe, controls: dict | None = None) -> Models:
        return replace(self, probe=probe, controls=controls)

    def score(self, inputs, what: str) -> dict:
        """Class probabilities of new inputs (counterfactuals) for the adapted model and the base probe."""
        from ..evidence import softmax
        from ..results import ModelRole

        adapted = self.modality.forward(self, "adapted", inputs, what=f"{what}: adapted model")
        base = self.modality.forward(self, "base", inputs, what=f"{what}: base model")
        return {ModelRole.ADAPTED.value: softmax(adapted["logits"]),
                ModelRole.BASE_PROBE.value: self.probe.predict_proba(base["pooled"])}


class Modality(Protocol):
    """One per kind of input. Instances are built from the spec (`tasks.modality_for`) and hold its settings."""

    name: str
    unit_name: str                  # what an attribution unit is called in reports ("word", "image cell")
    control_features_name: str      # what the LogME control features are ("TF-IDF", "HOG ...")

    def read_inputs(self, frame, src, data, spec_file: str) -> list:
        """The model inputs of a split's rows (texts; image paths), validated with clear InputErrors."""

    def fingerprint(self, inputs) -> list:
        """What identifies the inputs' content in the rows' digest (texts; image files' SHA-256)."""

    def prepare_models(self, spec, dataset, cache_root, timings: dict) -> tuple[Models, dict]:
        """Load the base; load or fine-tune (cached by content) the adapted model. Returns the models and
        their provenance for results.json ({'base': {...}, 'adapted': {...}})."""

    def cache_key(self) -> tuple:
        """Settings that change forward-pass outputs (e.g. max_length), part of the evidence cache key."""

    def forward(self, models: Models, which: str, inputs, *, layer_rows: int = 0, what: str = "inference") -> dict:
        """One batched pass of `which` ('base' | 'adapted') over inputs: {'pooled': (n, d),
        'logits': (n, K) for 'adapted', 'layers': L arrays (k, d_l) pooled per layer (or stage, whose widths
        may differ) for the first `layer_rows` rows, optionally 'layer_names': L strings}."""

    def input_controls(self, train, seed: int) -> dict:
        """No-pretraining controls fitted on the train split's inputs: {role: model with predict_proba(inputs)}."""

    def descriptors(self, inputs, train_inputs):
        """Per-row numeric descriptors of the inputs for drift tests (a pandas DataFrame)."""

    def control_features(self, inputs, dim: int, seed: int) -> np.ndarray:
        """Features with no pre-training, of the same width as the base's embeddings (the LogME control)."""

    def counterfactual_axes(self, dataset, split, rng, links=()) -> dict:
        """{axis: (source row per pair, changed inputs)}: each input with only an identity attribute changed (text),
        or under one label-irrelevant perturbation (images); a row appears once per change made from it.
        str(changed input) is how reports show it. links: the spec's extra linked values (checks.bias), parsed
        into (column, linked column, value, value) tuples."""

    def explainers(self, models: Models) -> dict:
        """{role: differentiable module} for the adapted model and the base probe."""

    def attribute(self, module, inputs, targets, schedule, tolerance: float, what: str) -> tuple[list, float]:
        """Attributions (one Attribution per input) and the seconds spent."""

    def attribution_units(self, attribution: Attribution) -> list[tuple[str, float]]:
        """Attribution per human-readable unit (words for text), special units dropped."""

    def sensitive_units(self, dataset, extra_terms) -> set[str]:
        """Units that name an identity (sensitive words), or lie in the region of interest (image cells)."""

    def sensitive_note(self, dataset) -> str:
        """One sentence for the report: which units count as sensitive, and where that comes from."""

    def illustrate(self, inputs, attributions, limit: int) -> list[str]:
        """Base64 PNG pictures of the first `limit` attributions (saliency overlays), or [] for none."""

    def quality_scores(self, module, input_, attribution: Attribution, seed: int, sensitivity: bool) -> dict:
        """Infidelity and (when asked) sensitivity_max of one explained example, reusing its attribution:
        {'infidelity', 'sensitivity_max' (None when not asked), 'passes'}."""


__all__ = ["Attribution", "Modality", "Models"]
