"""The dataset contract shared by all sources, and its validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from goodfit.errors import GoodfitError

MODALITIES = ("image", "timeseries", "tabular")


@dataclass
class Dataset:
    """A labelled dataset.

    Attributes:
        x: float32 features, ``(N, C, H, W)`` images, ``(N, C, L)`` series or ``(N, F)`` tables; images
            from 8-bit sources as uint8 levels, k standing for k / 255 (:mod:`goodfit.storage`).
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
    """Check one (x, y) pair and return it as (float32, int64); 8-bit images stay uint8 and float16 stays
    float16 (compact storage, :mod:`goodfit.storage`).

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
    if modality == "image" and x.dtype == np.uint8:  # compact storage stays compact (goodfit.storage)
        bad = np.zeros(x.shape[:1], dtype=bool)  # levels are always finite
    elif x.dtype == np.float16:
        bad = ~np.isfinite(x)
    else:
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
    if ds.official:  # first, so that a message names the split
        ds.official = {
            name: check_arrays(x, y, ds.modality, k, f"{ds.source} ({name} split)")
            for name, (x, y) in ds.official.items()
        }
    ds.x, ds.y = check_arrays(ds.x, ds.y, ds.modality, k, ds.source)
    return ds


def existing_path(path, what: str, hint: str) -> Path:
    """``data.path`` as a :class:`~pathlib.Path` that exists.

    Args:
        path: the path from params (relative paths are relative to the project root).
        what: what the path should hold, for the message (e.g. "a MedMNIST .npz file").
        hint: how to fix it.

    Raises:
        GoodfitError: the path does not exist.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise GoodfitError(
            f"params.yaml: data.path {str(path)!r} does not exist (resolved to {p.resolve()}); "
            f"it should be {what}. {hint}"
        )
    return p


def encode_labels(values, what: str) -> tuple[np.ndarray, list[str]]:
    """Map raw labels (numbers or strings) to ``0..K-1``; class names are the sorted distinct values.

    Numbers sort numerically and integral floats print without a decimal point
    (UCR's ``1.0`` becomes class ``"1"``), so names and order do not depend on
    how a file spells its labels.

    Returns:
        ``(y, class_names)`` with ``y`` int64 of shape ``(N,)``.

    Raises:
        GoodfitError: missing labels.
    """
    values = np.asarray(values)
    if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
        first = int(np.flatnonzero(~np.isfinite(values))[0])
        raise GoodfitError(f"{what}: a label is missing (first at row {first + 1}); every sample needs a class.")
    if values.dtype.kind in "iuf":
        classes, y = np.unique(values, return_inverse=True)
        names = [str(int(c)) if float(c).is_integer() else repr(float(c)) for c in classes]
    else:
        if any(v is None or (isinstance(v, float) and v != v) for v in values.tolist()):
            raise GoodfitError(f"{what}: a label is missing; every sample needs a class.")
        classes, y = np.unique(values.astype(str), return_inverse=True)
        names = [str(c) for c in classes]
    return y.astype(np.int64).reshape(-1), names
