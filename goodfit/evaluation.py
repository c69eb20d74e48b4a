"""Test metrics and the fit diagnosis (overfitting / underfitting / good fit)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from goodfit.errors import GoodfitError
from goodfit.storage import inference_rows, to_float32_tensor

OVERFITTING = "overfitting"
UNDERFITTING = "underfitting"
GOOD_FIT = "good_fit"


@torch.inference_mode()
def predict_proba(model: nn.Module, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """Class probabilities ``(N, K)`` with the model in eval mode (dropout off); ``x`` as stored
    (:mod:`goodfit.storage`), decoded a batch at a time (``batch_size`` rows; by default
    :func:`goodfit.storage.inference_rows`)."""
    model.eval()
    out = []
    xt = torch.from_numpy(np.ascontiguousarray(x))
    batch_size = batch_size or inference_rows(xt)
    for start in range(0, len(xt), batch_size):
        out.append(torch.softmax(model(to_float32_tensor(xt[start:start + batch_size])).double(), dim=1))
    return torch.cat(out).numpy()


DEFAULT_THRESHOLD = 0.5


def predict_labels(proba: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Predicted classes: the likelier class, or for two classes class 1 when ``P(1) > threshold``.

    With two classes and the default threshold 0.5 both rules agree (a tie goes to class 0).

    Raises:
        GoodfitError: a threshold other than 0.5 for a task with more than two classes.
    """
    if proba.shape[1] == 2:
        return (proba[:, 1] > threshold).astype(np.int64)
    if threshold != DEFAULT_THRESHOLD:
        _refuse_threshold(f"A decision threshold ({threshold:g})", proba.shape[1])
    return proba.argmax(axis=1)


def _refuse_threshold(what: str, k: int) -> None:
    raise GoodfitError(f"{what} applies to two-class tasks only, and this one has {k} classes; set "
                       "train.threshold to 0.5 in params.yaml.")


def check_threshold(setting: float | str, n_classes: int) -> None:
    """Refuse a ``train.threshold`` other than 0.5 for a task without exactly two classes (before training).

    Raises:
        GoodfitError: naming the setting and the number of classes.
    """
    if n_classes != 2 and setting != DEFAULT_THRESHOLD:
        raise GoodfitError(f"params.yaml: train.threshold is {setting!r}, but a decision threshold applies to "
                           f"two-class tasks only and this dataset has {n_classes} classes; set train.threshold "
                           "to 0.5.")


def choose_threshold(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The threshold on ``P(class 1)`` with the highest accuracy on ``(y_true, proba)`` (the validation split).

    The candidates are 0.5 and the midpoints between consecutive distinct
    probabilities (plus one below the lowest and one above the highest), so a
    chosen threshold sits as far as possible from the samples on either side of
    it. Among equally accurate candidates the one closest to 0.5 wins: the
    threshold moves away from the default only as far as the validation split
    asks, and stays at 0.5 when 0.5 is already as good as any.

    Raises:
        GoodfitError: the task does not have two classes.
    """
    if proba.shape[1] != 2:
        _refuse_threshold("train.threshold: val_accuracy", proba.shape[1])
    p1 = proba[:, 1].astype(np.float64)
    y = np.asarray(y_true)
    s = np.unique(p1)
    candidates = np.concatenate([[DEFAULT_THRESHOLD], (s[:-1] + s[1:]) / 2, [s[0] / 2, (s[-1] + 1.0) / 2]])
    accuracy = ((p1[None, :] > candidates[:, None]) == (y[None, :] == 1)).mean(axis=1)
    best = np.flatnonzero(accuracy == accuracy.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best] - DEFAULT_THRESHOLD))]])


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float = DEFAULT_THRESHOLD, *,
                           n_bins: int = 15) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro F1, ROC AUC, log loss, expected calibration error (``ece``)
    and Brier score; for binary tasks (class 1 is the positive class) also sensitivity,
    specificity, positive and negative predictive value (``ppv``, ``npv``). Labels are
    predicted with :func:`predict_labels` at ``threshold``; ROC AUC, log loss, ECE and
    Brier score do not depend on it; the ECE uses ``n_bins`` bins. A ratio whose denominator is 0 (no predicted
    positive, say) is 0.0, as scikit-learn's ``zero_division=0``."""
    from sklearn import metrics as skm

    from goodfit.calibration import brier_score, expected_calibration_error

    k = proba.shape[1]
    y_pred = predict_labels(proba, threshold)
    labels = list(range(k))
    out = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "f1_macro": float(skm.f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)),
        "log_loss": float(skm.log_loss(y_true, np.clip(proba, 1e-15, 1.0), labels=labels)),
    }
    present = np.unique(y_true)
    if len(present) == k:
        if k == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y_true, proba[:, 1]))
        else:
            out["roc_auc"] = float(skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels))
    if k == 2:
        out.update(_one_vs_rest(skm.confusion_matrix(y_true, y_pred, labels=[0, 1]), 1))
    out["ece"] = expected_calibration_error(y_true, proba, n_bins)
    out["brier"] = brier_score(y_true, proba)
    return out


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def _one_vs_rest(matrix: np.ndarray, c: int) -> dict[str, float]:
    """Sensitivity, specificity, PPV and NPV of class ``c`` against all others, from a confusion matrix."""
    tp = matrix[c, c]
    fn = matrix[c].sum() - tp
    fp = matrix[:, c].sum() - tp
    tn = matrix.sum() - tp - fn - fp
    return {"sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
            "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn)}


def per_class_metrics(y_true: np.ndarray, proba: np.ndarray, class_names) -> dict[str, dict[str, float]]:
    """For more than two classes, each class against the rest, by class name: sensitivity,
    specificity, PPV, NPV (predictions: the likelier class) and ROC AUC of ``P(class)``
    (absent when the class or the rest has no sample). ``{}`` for two classes (the binary
    numbers of :func:`classification_metrics` already are the positive class's)."""
    from sklearn import metrics as skm

    k = proba.shape[1]
    if k == 2:
        return {}
    matrix = skm.confusion_matrix(y_true, predict_labels(proba), labels=list(range(k)))
    out = {}
    for c, name in enumerate(class_names):
        numbers = _one_vs_rest(matrix, c)
        positive = np.asarray(y_true) == c
        if 0 < positive.sum() < len(positive):
            numbers["roc_auc"] = float(skm.roc_auc_score(positive, proba[:, c]))
        out[str(name)] = numbers
    return out


def confusion(y_true: np.ndarray, proba: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Confusion matrix ``(K, K)``: rows are true classes, columns predictions (at ``threshold``)."""
    from sklearn.metrics import confusion_matrix

    k = proba.shape[1]
    return confusion_matrix(y_true, predict_labels(proba, threshold), labels=list(range(k)))


def prior_loss(class_counts: Sequence[int]) -> float:
    """Cross-entropy of always predicting the class frequencies: the entropy of the prior."""
    p = np.asarray(class_counts, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


def diagnose_fit(history: Sequence[dict], *, baseline_loss: float, overfit_rise: float = 0.1,
                 underfit_ratio: float = 0.7, noise_floor: float = 0.02) -> dict:
    """Classify a training run from its learning curves.

    * ``underfitting``: the best training loss and the best validation loss both stay
      at or above ``underfit_ratio`` times ``baseline_loss`` (the loss of always
      predicting the class frequencies): the model barely beat guessing.
    * ``overfitting``: after its minimum the validation loss (mean of the last
      three epochs) rose by more than ``overfit_rise`` (relative to the minimum) and
      by more than ``noise_floor`` times ``baseline_loss`` (so epoch-to-epoch noise
      on a tiny loss is not called overfitting), while the training loss kept falling.
    * ``good_fit`` otherwise.

    "Training loss" is ``train_eval_loss`` when the history has it: the training
    originals in eval mode, measured as the validation split is, so the two curves
    differ only in the data (like for like). ``train_loss``, the running mean over an
    epoch of augmented copies with dropout on, is used only for a history without it.
    ``numbers["train_measure"]`` names the one used.

    A history with a ``fold`` column (``train.folds > 1``) is diagnosed member by
    member; the commonest verdict is returned with its first member's numbers and
    ``fold_verdicts``.

    Args:
        history: rows with ``epoch``, ``val_loss`` and ``train_eval_loss`` (or ``train_loss``).
        baseline_loss: see :func:`prior_loss` (training class counts).
        overfit_rise: relative rise of the validation loss that counts as overfitting.
        underfit_ratio: share of the baseline loss that counts as "still high".
        noise_floor: smallest absolute rise, as a share of ``baseline_loss``, that counts.

    Returns:
        ``{"verdict": ..., "reason": ..., and the numbers behind it}``.
    """
    from goodfit.history import split_folds, train_measure

    members = split_folds(history)
    if members is not None:  # train.folds > 1: one diagnosis per member, the commonest wins
        each = [diagnose_fit(h, baseline_loss=baseline_loss, overfit_rise=overfit_rise,
                             underfit_ratio=underfit_ratio, noise_floor=noise_floor) for h in members]
        verdicts = [d["verdict"] for d in each]
        verdict = max(verdicts, key=verdicts.count)  # ties: the first fold's
        first = each[verdicts.index(verdict)]
        return {**first, "reason": f"{verdicts.count(verdict)} of {len(each)} folds: {first['reason']}",
                "fold_verdicts": verdicts}
    measure = train_measure(history)
    rows = [r for r in history if math.isfinite(r[measure]) and math.isfinite(r["val_loss"])]
    if not rows:
        return {"verdict": UNDERFITTING, "reason": "no epoch with finite losses", "baseline_loss": baseline_loss,
                "train_measure": measure}
    train = np.array([r[measure] for r in rows])
    val = np.array([r["val_loss"] for r in rows])
    best = int(np.argmin(val))
    val_end = float(val[max(best + 1, len(val) - 3):].mean()) if best < len(val) - 1 else float(val[best])
    numbers = {
        "baseline_loss": float(baseline_loss),
        "best_epoch": int(rows[best]["epoch"]),
        "min_val_loss": float(val[best]),
        "min_train_loss": float(train.min()),
        "final_train_loss": float(train[-1]),
        "final_val_loss": float(val[-1]),
        "val_rise": float((val_end - val[best]) / max(val[best], 1e-12)),
        "val_rise_abs": float(val_end - val[best]),
        "train_drop_after_best": float((train[best] - train[-1]) / max(train[best], 1e-12)),
        "gap_at_best": float(val[best] - train[best]),
        "train_measure": measure,
    }
    high = underfit_ratio * baseline_loss
    if numbers["min_train_loss"] >= high and numbers["min_val_loss"] >= high:
        verdict = UNDERFITTING
        reason = (f"train and validation loss stayed >= {underfit_ratio:g} x the class-prior loss "
                  f"{baseline_loss:.3f}")
    elif (numbers["val_rise"] > overfit_rise and numbers["val_rise_abs"] > noise_floor * baseline_loss
          and numbers["train_drop_after_best"] > 0):
        verdict = OVERFITTING
        reason = (f"validation loss rose {numbers['val_rise']:.0%} above its minimum (epoch "
                  f"{numbers['best_epoch']}) while training loss kept falling")
    else:
        verdict = GOOD_FIT
        reason = "both losses fell well below the class-prior loss and validation did not turn up"
    return {"verdict": verdict, "reason": reason, **numbers}
