"""How features are stored in ``data/split`` and ``data/augmented``, and read back as float32.

Images from 8-bit sources (MedMNIST, PNG / JPEG folders) stay ``uint8``: stored value
``k`` means ``k / 255``, the value the source's own conversion gives. Augmented images
are rounded to the nearest of those 256 levels, which is what a saved augmented image
is. Other features are ``float32``, or ``float16`` when ``data.storage: float16`` asks
for it. Stages decode a chunk or a batch at a time (:func:`to_float32`,
:func:`to_float32_tensor`), so the float32 copy of a whole set never has to exist.
"""

from __future__ import annotations

import numpy as np

from goodfit.errors import GoodfitError

STORAGE_CHOICES = ("auto", "float32", "float16")  # data.storage
DTYPES = ("float32", "float16", "uint8")  # what a split or augmented file may hold
LEVELS = 255  # uint8 value k stands for k / 255
# Inference (validation losses, probabilities) runs at most this many rows at once, and at most
# INFERENCE_VALUES input values: 4,096 rows of 8 x 8 digits or of tables, 2,730 of series of 96
# points, 334 of 28 x 28 images and 16 of 128 x 128. Activations of a few megabytes a layer, reused
# from one batch to the next: a batch of 4,096 rows of 28 x 28 took about 150 MB of fresh memory a
# layer, and the training set's pass each epoch then cost nearly as much as the training epoch
# itself (benchmarks/README, section 10).
INFERENCE_ROWS = 4096
INFERENCE_VALUES = 1 << 18


def is_8bit(x) -> bool:
    """Whether ``x`` (an array or a :class:`goodfit.io.NpzArray`) holds 8-bit image levels."""
    return np.dtype(x.dtype) == np.uint8


def choose(storage: str, x) -> str:
    """The dtype a split file stores for features ``x`` under ``data.storage``.

    ``auto``: uint8 for 8-bit sources, float32 otherwise; ``float16``: uint8 for 8-bit
    sources (smaller still, and exact), float16 otherwise; ``float32``: float32 always
    (four bytes a value, as every goodfit before compact storage wrote).
    """
    if storage not in STORAGE_CHOICES:
        raise GoodfitError(f"params.yaml: data.storage must be one of "
                           f"{', '.join(repr(c) for c in STORAGE_CHOICES)}, got {storage!r}.")
    if storage == "float32":
        return "float32"
    return "uint8" if is_8bit(x) else ("float16" if storage == "float16" else "float32")


def encode(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 features (or a source's uint8 levels) -> the stored ``dtype``.

    To uint8, float values are rounded to the nearest level ``k / 255`` and clamped to
    0..255; a decoded uint8 value encodes back to itself.
    """
    x = np.asarray(x)
    if dtype == "uint8":
        if x.dtype == np.uint8:
            return x
        levels = np.multiply(x, np.float32(LEVELS), dtype=np.float32)
        return np.clip(np.rint(levels, out=levels), 0, LEVELS, out=levels).astype(np.uint8)
    if dtype == "float16":
        return to_float32(x).astype(np.float16)
    if dtype == "float32":
        return to_float32(x)
    raise GoodfitError(f"internal: unknown storage dtype {dtype!r}; one of {', '.join(DTYPES)}.")


def to_float32(x: np.ndarray) -> np.ndarray:
    """Stored features as float32: uint8 ``k`` -> ``k / 255``, float16 widened, float32 as is (no copy)."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        out = x.astype(np.float32)
        out /= np.float32(LEVELS)  # the sources' own `astype(float32) / 255.0`, bit for bit
        return out
    return x.astype(np.float32, copy=False)


def to_float32_tensor(t):
    """:func:`to_float32` for a tensor (any device; the memory format is kept)."""
    import torch  # here, not above: the split stage reads this module and never loads torch

    if t.dtype == torch.uint8:
        return t.to(torch.float32).div_(float(LEVELS))
    return t.float()


def inference_rows(x) -> int:
    """How many rows of ``x`` (an array, tensor or :class:`goodfit.io.NpzArray`) inference takes at once."""
    per_row = int(np.prod(x.shape[1:], dtype=np.int64)) if len(x.shape) > 1 else 1
    return max(1, min(INFERENCE_ROWS, INFERENCE_VALUES // max(1, per_row)))


def dtype_name(x) -> str:
    """The storage dtype name of an array (``float32``, ``float16`` or ``uint8``).

    Raises:
        GoodfitError: any other dtype (not written by goodfit's split or augment stage).
    """
    name = np.dtype(x.dtype).name
    if name not in DTYPES:
        raise GoodfitError(f"features stored as {name}, but goodfit stores {', '.join(DTYPES)} only; "
                           "re-create the file with the stage that writes it (dvc repro -f).")
    return name
