"""Applying a trained model to new data: the checks, the probabilities, the predicted classes.

:class:`Predictor` holds a model and its saved description (``models/model.pt``'s
spec) and does exactly what the evaluate stage does with the test split:
probabilities in eval mode, the calibration temperature when the model has one, the
predicted class at the saved decision threshold. ``python -m goodfit.predict`` and
goodfit's MLflow model (:mod:`goodfit.tracking`) both go through it, so a model gives
the same numbers wherever it is applied.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

from goodfit.errors import GoodfitError

_MODALITY = {"mlp": "tabular", "cnn": "image", "cnn1d": "timeseries"}


def describe_shape(modality: str, shape: Sequence[int]) -> str:
    """What one sample of ``shape`` is, in words (``8x8 images with 1 channel``)."""
    shape = [int(v) for v in shape]
    if modality == "image" and len(shape) == 3:
        c, h, w = shape
        return f"{h}x{w} images with {c} channel{'s' if c != 1 else ''}"
    if modality == "timeseries" and len(shape) == 2:
        c, length = shape
        return f"series of length {length} with {c} channel{'s' if c != 1 else ''}"
    if modality == "tabular" and len(shape) == 1:
        return f"rows of {shape[0]} features"
    return f"samples of shape {shape}"


class Predictor:
    """A trained model with its spec: input checks, probabilities, predicted classes.

    Args:
        model: the torch model (a :func:`goodfit.checkpoint.load_model` result), in eval mode.
        spec: its saved description (input shape, classes, threshold, temperature, ...).
        source: where it came from, for messages (``models/model.pt``, ``models:/...``).
    """

    def __init__(self, model, spec: dict, source: str):
        self.model, self.spec, self.source = model, dict(spec), source
        self.input_shape = [int(v) for v in spec["input_shape"]]
        self.n_classes = int(spec["n_classes"])
        self.modality = _MODALITY.get(spec.get("kind"), "tabular")
        names = spec.get("class_names") or [str(i) for i in range(self.n_classes)]
        self.class_names = [str(n) for n in names]
        self.feature_names = [str(n) for n in spec.get("feature_names") or []]
        self.threshold = float(spec.get("threshold", 0.5))
        self.temperature = spec.get("temperature")

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, source: str | None = None) -> "Predictor":
        """Load ``models/model.pt`` (weights only, never a pickle).

        Raises:
            GoodfitError: see :func:`goodfit.checkpoint.load_model`.
        """
        from goodfit.checkpoint import load_model

        model, spec = load_model(path)
        return cls(model, spec, source or str(path))

    @property
    def expects(self) -> str:
        """The input the model takes, in words."""
        return describe_shape(self.modality, self.input_shape)

    def check(self, x: np.ndarray, ids: Sequence[str], what: str) -> np.ndarray:
        """``x`` as float32 after checking it fits the model.

        Args:
            x: the samples, ``(N, *input_shape)``.
            ids: one name per sample (row number, file name), for messages.
            what: where the samples came from, for messages.

        Raises:
            GoodfitError: no samples, another shape per sample (naming the one the model
                takes), or NaN / infinite values (naming the first such sample).
        """
        x = np.asarray(x)
        if len(x) == 0:
            raise GoodfitError(f"{what} holds no samples; nothing to predict.")
        if list(x.shape[1:]) != self.input_shape:
            shape = [int(v) for v in x.shape[1:]]
            given = describe_shape(self.modality, shape)
            given = (f"each have shape {shape}" if given.startswith("samples of shape")
                     else f"are {given} (shape {shape} per sample)")
            raise GoodfitError(
                f"{what}: the samples {given}, but the model ({self.source}) takes {self.expects} "
                f"(shape {self.input_shape}). Give it data shaped like its training data."
            )
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise GoodfitError(f"{what}: the values must be real numbers, got dtype {x.dtype}.")
        x = x.astype(np.float32, copy=False)
        bad = ~np.isfinite(x.reshape(len(x), -1))
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            where = ""
            if self.modality == "tabular" and self.feature_names:
                where = f" in column {self.feature_names[int(np.flatnonzero(bad[rows[0]])[0])]!r}"
            raise GoodfitError(
                f"{what}: sample {ids[rows[0]]}{where} holds NaN or infinite values ({len(rows)} sample(s) do); "
                "the model needs finite numbers. Impute or drop those samples."
            )
        return x

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, K)`` float64, calibrated as the evaluate stage calibrates them."""
        from goodfit.calibration import apply_temperature
        from goodfit.evaluation import predict_proba

        raw = predict_proba(self.model, x)
        return raw if self.temperature is None else apply_temperature(raw, self.temperature)

    def labels(self, proba: np.ndarray) -> np.ndarray:
        """Predicted class indices at the model's saved threshold."""
        from goodfit.evaluation import predict_labels

        return predict_labels(proba, self.threshold)

    def columns(self) -> list[str]:
        """The probability columns: ``prob_<class name>`` per class."""
        return [f"prob_{name}" for name in self.class_names]

    def table(self, x: np.ndarray) -> dict[str, list]:
        """``{"prob_<class>": [...], ..., "predicted": [...]}`` for checked samples ``x``."""
        proba = self.proba(x)
        out: dict[str, list] = {col: proba[:, k].tolist() for k, col in enumerate(self.columns())}
        out["predicted"] = [self.class_names[k] for k in self.labels(proba)]
        return out


def format_number(v: float) -> str:
    """A probability as the shortest text that reads back as the same float64."""
    return repr(float(v)) if math.isfinite(v) else str(v)
