"""Stratified, seeded train / validation / test splits and train-only statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from goodfit import storage
from goodfit.errors import GoodfitError
from goodfit.io import open_npz_array, read_json, read_npz
from goodfit.sources.base import MODALITIES, Dataset, check_arrays

SPLITS = ("train", "val", "test")


@dataclass
class Splits:
    """The three splits as ``{"train": (x, y), "val": (x, y), "test": (x, y)}`` plus provenance."""

    arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    strategy: str


def _stratified(x, y, fraction: float, seed: int, what: str):
    from sklearn.model_selection import train_test_split

    n_classes = len(np.unique(y))
    n_take = int(round(fraction * len(y)))
    if n_take < n_classes or len(y) - n_take < n_classes:
        raise GoodfitError(
            f"Cannot carve the {what} split: {fraction:g} of {len(y)} samples is {n_take}, but a stratified "
            f"split needs at least one sample of each of the {n_classes} classes on both sides. "
            "Raise the fraction or use more data."
        )
    counts = np.bincount(y)
    if counts[counts > 0].min() < 2:
        cls = int(np.flatnonzero(counts == 1)[0])
        raise GoodfitError(
            f"Cannot carve the {what} split: class {cls} has a single sample, so it cannot appear on both "
            "sides of a stratified split. Add samples of that class or drop it."
        )
    return train_test_split(x, y, test_size=n_take, stratify=y, random_state=seed, shuffle=True)


def make_splits(ds: Dataset, *, val_fraction: float, test_fraction: float, seed: int,
                keep_official: bool = True) -> Splits:
    """Split ``ds`` into stratified, seeded train / val / test sets.

    A source's official split is kept when ``keep_official``; a missing validation
    split is carved from train (stratified), a missing test split likewise.

    Args:
        ds: the dataset.
        val_fraction: share of all samples for validation (when carved).
        test_fraction: share of all samples for test (when carved).
        seed: the split seed.
        keep_official: keep the source's own split where it has one.

    Returns:
        :class:`Splits`.

    Raises:
        GoodfitError: a split would be empty or lack a class.
    """
    official = ds.official if (keep_official and ds.official) else None
    if official and "train" in official:
        x_tr, y_tr = official["train"]
        parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        n_total = len(y_tr) + sum(len(v[1]) for k, v in official.items() if k != "train")
        if "test" in official:
            parts["test"] = official["test"]
        else:
            frac = test_fraction * n_total / len(y_tr)
            x_tr, x_te, y_tr, y_te = _stratified(x_tr, y_tr, min(frac, 0.5), seed, "test")
            parts["test"] = (x_te, y_te)
        if "val" in official:
            parts["val"] = official["val"]
            strategy = "official"
        else:
            frac = val_fraction * n_total / len(y_tr)
            x_tr, x_va, y_tr, y_va = _stratified(x_tr, y_tr, min(frac, 0.5), seed, "validation")
            parts["val"] = (x_va, y_va)
            strategy = "official train/test; validation carved from train"
        parts["train"] = (x_tr, y_tr)
    else:
        x_rest, x_te, y_rest, y_te = _stratified(ds.x, ds.y, test_fraction, seed, "test")
        frac = val_fraction / (1.0 - test_fraction)
        x_tr, x_va, y_tr, y_va = _stratified(x_rest, y_rest, frac, seed + 1, "validation")
        parts = {"train": (x_tr, y_tr), "val": (x_va, y_va), "test": (x_te, y_te)}
        strategy = "stratified"
    k = len(ds.class_names)
    for name in SPLITS:
        _, y = parts[name]
        present = np.unique(y)
        if len(present) < 2:
            raise GoodfitError(
                f"The {name} split has {len(present)} class ({len(y)} samples); every split needs at least "
                "2 classes. Use more data or change the split fractions."
            )
        if name == "train" and len(present) < k:
            missing = sorted(set(range(k)) - set(present.tolist()))
            raise GoodfitError(
                f"The train split lacks classes {[ds.class_names[i] for i in missing]}; "
                "the model could never learn them. Add samples of those classes."
            )
    return Splits(arrays={n: (np.ascontiguousarray(parts[n][0]), parts[n][1]) for n in SPLITS}, strategy=strategy)


def normalization_stats(x_train: np.ndarray, modality: str) -> dict[str, list[float]]:
    """Mean and standard deviation from the training split only (no leakage).

    Per channel for images and series (axis 1), per feature for tables.
    A zero deviation becomes 1 so constant inputs pass through unchanged.
    8-bit images (uint8 levels k / 255) are summed exactly in integers, a chunk at a time.
    """
    axes = (0,) if modality == "tabular" else tuple(i for i in range(x_train.ndim) if i != 1)
    if x_train.dtype == np.uint8:
        mean, std = _level_stats(x_train, axes)
    else:
        mean = x_train.astype(np.float64).mean(axis=axes)
        std = x_train.astype(np.float64).std(axis=axes)
    std = np.where(std > 1e-12, std, 1.0)
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def _level_stats(x: np.ndarray, axes: tuple[int, ...], chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and standard deviation of uint8 levels ``k / 255`` per channel (axis 1).

    Sums of levels and of their squares are integers (exact in any order, with no float64
    copy of the set); Python's integer division then rounds each result once.
    """
    total = np.zeros(x.shape[1], dtype=object)
    squares = np.zeros(x.shape[1], dtype=object)
    for start in range(0, len(x), chunk):
        c = x[start:start + chunk].astype(np.int64)
        total += [int(v) for v in c.sum(axis=axes)]
        squares += [int(v) for v in (c * c).sum(axis=axes)]
    n = len(x) * int(np.prod([x.shape[a] for a in axes if a != 0], dtype=np.int64))
    levels = storage.LEVELS
    mean = np.array([int(t) / (n * levels) for t in total])
    var = np.array([(int(q) * n - int(t) ** 2) / (n * n * levels * levels) for t, q in zip(total, squares)])
    return mean, np.sqrt(var)


def build_meta(ds: Dataset, splits: Splits, *, seed: int, storage_dtype: str = "float32") -> dict:
    """The ``meta.json`` contract: modality, classes, shapes, source, counts, train statistics and the
    dtype the split files store (:mod:`goodfit.storage`)."""
    k = len(ds.class_names)
    x_tr, _ = splits.arrays["train"]
    return {
        "modality": ds.modality,
        "class_names": list(ds.class_names),
        "n_classes": k,
        "input_shape": list(x_tr.shape[1:]),
        "feature_names": list(ds.feature_names),
        "source": ds.source,
        "split_strategy": splits.strategy,
        "seed": seed,
        "counts": {
            name: {"total": int(len(y)), "per_class": np.bincount(y, minlength=k).astype(int).tolist()}
            for name, (_, y) in splits.arrays.items()
        },
        "normalization": normalization_stats(x_tr, ds.modality),
        "storage": storage_dtype,
    }


_META_KEYS = ("modality", "class_names", "n_classes", "input_shape", "counts", "normalization")


def load_meta(path) -> dict:
    """Read ``meta.json`` and check the fields later stages rely on.

    Raises:
        GoodfitError: the file is missing, malformed, or lacks a field.
    """
    meta = read_json(path)
    if not isinstance(meta, dict):
        problem = f"holds a {type(meta).__name__}, not an object"
    elif missing := [k for k in _META_KEYS if k not in meta]:
        problem = f"lacks the field {missing[0]!r}"
    elif meta["modality"] not in MODALITIES:
        problem = f"names the modality {meta['modality']!r}, not one of {', '.join(MODALITIES)}"
    elif meta["n_classes"] != len(meta["class_names"]):
        problem = f"says n_classes {meta['n_classes']} but lists {len(meta['class_names'])} class names"
    else:
        return meta
    raise GoodfitError(f"{path} {problem}; it was not written by this version's split stage. "
                       "Re-create it: dvc repro -f split.")


def load_split(path, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Read one split file (``x`` as stored, ``y`` int64) and check it against ``meta.json``.

    ``x`` keeps the dtype ``meta["storage"]`` names (float32, float16 or uint8 levels;
    :func:`goodfit.storage.to_float32` decodes it). Checks the dtype and the shapes, that
    features are finite and that labels are integers in ``0..n_classes-1``, so a stale,
    hand-edited or corrupted file stops the stage before any work.

    Raises:
        GoodfitError: the file is unreadable or does not match ``meta``.
    """
    arrays = read_npz(path)
    how = "Re-create it with the stage that writes it (dvc repro -f)."
    _check_storage(path, arrays["x"].dtype, meta, how)
    try:
        x, y = check_arrays(arrays["x"], arrays["y"], meta["modality"], meta["n_classes"], str(path))
    except GoodfitError as exc:
        raise GoodfitError(f"{exc} {how}") from exc
    _check_sample_shape(path, x.shape, meta, how)
    return x, y


def _check_storage(path, dtype, meta: dict, how: str) -> None:
    expected = meta.get("storage", "float32")  # meta.json of goodfit before compact storage: float32
    if np.dtype(dtype).name != expected:
        raise GoodfitError(f"{path}: features are stored as {np.dtype(dtype).name} but meta.json says {expected}; "
                           f"the files come from different runs. {how}")


def _check_sample_shape(path, shape: tuple[int, ...], meta: dict, how: str) -> None:
    if list(shape[1:]) != list(meta["input_shape"]):
        raise GoodfitError(
            f"{path}: samples have shape {list(shape[1:])} but meta.json says {list(meta['input_shape'])}; "
            f"the files come from different runs. {how}"
        )


def open_split(path, meta: dict, chunk_size: int):
    """Like :func:`load_split`, but the features stay on disk; for sets larger than memory.

    Runs the same checks chunk by chunk and returns ``(x, y, (min, max))``: ``x`` a
    :class:`goodfit.io.NpzArray` whose rows are read on demand (as stored), ``y`` int64
    labels, and the features' value range (decoded, as float32 values).

    Raises:
        GoodfitError: the file is unreadable or does not match ``meta``.
    """
    how = "Re-create it with the stage that writes it (dvc repro -f)."
    x = open_npz_array(path, "x")
    y = read_npz(path, ("y",))["y"]
    _check_storage(path, x.dtype, meta, how)
    _check_sample_shape(path, x.shape, meta, how)
    if y.ndim != 1 or len(y) != len(x):
        raise GoodfitError(f"{path}: labels must have shape (N,) with N = {len(x)} (one per sample), "
                           f"got shape {y.shape}. {how}")
    lo, hi = np.inf, -np.inf
    labels = []
    for start in range(0, max(len(x), 1), chunk_size):
        stop = min(start + chunk_size, len(x))
        try:
            xc, yc = check_arrays(x[start:stop], y[start:stop], meta["modality"], meta["n_classes"],
                                  f"{path} (samples {start} to {stop - 1})")
        except GoodfitError as exc:
            raise GoodfitError(f"{exc} {how}") from exc
        lo, hi = min(lo, float(storage.to_float32(xc.min()))), max(hi, float(storage.to_float32(xc.max())))
        labels.append(yc)
    return x, np.concatenate(labels), (lo, hi)
