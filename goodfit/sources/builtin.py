"""Datasets that ship inside scikit-learn (no network needed)."""

from __future__ import annotations

import numpy as np

from goodfit.sources.base import Dataset


def load_digits(data_params=None) -> Dataset:
    """scikit-learn's handwritten digits: 1,797 real 8x8 grayscale images, 10 classes.

    Pixel values 0..16 are scaled to [0, 1]; images are ``(N, 1, 8, 8)``.
    """
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]  # (N, 1, 8, 8)
    return Dataset(
        x=x,
        y=bunch.target.astype(np.int64),
        modality="image",
        class_names=[str(c) for c in bunch.target_names],
        source="sklearn:digits",
    )


def load_breast_cancer(data_params=None) -> Dataset:
    """scikit-learn's Wisconsin diagnostic breast cancer table: 569 x 30, binary."""
    from sklearn.datasets import load_breast_cancer as _load

    bunch = _load()
    return Dataset(
        x=bunch.data.astype(np.float32),  # (N, 30)
        y=bunch.target.astype(np.int64),
        modality="tabular",
        class_names=[str(c) for c in bunch.target_names],
        source="sklearn:breast_cancer",
        feature_names=[str(f) for f in bunch.feature_names],
    )
