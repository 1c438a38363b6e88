"""The text modality (also tabular rows serialised to text by a template): Hugging Face encoders, tokenised
inputs, a TF-IDF control, text descriptors, identity-term swaps and token attributions.

This is the reference implementation of tasks.base.Modality; each method is thin and delegates to the module
that does the work (models/loading.py, models/finetune.py, tasks/text_inference.py, tasks/text_counterfactual.py,
tasks/text_attribution.py).
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..progress import say
from .base import Attribution, Models

WORD = re.compile(r"[A-Za-z0-9']+")
GENERIC_WORDS = {"other", "unknown", "none", "not", "and", "or", "of"}  # category fillers, not identity
IDENTITY_TERMS = ("male", "female", "man", "woman", "men", "women", "he", "she", "him", "her", "his", "hers",
                  "husband", "wife", "father", "mother", "son", "daughter", "boy", "girl", "white", "black",
                  "asian", "hispanic", "latino", "latina", "indian", "eskimo", "islander", "african", "american",
                  "caucasian", "jewish", "muslim", "christian", "gay", "lesbian", "transgender")


class TextModality:
    name = "text"
    unit_name = "word"
    control_features_name = "TF-IDF"

    def __init__(self, max_length: int = 128, device: str = "auto"):
        self.max_length = max_length
        self.device = device          # a --device value; resolved (torch imported) when models load

    # ---- rows -> inputs ---------------------------------------------------------------------------------------
    def read_inputs(self, frame, src, data, spec_file: str) -> list[str]:
        """Texts from a column, or from a template over the row's columns (tabular rows serialised to text)."""
        from ..data import missing_column, source_label
        from ..spec import template_fields

        where = source_label(src)
        template = src.template or (None if src.text else data.template)
        column = src.text or (None if src.template else data.text)
        if template is not None:
            missing = [c for c in template_fields(template) if c not in frame.columns]
            if missing:
                raise missing_column(spec_file, "data.template", missing[0], where, frame)
            try:
                return [template.format_map(row) for row in frame.to_dict("records")]
            except (ValueError, KeyError, IndexError) as e:
                raise InputError(f"{spec_file}: data.template cannot format {where}: {e}.") from None
        if column not in frame.columns:
            raise missing_column(spec_file, "data.text", column, where, frame)
        values = frame[column]
        bad = values.isna() | ~values.map(lambda v: isinstance(v, str))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{spec_file}: {where} column {column!r} row {row} is not text. "
                             f"Got {values.iloc[row]!r} instead.")
        return values.tolist()

    def fingerprint(self, inputs) -> list[str]:
        """The texts themselves identify the rows' content."""
        return list(inputs)

    # ---- models -----------------------------------------------------------------------------------------------
    def prepare_models(self, spec, dataset, cache_root: Path, timings: dict) -> tuple[Models, dict]:
        """Load the base; load or fine-tune (cached by content) the adapted model; both on self.device."""
        from ..fileio import sha256_tree
        from ..models.finetune import cached_finetune, finetune, finetune_key, recipe_record
        from ..models.loading import load_classifier, load_encoder, load_tokenizer, pooling_modes
        from ..models.provenance import model_card_facts
        from ..models.references import resolve_model
        from ..runtime import precision_tag, resolve_device, set_threads

        set_threads()
        device = resolve_device(self.device)
        precision = precision_tag(device)
        t = time.perf_counter()
        where = spec.where
        base_ref = resolve_model(spec.model.base, f"{where}: model.base", cache_root)
        base_path = base_ref.path
        base = load_encoder(base_path, spec.model.allow_pickle, field=f"{where}: model.base")
        tokenizer = load_tokenizer(base_path)
        pooling = pooling_modes(base_path)
        info = {"base": {"ref": _shown_ref(spec.model.base, base_ref), "path": str(base_path),
                         "sha256": sha256_tree(base_path), **_hub_facts(base_ref), **model_card_facts(base_path)}}
        if pooling != ("mean",):
            info["base"]["pooling"] = "+".join(pooling)
        if spec.model.adapted is not None:
            adapted_ref = resolve_model(spec.model.adapted, f"{where}: model.adapted", cache_root)
            adapted_path = adapted_ref.path
            info["adapted"] = {"ref": _shown_ref(spec.model.adapted, adapted_ref), "source": "given",
                               **_hub_facts(adapted_ref)}
        else:
            train = dataset.splits["train"]
            seed = spec.model.finetune.seed_or(spec.seed)
            key = finetune_key(info["base"]["sha256"], train.digest, dataset.classes, spec.model.finetune, seed,
                               precision)
            adapted_path = cached_finetune(cache_root, key)
            if adapted_path is not None:
                say(f"fine-tuned model found in cache: {adapted_path}")
            else:
                t_ft = time.perf_counter()
                adapted_path = finetune(base_path, tokenizer, train.inputs, train.y, dataset.classes,
                                        spec.model.finetune, seed, cache_root, key, device)
                timings["finetune_s"] = round(time.perf_counter() - t_ft, 2)
            info["adapted"] = {"ref": None, "source": "fine-tuned by transfer-audit",
                               "recipe": recipe_record(spec.model.finetune, seed, len(train))}
        adapted, relation, pickled = load_classifier(adapted_path, base_path, dataset.n_classes,
                                                     spec.model.allow_pickle, field=f"{where}: model.adapted")
        info["adapted"].update({"path": str(adapted_path), "sha256": sha256_tree(adapted_path), "relation": relation})
        base, adapted = base.to(device), adapted.to(device)
        timings["models_s"] = round(time.perf_counter() - t, 2)
        timings["device"] = str(device) + (f" ({precision.split('-', 1)[1]} autocast)" if precision else "")
        return Models(self, base, adapted, tokenizer, pickle_accepted=pickled, pooling=pooling), info

    # ---- the forward pass -------------------------------------------------------------------------------------
    def cache_key(self) -> tuple:
        """max_length, and off the CPU the device and its autocast precision (CPU keys stay as they were)."""
        from ..runtime import precision_tag, resolve_device

        tag = precision_tag(resolve_device(self.device)) if self.device != "cpu" else None
        return (self.max_length,) + ((tag,) if tag else ())

    def forward(self, models: Models, which: str, inputs, *, layer_rows: int = 0, what: str = "inference") -> dict:
        from .text_inference import forward_split

        model = models.adapted if which == "adapted" else models.base
        return forward_split(model, models.processor, inputs, self.max_length, which == "adapted", layer_rows,
                             what=what, pooling=models.pooling if which == "base" else ("mean",))

    # ---- controls and descriptors -----------------------------------------------------------------------------
    def input_controls(self, train, seed: int) -> dict:
        """TF-IDF (word 1-2-grams) + logistic regression: the no-pretraining proxy for text (methods §1.2, B1)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        from ..results import ModelRole

        model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                              LogisticRegression(max_iter=2000, C=4.0, random_state=seed))
        return {ModelRole.NO_TRANSFER_TEXT.value: model.fit(list(train.inputs), train.y)}

    def descriptors(self, inputs, train_inputs):
        """Length, out-of-vocabulary share (words unseen in the train split) and non-ASCII share per text."""
        import pandas as pd

        vocabulary = {w.lower() for t in train_inputs for w in WORD.findall(t)}
        rows = []
        for t in inputs:
            words = [w.lower() for w in WORD.findall(t)]
            rows.append({"text_length": len(t), "text_words": len(words),
                         "text_oov_share": (sum(w not in vocabulary for w in words) / len(words)) if words else 0.0,
                         "text_non_ascii_share": (sum(ord(ch) > 127 for ch in t) / len(t)) if t else 0.0})
        return pd.DataFrame(rows)

    def control_features(self, inputs, dim: int, seed: int) -> np.ndarray:
        """TF-IDF features squeezed to `dim` with a seeded Gaussian random projection (the LogME control)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.random_projection import GaussianRandomProjection

        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(list(inputs))
        x = vec.transform(list(inputs))
        proj = GaussianRandomProjection(n_components=dim, random_state=seed).fit(x)
        return np.asarray(proj.transform(x))

    def counterfactual_axes(self, dataset, split, rng, links=()) -> dict:
        from .text_counterfactual import counterfactual_axes

        return counterfactual_axes(dataset, split, rng, links)

    # ---- attribution ------------------------------------------------------------------------------------------
    def explainers(self, models: Models) -> dict:
        from ..models.baselines import probe_as_linear
        from ..results import ModelRole
        from .text_attribution import ProbeClassifier

        w, b = probe_as_linear(models.probe)
        probe = ProbeClassifier(models.base, w, b, models.pooling)
        return {ModelRole.ADAPTED.value: _Explainer(models.adapted, models.processor),
                ModelRole.BASE_PROBE.value: _Explainer(probe, models.processor)}

    def attribute(self, module, inputs, targets, schedule, tolerance: float, what: str):
        from .text_attribution import attribute_many

        return attribute_many(module.model, module.tokenizer, inputs, targets, self.max_length, schedule, tolerance,
                              what)

    def attribution_units(self, attribution: Attribution) -> list[tuple[str, float]]:
        from .text_attribution import words_of

        return words_of(attribution.units, attribution.scores, attribution.skip)

    def sensitive_units(self, dataset, extra_terms) -> set[str]:
        """The identity lexicon, extra terms, and the words of every sensitive column's values."""
        words = set(IDENTITY_TERMS) | {t.lower() for t in extra_terms}
        for col in dataset.sensitive:
            for value in dataset.splits["current"].frame[col].astype(str).unique():
                words |= {w.lower() for w in re.findall(r"[A-Za-z]+", value)} - GENERIC_WORDS
        return words

    def sensitive_note(self, dataset) -> str:
        return (f"Sensitive words: the values of {', '.join(dataset.sensitive) or 'no column'} and an identity "
                "lexicon (extend it with checks.attribution.sensitive_terms).")

    def illustrate(self, inputs, attributions, limit: int) -> list[str]:
        """Texts need no pictures: the top-word tables show them."""
        return []

    def quality_scores(self, module, input_, attribution, seed: int, sensitivity: bool) -> dict:
        from .text_ig import quality_scores

        return quality_scores(module.model, module.tokenizer, input_, attribution, self.max_length, seed, sensitivity)

    def attribution_note(self, n: int, schedule, tolerance: float) -> str:
        return (f"LayerIntegratedGradients on the embedding layer, {n} label-stratified examples of the current "
                f"split, baseline [CLS] [PAD]... [SEP]; steps tried per example: {', '.join(map(str, schedule))} "
                f"until |delta| <= {tolerance:.0%} of |F(x) - F(baseline)|.")


def _shown_ref(ref: str, resolved) -> str:
    """What results.json keeps as the reference: package:NAME, a Hub id or URI as given, a folder by its name
    (or its Hub id when it is a cache snapshot), never an absolute path."""
    from ..models.references import RefKind

    return resolved.name if resolved.kind is RefKind.FOLDER else ref


def _hub_facts(resolved) -> dict:
    return {k: v for k, v in (("hub_id", resolved.hub_id), ("revision", resolved.revision)) if v}


class _Explainer:
    """A differentiable text classifier and its tokenizer, as the attribution engine takes them."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

