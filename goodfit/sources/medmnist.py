"""MedMNIST (v2 / MedMNIST+) in its official ``.npz`` format, with its official split.

The file holds ``train_images``, ``train_labels``, ``val_*`` and ``test_*``:
images ``(N, H, W)`` (grayscale) or ``(N, H, W, 3)`` (RGB) uint8, labels ``(N, 1)``.
Without ``data.path`` the file named by ``data.name`` is downloaded once through
the ``medmnist`` package into ``data/download/`` (checked against its MD5; not a
DVC dependency: the name and the checksum fix its bytes, and ``data/raw/`` is for
the datasets users bring, ``python -m goodfit.rawdata``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from goodfit.errors import GoodfitError
from goodfit.sources.base import Dataset, existing_path
from goodfit.storage import to_float32

RAW_DIR = Path("data/download")
SPLITS = ("train", "val", "test")
# MedMNIST+ publishes every 2-D dataset at these sizes; 28 is the original MedMNIST.
SIZES = (28, 64, 128, 224)


def _info(name: str | None) -> dict | None:
    """The ``medmnist`` package's description of dataset ``name`` (label names, URL, MD5), if it knows it.

    Its ``info`` module is loaded on its own: ``import medmnist`` would import torch
    and scikit-learn's metrics (seconds) just to read this one dict.
    """
    import importlib.util

    spec = importlib.util.find_spec("medmnist") if name else None
    if spec is None or spec.origin is None:
        return None
    info_spec = importlib.util.spec_from_file_location("_medmnist_info", Path(spec.origin).parent / "info.py")
    module = importlib.util.module_from_spec(info_spec)
    info_spec.loader.exec_module(module)
    return module.INFO.get(name.lower())


def download(name: str, *, size: int = 28, root: Path = RAW_DIR) -> Path:
    """Download MedMNIST dataset ``name`` at ``size`` px into ``root`` (once) and return the file.

    The transfer and its MD5 check are the ``medmnist`` package's own.

    Raises:
        GoodfitError: unknown name or size, ``medmnist`` not installed, or the download failed.
    """
    try:
        import medmnist
    except ImportError as exc:
        raise GoodfitError(
            "Downloading MedMNIST needs the 'medmnist' package (pip install -r requirements.txt), "
            "or set data.path to a MedMNIST .npz file you already have."
        ) from exc
    info = _info(name)
    if info is None:
        raise GoodfitError(
            f"params.yaml: data.name {name!r} is not a MedMNIST dataset; choose one of "
            f"{', '.join(k for k in medmnist.INFO if not k.endswith('3d'))}, or set data.path to a .npz file."
        )
    if name.lower().endswith("3d") or size not in SIZES:
        raise GoodfitError(
            f"params.yaml: data.image_size must be one of {SIZES} to download 2-D MedMNIST "
            f"{name!r}, got {size}{' (3-D volumes are not supported)' if name.lower().endswith('3d') else ''}."
        )
    root.mkdir(parents=True, exist_ok=True)
    cls = getattr(medmnist, info["python_class"])
    try:
        cls(split="train", download=True, root=str(root), size=size)
    except RuntimeError as exc:
        raise GoodfitError(
            f"Could not download MedMNIST {name!r} into {root}/ ({str(exc).strip().splitlines()[0]}). "
            f"Check the network, or download {info['url' if size == 28 else f'url_{size}']} yourself "
            "and set data.path to the file."
        ) from exc
    return root / (f"{name.lower()}.npz" if size == 28 else f"{name.lower()}_{size}.npz")


def read_npz(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The official splits of a MedMNIST ``.npz``: ``{"train": (images, labels), ...}`` as stored.

    Raises:
        GoodfitError: not a readable .npz, or a key is missing.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in npz.files]
            if missing:
                raise GoodfitError(
                    f"{path} is not in MedMNIST format: it lacks {missing} (it has {sorted(npz.files)}). "
                    "A MedMNIST file holds train_images, train_labels, val_images, val_labels, "
                    "test_images and test_labels."
                )
            return {s: (npz[f"{s}_images"], npz[f"{s}_labels"]) for s in SPLITS}
    except GoodfitError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise GoodfitError(f"{path} is not a readable .npz file ({exc}); download it again.") from exc


def read_images(path: Path) -> dict[str, np.ndarray]:
    """The image arrays of a MedMNIST-style ``.npz`` (``<split>_images``, any of train / val / test, labels
    not needed), converted as for training: float32 ``(N, C, H, W)`` in [0, 1], by split.

    Raises:
        GoodfitError: not a readable .npz, no ``*_images`` array, or images of another shape or dtype.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = [k for k in npz.files if k.endswith("_images")]
            if not keys:
                raise GoodfitError(f"{path} holds no MedMNIST images (no array named <split>_images, e.g. "
                                   f"test_images; it has {sorted(npz.files)}).")
            raw = {k[: -len("_images")]: npz[k] for k in keys}
    except GoodfitError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise GoodfitError(f"{path} is not a readable .npz file ({exc}).") from exc
    order = [s for s in SPLITS if s in raw] + sorted(set(raw) - set(SPLITS))
    return {s: to_float32(_images(raw[s], f"{path} ({s}_images)")) for s in order}


def _images(images: np.ndarray, what: str) -> np.ndarray:
    """``(N, H, W)`` or ``(N, H, W, 3)`` uint8 -> uint8 ``(N, C, H, W)``: level k is k / 255
    (:mod:`goodfit.storage`)."""
    if images.ndim == 4 and images.shape[-1] in (1, 3):
        x = np.transpose(images, (0, 3, 1, 2))
    elif images.ndim == 3:
        x = images[:, None]
    else:
        raise GoodfitError(
            f"{what}: images must have shape (N, H, W) or (N, H, W, 3), got {images.shape}; "
            "3-D MedMNIST volumes are not supported."
        )
    if images.dtype != np.uint8:
        raise GoodfitError(f"{what}: images must be uint8 (0..255) as in MedMNIST, got {images.dtype}.")
    return np.ascontiguousarray(x)


def _labels(labels: np.ndarray, what: str) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise GoodfitError(
            f"{what}: labels have shape {labels.shape}: {labels.shape[1]} labels per image (a multi-label task "
            "such as ChestMNIST). goodfit trains single-label classifiers; pick one label column first."
        )
    return labels.reshape(len(labels), -1)[:, 0] if labels.ndim == 2 else labels


def load_medmnist(data_params) -> Dataset:
    """MedMNIST from ``data.path`` (a .npz file) or downloaded by ``data.name``; the official split is kept.

    Class names come from the ``medmnist`` package's description of ``data.name``
    (e.g. BreastMNIST: ``malignant``, ``normal, benign``), else ``"0"``, ``"1"``, ...

    Raises:
        GoodfitError: missing file, wrong format, multi-label or 3-D data.
    """
    name = data_params.name
    if data_params.path:
        path = existing_path(data_params.path, "a MedMNIST .npz file (e.g. breastmnist.npz)",
                             "Fix data.path, or set it to null to download data.name.")
    else:
        path = download(name, size=data_params.image_size)
    what = f"MedMNIST file {path}"
    splits = {}
    for s, (images, labels) in read_npz(path).items():
        splits[s] = (_images(images, f"{what} ({s})"), _labels(labels, f"{what} ({s})"))
    info = _info(name)
    if info is not None:
        class_names = [info["label"][str(i)] for i in range(len(info["label"]))]
    else:
        class_names = [str(i) for i in range(int(max(y.max() for _, y in splits.values())) + 1)]
    return Dataset(
        x=np.concatenate([splits[s][0] for s in SPLITS]),
        y=np.concatenate([splits[s][1] for s in SPLITS]),
        modality="image",
        class_names=class_names,
        source=f"medmnist:{(name or path.stem).lower()}",
        official=splits,
    )
