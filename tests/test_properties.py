"""Properties that hold for every input, checked on examples hypothesis draws.

The examples are the same on every run (the ``goodfit`` profile in conftest.py: derandomized,
no example database) and few, so the suite stays fast and CI never meets a new one.
"""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from goodfit import augment
from goodfit.augment import Augmenter
from goodfit.early_stopping import STOP_PATIENCE, EarlyStopping
from goodfit.errors import GoodfitError
from goodfit.evaluation import classification_metrics
from goodfit.params import AugmentParams, ImageAugmentParams, SeriesAugmentParams
from goodfit.sources.base import Dataset
from goodfit.splitting import make_splits
from goodfit.uncertainty import bootstrap_intervals

SHAPES = {"image": (1, 6, 6), "timeseries": (2, 24), "tabular": (4,)}
# Every transform on, with a chance of being drawn for each sample (flip, blur, mask).
CFG = AugmentParams(image=ImageAugmentParams(hflip=0.5, blur_p=0.5),
                    timeseries=SeriesAugmentParams(mask_p=0.5, mask_fraction=0.2))


def augmented(modality: str, x: np.ndarray, *, seed: int, copies: int, chunk_size: int) -> np.ndarray:
    aug = Augmenter(modality=modality, cfg=CFG, seed=seed, train_std=np.ones(x.shape[1]), clip=(0.0, 1.0))
    return np.concatenate(list(aug.iter_chunks(x, copies, chunk_size)))


@given(modality=st.sampled_from(sorted(SHAPES)), n=st.integers(1, 9), copies=st.integers(1, 2),
       chunk_size=st.integers(1, 10), threads=st.integers(1, 3), block_images=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1))
def test_augmentation_does_not_depend_on_chunk_size_block_size_or_thread_count(modality, n, copies, chunk_size,
                                                                               threads, block_images, seed):
    """The augmented set is the same, bit for bit, however it is cut into chunks and image blocks
    and on however many threads: every draw is a function of (seed, sample, copy) alone."""
    import torch

    x = np.random.default_rng(seed).random((n, *SHAPES[modality]), dtype=np.float32)
    reference = augmented(modality, x, seed=seed, copies=copies, chunk_size=n)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with mock.patch.object(augment, "BLOCK_VALUES", block_images * math.prod(SHAPES[modality])):
            result = augmented(modality, x, seed=seed, copies=copies, chunk_size=chunk_size)
    finally:
        torch.set_num_threads(before)
    assert result.shape == (n * (copies + 1), *SHAPES[modality])
    assert np.array_equal(result, reference)


@settings(suppress_health_check=[HealthCheck.filter_too_much])
@given(counts=st.lists(st.integers(2, 40), min_size=2, max_size=5), val_fraction=st.floats(0.05, 0.4),
       test_fraction=st.floats(0.05, 0.4), seed=st.integers(0, 10_000))
def test_each_stratified_cut_keeps_every_class_share_within_one_sample(counts, val_fraction, test_fraction, seed):
    """The splits partition the samples; the test split holds each class's share of the whole dataset
    and the validation split its share of what the test cut left (train + validation), each within
    one sample (rounding). Train, the rest of that second cut, is then within one sample of its share
    of train + validation; against the whole dataset the two roundings can add up to a little more."""
    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
    ids = np.arange(len(y), dtype=np.float32)[:, None]  # each sample's feature is its index
    ds = Dataset(x=ids, y=y, modality="tabular", class_names=[f"c{i}" for i in range(len(counts))], source="t")
    try:
        splits = make_splits(ds, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed).arrays
    except GoodfitError:  # too few samples for a stratified cut: refused, with its reason (tested elsewhere)
        assume(False)
    drawn = np.concatenate([splits[name][0][:, 0] for name in ("train", "val", "test")])
    assert np.array_equal(np.sort(drawn), ids[:, 0])
    for name in splits:  # the labels travel with their samples
        assert np.array_equal(splits[name][1], y[splits[name][0][:, 0].astype(int)])

    def per_class(name):
        return np.bincount(splits[name][1], minlength=len(counts))

    whole = np.asarray(counts)
    rest = per_class("train") + per_class("val")
    assert np.abs(per_class("test") - whole * per_class("test").sum() / whole.sum()).max() <= 1
    assert np.abs(per_class("val") - rest * per_class("val").sum() / rest.sum()).max() <= 1
    assert np.abs(per_class("train") - rest * per_class("train").sum() / rest.sum()).max() <= 1


# Metrics that are a mean over the test samples, or over one class's samples (which the stratified
# resamples keep at their count): their resampled values centre on the point estimate. (ROC AUC, F1,
# PPV and NPV are ratios of resampled counts, and the ECE leans high under resampling: see uncertainty.py.)
MEAN_METRICS = ("accuracy", "balanced_accuracy", "log_loss", "brier")
BINARY_MEAN_METRICS = ("sensitivity", "specificity")


@given(n_per_class=st.lists(st.integers(2, 30), min_size=2, max_size=4), signal=st.floats(0.0, 3.0),
       threshold=st.sampled_from([0.5, 0.3, 0.7]), seed=st.integers(0, 2**32 - 1))
def test_bootstrap_intervals_contain_the_point_estimate(n_per_class, signal, threshold, seed):
    """The 95% interval of a metric that is a mean over test samples contains its value on the test split."""
    rng = np.random.default_rng(seed)
    k = len(n_per_class)
    y = rng.permutation(np.repeat(np.arange(k), n_per_class))
    logits = rng.normal(size=(len(y), k))
    logits[np.arange(len(y)), y] += signal
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    threshold = threshold if k == 2 else 0.5
    point = classification_metrics(y, proba, threshold)
    intervals, _ = bootstrap_intervals(y, proba, threshold=threshold, class_names=[f"c{i}" for i in range(k)],
                                       n_resamples=200, seed=seed)
    for metric in MEAN_METRICS + (BINARY_MEAN_METRICS if k == 2 else ()):
        low, high = intervals[metric]["low"], intervals[metric]["high"]
        assert low - 1e-12 <= point[metric] <= high + 1e-12, (metric, low, point[metric], high)


# Values with many repeats (ties, and steps smaller or larger than delta) as well as arbitrary ones.
VALUES = st.one_of(st.sampled_from([0.5, 0.5, 0.49, 0.4, 1.0]), st.floats(-5.0, 5.0, allow_nan=False))


@given(values=st.lists(VALUES, min_size=1, max_size=30), patience=st.integers(1, 6),
       delta=st.sampled_from([0.0, 0.01, 0.2]), mode=st.sampled_from(["min", "max"]))
def test_early_stopping_stops_exactly_after_patience_calls_without_improvement(values, patience, delta, mode):
    """Early stopping never stops while fewer than ``patience`` calls in a row failed to improve, stops at
    the ``patience``-th, and an improvement is a value better than the best so far by more than ``delta``."""
    es = EarlyStopping(patience=patience, delta=delta, mode=mode, path=None)
    sign = 1.0 if mode == "min" else -1.0  # compare as losses: lower is better
    best, best_call = math.inf, 0
    for call, value in enumerate(values, start=1):
        improved = es(value)
        assert improved == (sign * value < best - delta or best_call == 0)
        if improved:
            best, best_call = sign * value, call
        assert es.best_epoch == best_call and es.best_score == pytest.approx(sign * best)
        without = call - best_call
        assert es.counter == without
        assert es.early_stop == (without >= patience)
        if es.early_stop:
            assert es.stop_reason == STOP_PATIENCE and without == patience
            break
