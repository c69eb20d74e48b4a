"""Confidence intervals for the test metrics: a seeded, stratified bootstrap over the test samples.

An interval says how much a metric could have come out differently had the test
split held other patients from the same population: the test samples are drawn
again with replacement, class by class (every resample keeps the test split's
class counts), the metric is computed on each resample, and the interval is the
central ``confidence`` share of those values (the percentile interval). It is the
uncertainty that comes from the finite test set; it says nothing about how the
metric would vary with another training run (seed, split, augmentation).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from goodfit.errors import GoodfitError

MIN_RESAMPLES = 100
METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "log_loss", "roc_auc", "ece", "brier")
BINARY_METRICS = ("sensitivity", "specificity", "ppv", "npv")
PER_CLASS_METRICS = ("sensitivity", "specificity", "ppv", "npv", "roc_auc")
# Resampled test samples per batch of resamples: a batch's (resamples x samples)
# arrays stay at 16 MB each, well under 200 MB in all, whatever the test set's size.
_BATCH_SAMPLES = 2_000_000


def bootstrap_intervals(y_true: np.ndarray, proba: np.ndarray, *, threshold: float = 0.5,
                        class_names: Sequence[str], n_resamples: int = 1000, seed: int = 0,
                        confidence: float = 0.95, n_bins: int = 15) -> tuple[dict, dict]:
    """Percentile intervals of a stratified bootstrap over the test samples, for every test metric.

    Each of the ``n_resamples`` resamples draws, for every class, as many test
    samples of that class as the test split has, with replacement; the interval
    of a metric is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
    quantiles of its values over the resamples. It measures the uncertainty from
    the finite test set, not from training. The same inputs and ``seed`` give the
    same bits on every call.

    The metrics are those of :func:`goodfit.evaluation.classification_metrics`
    (labels predicted with :func:`goodfit.evaluation.predict_labels` at
    ``threshold``) plus ``ece`` (expected calibration error, ``n_bins`` equal-width
    bins of the confidence: ``P(class 1)`` against ``y == 1`` for two classes, the
    top probability against a correct prediction otherwise), ``brier`` (mean
    squared distance of ``proba`` from the one-hot truth, over the classes; for
    two classes over ``P(class 1)`` only), and for two classes ``ppv`` and ``npv``.
    Every class is in every resample, so every metric is defined on each; a metric
    that does not vary over the resamples (accuracy 1.0 of a perfect classifier)
    gets ``low == high`` equal to that value. The ECE is biased upward under
    resampling (the duplicates a resample adds only widen the per-bin gaps), so for
    a well-calibrated model its interval can lie wholly above the point estimate.

    Args:
        y_true: true classes ``(N,)``, integers in ``range(len(class_names))``.
        proba: class probabilities ``(N, K)``.
        threshold: decision threshold on ``P(class 1)`` (two classes only).
        class_names: the ``K`` class names, in class order.
        n_resamples: bootstrap resamples, at least 100.
        seed: seeds ``numpy.random.default_rng``.
        confidence: the interval's coverage, in (0, 1).
        n_bins: calibration bins for ``ece``.

    Returns:
        ``(intervals, per_class_intervals)``: ``intervals[metric] = {"low": float,
        "high": float}`` for ``accuracy, balanced_accuracy, f1_macro, log_loss,
        roc_auc, ece, brier``, for two classes also ``sensitivity, specificity, ppv,
        npv`` (class 1 positive) and, when ``threshold != 0.5``,
        ``accuracy_at_default_threshold``. ``per_class_intervals`` is ``{}`` for two
        classes; otherwise ``{class_name: {metric: {"low", "high"}}}`` for
        ``sensitivity, specificity, ppv, npv, roc_auc`` of that class against the rest.

    Raises:
        GoodfitError: ``n_resamples`` not an integer >= 100, ``confidence`` outside
            (0, 1), ``proba`` not matching ``y_true`` and ``class_names``, or a class
            without a test sample.
    """
    from scipy import stats

    y, proba = _checked(y_true, proba, class_names, n_resamples, confidence, n_bins)
    statistic = _Statistic(y, proba, threshold=threshold, n_bins=n_bins)
    members = [np.flatnonzero(y == c) for c in range(proba.shape[1])]
    drawn = [m for m in members if len(m) > 1]
    if drawn:
        statistic.fixed = np.concatenate([m for m in members if len(m) == 1] + [np.empty(0, np.int64)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            result = stats.bootstrap(drawn, statistic, n_resamples=n_resamples, paired=False, vectorized=True,
                                     batch=max(1, min(n_resamples, _BATCH_SAMPLES // len(y))),
                                     confidence_level=confidence, method="percentile",
                                     rng=np.random.default_rng(seed))
        low, high = result.confidence_interval
    else:  # one test sample per class: every resample is the test split itself
        low = high = statistic.values(np.ones((1, len(y))))[:, 0]
    bounds = {name: {"low": float(lo), "high": float(hi)} for name, lo, hi in zip(statistic.names, low, high)}
    intervals = {name: bounds.pop(name) for name in list(bounds) if "/" not in name}
    per_class = {name: {metric: bounds[f"{c}/{metric}"] for metric in PER_CLASS_METRICS}
                 for c, name in enumerate(class_names)} if proba.shape[1] > 2 else {}
    return intervals, per_class


def _checked(y_true, proba, class_names, n_resamples, confidence, n_bins) -> tuple[np.ndarray, np.ndarray]:
    """``(y, proba)`` as int64 / float64 arrays, or a GoodfitError that says what to fix."""
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) \
            or n_resamples < MIN_RESAMPLES:
        raise GoodfitError(f"bootstrap: n_resamples is {n_resamples!r}; it must be an integer of at least "
                           f"{MIN_RESAMPLES} (1000 or more for stable 95% bounds).")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.floating)) \
            or not 0 < confidence < 1:
        raise GoodfitError(f"bootstrap: confidence is {confidence!r}; it must be a number strictly between 0 "
                           "and 1, e.g. 0.95 for a 95% interval.")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise GoodfitError(f"bootstrap: n_bins is {n_bins!r}; it must be a positive integer (15 by default).")
    names = list(class_names)
    k = len(names)
    if k < 2 or len(set(names)) != k:
        raise GoodfitError(f"bootstrap: class_names {names!r} must name two or more distinct classes.")
    y = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    if y.ndim != 1 or proba.ndim != 2 or proba.shape != (len(y), k):
        raise GoodfitError(f"bootstrap: proba has shape {proba.shape} and y_true {y.shape}, but {k} class "
                           f"names were given; pass proba as (N, {k}) with one row per test sample of y_true (N,).")
    if not np.issubdtype(y.dtype, np.integer) or len(y) and (y.min() < 0 or y.max() >= k):
        raise GoodfitError(f"bootstrap: y_true must hold integer classes 0..{k - 1} (one per class name).")
    if not np.isfinite(proba).all() or len(y) and (proba.min() < 0 or proba.max() > 1):
        raise GoodfitError("bootstrap: proba must hold probabilities: finite numbers in [0, 1].")
    counts = np.bincount(y, minlength=k)
    if (counts == 0).any():
        missing = ", ".join(repr(names[c]) for c in np.flatnonzero(counts == 0))
        raise GoodfitError(f"bootstrap: {'classes' if ', ' in missing else 'class'} {missing} has no test sample, so the resamples cannot be "
                           "stratified by class and its metrics are undefined; give the test split at least "
                           "one sample of every class (a larger test share, or a stratified split).")
    return y.astype(np.int64), proba


def _resample_weights(indices: np.ndarray, n: int) -> np.ndarray:
    """How often each of the ``n`` test samples occurs in each resample: ``(B, n)`` float64 from ``(B, n)`` indices."""
    b = indices.shape[0]
    flat = (indices + (n * np.arange(b))[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


class _Keys:
    """Per-resample sums of a per-sample value over the test samples that share a key (a table cell, a bin)."""

    def __init__(self, key: np.ndarray):
        self.keys, self.index = np.unique(key, return_inverse=True)
        self._flat = (0, np.empty(0, np.int64))  # the last batch size's offset keys, reused by the next batch

    def sum(self, w: np.ndarray) -> np.ndarray:
        """``(B, G)``: per resample (row of ``w``), per key, the sum of ``w`` over the samples with that key."""
        b, g = w.shape[0], len(self.keys)
        if self._flat[0] != b:
            self._flat = (b, (self.index + g * np.arange(b)[:, None]).ravel())
        return np.bincount(self._flat[1], weights=w.ravel(), minlength=b * g).reshape(b, g)


class _Ranking:
    """The positives of one class against the rest, ordered by score, for a Mann-Whitney AUC per resample."""

    def __init__(self, score: np.ndarray, positive: np.ndarray):
        self.order = np.argsort(score, kind="stable")
        ordered = score[self.order]
        first = np.r_[True, ordered[1:] != ordered[:-1]]
        start = np.flatnonzero(first)[np.cumsum(first) - 1]  # per sorted position: where its ties begin
        end = np.flatnonzero(np.r_[first[1:], True])[np.cumsum(first) - 1] + 1  # ... and end (exclusive)
        at = np.flatnonzero(positive[self.order])
        self.positives, self.start, self.end = self.order[at], start[at], end[at]

    def auc(self, w: np.ndarray) -> np.ndarray:
        """``(B,)`` AUC: the share of (positive, negative) pairs that the score orders right, ties one half."""
        b, n = w.shape
        cum = np.zeros((b, n + 1))
        np.cumsum(np.take(w, self.order, axis=1), axis=1, out=cum[:, 1:])
        # weighted mid-rank of each positive: the samples scored lower plus half of those tied with it
        mid = 0.5 * (np.take(cum, self.start, axis=1) + np.take(cum, self.end, axis=1))
        wp = np.take(w, self.positives, axis=1)
        n_pos = wp.sum(axis=1)
        return ((wp * mid).sum(axis=1) - 0.5 * n_pos ** 2) / (n_pos * (n - n_pos))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, 0.0 where ``den`` is 0."""
    return np.divide(num, den, out=np.zeros(np.broadcast_shapes(num.shape, den.shape)), where=den > 0)


class _Statistic:
    """Every metric of every resample at once, from how often each test sample occurs in it.

    Called by ``scipy.stats.bootstrap`` with one ``(B, n_c)`` array of resampled
    test-sample indices per class (plus ``fixed``: the classes with a single test
    sample, always drawn); returns ``(len(names), B)``.
    """

    def __init__(self, y: np.ndarray, proba: np.ndarray, *, threshold: float, n_bins: int):
        from goodfit.evaluation import DEFAULT_THRESHOLD, predict_labels

        n, k = proba.shape
        self.n, self.k, self.fixed = n, k, np.empty(0, np.int64)
        pred = predict_labels(proba, threshold)
        self.cells = _Keys(y * k + pred)
        self.loss = -np.log(np.clip(proba, 1e-15, 1.0)[np.arange(n), y])
        onehot = np.eye(k)[y]
        if k == 2:
            conf, hit = proba[:, 1], (y == 1).astype(np.float64)
            self.brier = (proba[:, 1] - y) ** 2
        else:
            conf, hit = proba.max(axis=1), (proba.argmax(axis=1) == y).astype(np.float64)
            self.brier = ((proba - onehot) ** 2).sum(axis=1)
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        self.bins = _Keys(np.searchsorted(edges, conf, side="right") - 1)  # 1.0 gets a slot of its own
        self.gap = hit - conf
        self.default_hit = None
        if k == 2 and threshold != DEFAULT_THRESHOLD:
            self.default_hit = (predict_labels(proba) == y).astype(np.float64)
        self.rankings = [_Ranking(proba[:, c], y == c) for c in (range(k) if k > 2 else [1])]
        self.names = [*METRICS, *(BINARY_METRICS if k == 2 else ()),
                      *(["accuracy_at_default_threshold"] if self.default_hit is not None else []),
                      *(f"{c}/{m}" for c in range(k) if k > 2 for m in PER_CLASS_METRICS)]

    def __call__(self, *resampled: np.ndarray, axis: int = -1) -> np.ndarray:  # axis: scipy's vectorised call
        b = resampled[0].shape[0]
        indices = np.concatenate([*resampled, np.broadcast_to(self.fixed, (b, len(self.fixed)))], axis=-1)
        return self.values(_resample_weights(indices, self.n))

    def values(self, w: np.ndarray) -> np.ndarray:
        """``(len(names), B)`` metrics of the resamples whose sample counts are the rows of ``w`` ``(B, N)``."""
        b, n, k = w.shape[0], self.n, self.k
        cm = np.zeros((b, k * k))
        cm[:, self.cells.keys] = self.cells.sum(w)
        cm = cm.reshape(b, k, k)  # rows: true class, columns: prediction
        tp = np.diagonal(cm, axis1=1, axis2=2)
        true, predicted = cm.sum(axis=2), cm.sum(axis=1)
        fp, fn = predicted - tp, true - tp
        tn = n - tp - fp - fn
        per_class = {"sensitivity": _ratio(tp, true), "specificity": _ratio(tn, tn + fp),
                     "ppv": _ratio(tp, predicted), "npv": _ratio(tn, tn + fn)}
        aucs = np.stack([ranking.auc(w) for ranking in self.rankings], axis=1)
        rows = [tp.sum(axis=1) / n, per_class["sensitivity"].mean(axis=1),
                _ratio(2 * tp, true + predicted).mean(axis=1), w @ self.loss / n, aucs.mean(axis=1),
                np.abs(self.bins.sum(w * self.gap)).sum(axis=1) / n, w @ self.brier / n]
        if k == 2:
            rows += [per_class[m][:, 1] for m in BINARY_METRICS]
            if self.default_hit is not None:
                rows.append(w @ self.default_hit / n)
        else:
            per_class["roc_auc"] = aucs
            rows += [per_class[m][:, c] for c in range(k) for m in PER_CLASS_METRICS]
        return np.stack(rows)
