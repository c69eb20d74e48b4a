"""How far predicted probabilities can be taken at their word, and post-hoc temperature scaling.

* :func:`expected_calibration_error` (ECE) as torchmetrics defines it: 15 equal-width
  bins on [0, 1]; for two classes the predicted probability of class 1 against the
  observed frequency of class 1 (``BinaryCalibrationError``), for more classes the
  confidence of the top class against the accuracy (``MulticlassCalibrationError``);
  ``sum over bins |accuracy - confidence| x share of samples``.
* :func:`brier_score`: the mean squared distance between the probabilities and the
  one-hot truth (scikit-learn's ``brier_score_loss``: for two classes ``(p1 - y)^2``).
* :func:`fit_temperature` / :func:`apply_temperature`: ``train.calibration: temperature``
  divides the log-probabilities by one number T > 0 fitted on the validation split
  (the lowest validation log loss). T > 1 softens over-confident probabilities; the
  predicted class (the arg-max, and for two classes which side of 0.5) never changes.
  It acts on log-probabilities, so it applies alike to one network (where it equals
  dividing the logits by T) and to an averaged ensemble.
"""

from __future__ import annotations

import math

import numpy as np

from goodfit.errors import GoodfitError

N_BINS = 15
# T is searched on log T in [log T_MIN, log T_MAX]: wide enough for any network seen so
# far (fitted values 0.5-3), and bounded so that a validation split the model fits
# perfectly (log loss falls forever as T -> 0) ends at a finite, visible T_MIN.
T_MIN, T_MAX = 0.05, 20.0


def confidence_and_outcome(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the reliability diagram and the ECE compare, per sample: two classes: ``P(class 1)`` and
    whether the sample is class 1; more classes: the top probability and whether the top class is right."""
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=np.float64)
    if p.shape[1] == 2:
        return p[:, 1], (y == 1).astype(np.float64)
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = N_BINS) -> float:
    """The ECE of ``proba`` (``(N, K)``) for the labels ``y_true``, in [0, 1].

    Bins are ``[i / n_bins, (i + 1) / n_bins)``, with a confidence of exactly 1.0 in a
    slot of its own (torchmetrics' ``bucketize(..., right=True) - 1``).
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise GoodfitError(f"The number of calibration bins must be an integer >= 1, got {n_bins!r}.")
    conf, outcome = confidence_and_outcome(y_true, proba)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.searchsorted(edges, conf, side="right") - 1
    count = np.bincount(idx, minlength=n_bins + 1).astype(np.float64)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins + 1)
    outcome_sum = np.bincount(idx, weights=outcome, minlength=n_bins + 1)
    filled = count > 0
    gap = np.abs(outcome_sum[filled] - conf_sum[filled]) / count[filled]
    return float((gap * count[filled]).sum() / count.sum())


def brier_score(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The Brier score (scikit-learn's ``brier_score_loss``): lower is better, 0 for certain and right."""
    from sklearn.metrics import brier_score_loss

    p = np.asarray(proba, dtype=np.float64)
    if p.shape[1] == 2:
        return float(brier_score_loss(y_true, p[:, 1], pos_label=1))
    return float(brier_score_loss(y_true, p, labels=list(range(p.shape[1]))))


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(proba) / temperature)`` row by row, in float64 (``temperature`` 1: unchanged)."""
    if temperature == 1.0:
        return np.asarray(proba, dtype=np.float64)
    logp = np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-300, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(axis=1, keepdims=True)


def _nll(y: np.ndarray, proba: np.ndarray, temperature: float) -> float:
    p = apply_temperature(proba, temperature)[np.arange(len(y)), y]
    return float(-np.log(np.clip(p, 1e-300, 1.0)).mean())


def fit_temperature(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The temperature with the lowest log loss of ``proba`` on ``y_true`` (the validation split only).

    A bounded scalar search on log T (scipy's ``minimize_scalar``), deterministic; the
    result is rounded to 6 significant digits so that it reads the same everywhere.

    Raises:
        GoodfitError: fewer than two samples, or only one class among them.
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(y_true, dtype=np.int64)
    if len(y) < 2 or len(np.unique(y)) < 2:
        raise GoodfitError(
            f"train.calibration: temperature needs a validation split with at least two classes, and this one has "
            f"{len(y)} sample(s) of {len(np.unique(y))} class(es). Set train.calibration to none, or give the "
            "validation split more samples (data.val_fraction).")
    found = minimize_scalar(lambda log_t: _nll(y, proba, math.exp(log_t)), method="bounded",
                            bounds=(math.log(T_MIN), math.log(T_MAX)), options={"xatol": 1e-6})
    return float(f"{math.exp(found.x):.6g}")


def check_temperature(value, where: str) -> float:
    """A saved temperature as a float.

    Raises:
        GoodfitError: not a finite number > 0.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise GoodfitError(f"{where} holds the calibration temperature {value!r}, which is not a number > 0; "
                           "re-train the model (dvc repro -f train).")
    return float(value)
