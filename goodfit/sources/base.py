"""The dataset contract shared by all sources, and its validation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from goodfit.errors import GoodfitError

MODALITIES = ("image", "timeseries", "tabular")


@dataclass
class Dataset:
    """A labelled dataset.

    Attributes:
        x: float32 features, ``(N, C, H, W)`` images, ``(N, C, L)`` series or ``(N, F)`` tables.
        y: int64 labels in ``0..len(class_names)-1``, shape ``(N,)``.
        modality: ``image``, ``timeseries`` or ``tabular``.
        class_names: one name per class.
        source: a short description of where the data came from.
        official: the source's own split, ``{"train": (x, y), "val": ..., "test": ...}``
            (any subset), or ``None`` when it has none.
        feature_names: column names for tables, else empty.
    """

    x: np.ndarray
    y: np.ndarray
    modality: str
    class_names: list[str]
    source: str
    official: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    feature_names: list[str] = field(default_factory=list)


_NDIM = {"image": 4, "timeseries": 3, "tabular": 2}
_SHAPE_DOC = {"image": "(N, C, H, W)", "timeseries": "(N, C, L)", "tabular": "(N, F)"}


def check_arrays(x: np.ndarray, y: np.ndarray, modality: str, n_classes: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Check one (x, y) pair and return it as (float32, int64).

    Raises:
        GoodfitError: wrong shapes, non-finite features, or labels that are not
            integers in ``0..n_classes-1``.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != _NDIM[modality]:
        raise GoodfitError(
            f"{what}: {modality} features must have shape {_SHAPE_DOC[modality]}, got shape {x.shape}."
        )
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise GoodfitError(
            f"{what}: labels must have shape (N,) with N = {x.shape[0]} (one per sample), got shape {y.shape}."
        )
    if x.shape[0] == 0:
        raise GoodfitError(f"{what}: there are no samples; check the data path and filters.")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise GoodfitError(f"{what}: features must be real numbers, got dtype {x.dtype}.")
    x = x.astype(np.float32, copy=False)
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0, 0])
        raise GoodfitError(
            f"{what}: features contain NaN or infinite values ({int(bad.sum())} entries, first in sample "
            f"{first}); impute or drop those samples before training."
        )
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise GoodfitError(f"{what}: labels must be integers, got non-integer values such as {y[y != np.round(y)][:3]}.")
    elif not np.issubdtype(y.dtype, np.integer):
        raise GoodfitError(f"{what}: labels must be integers, got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise GoodfitError(
            f"{what}: labels must lie in 0..{n_classes - 1} ({n_classes} classes), "
            f"got values from {int(y.min())} to {int(y.max())}."
        )
    return x, y


def validate_dataset(ds: Dataset) -> Dataset:
    """Validate a :class:`Dataset` in place of trust; returns it with canonical dtypes."""
    if ds.modality not in MODALITIES:
        raise GoodfitError(f"dataset modality must be one of {MODALITIES}, got {ds.modality!r}.")
    k = len(ds.class_names)
    if k < 2:
        raise GoodfitError(
            f"{ds.source}: found {k} class ({ds.class_names}); a classifier needs at least 2 classes."
        )
    ds.x, ds.y = check_arrays(ds.x, ds.y, ds.modality, k, ds.source)
    if ds.official:
        ds.official = {
            name: check_arrays(x, y, ds.modality, k, f"{ds.source} ({name} split)")
            for name, (x, y) in ds.official.items()
        }
    return ds
