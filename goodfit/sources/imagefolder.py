"""Image folders: one sub-folder per class of PNG / JPEG files (torchvision's ImageFolder layout).

```
data.path/
  benign/    a.png  b.jpg ...
  malignant/ c.png ...
```

Class names are the sub-folder names in sorted order (as in ImageFolder). Files
are read with PIL, converted to grayscale or RGB (``data.color``) and resized to
``data.image_size`` x ``data.image_size``. All images must share one size:
stretching images of different sizes by different factors would change the
pixel spacing between them, and where the size tracks the scanner or the
hospital a model can learn that shortcut instead of the anatomy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from goodfit.errors import GoodfitError
from goodfit.sources.base import Dataset, existing_path
from goodfit.storage import to_float32

EXTENSIONS = (".png", ".jpg", ".jpeg")


def find_images(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted sub-folders) and ``(file, class index)`` pairs, in a fixed order.

    Hidden files and files that are not PNG / JPEG are skipped, as in ImageFolder.

    Raises:
        GoodfitError: no sub-folders, a single class, or a class without images.
    """
    if not root.is_dir():
        raise GoodfitError(
            f"params.yaml: data.path {str(root)!r} is a file; for data.source 'imagefolder' it must be a "
            "folder with one sub-folder of PNG/JPEG images per class."
        )
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise GoodfitError(
            f"{root} has no sub-folders; put the images of each class in their own sub-folder "
            "(e.g. benign/ and malignant/)."
        )
    if len(classes) == 1:
        raise GoodfitError(
            f"{root} has a single class folder ({classes[0]!r}); a classifier needs at least 2 classes, "
            "one sub-folder each."
        )
    samples: list[tuple[Path, int]] = []
    empty = []
    for k, name in enumerate(classes):
        files = list_images(root / name)
        if not files:
            empty.append(name)
        samples += [(p, k) for p in files]
    if empty:
        raise GoodfitError(
            f"{root}: class folder(s) {empty} hold no PNG/JPEG images ({', '.join(EXTENSIONS)}); "
            "add images or remove the folder(s)."
        )
    return classes, samples


def read_image(path: Path, color: str):
    """One PNG / JPEG file as a PIL image in mode ``L`` (``color`` grayscale) or ``RGB``, as the split stage
    reads it; 16-bit grayscale is scaled to 8 bits.

    Raises:
        GoodfitError: the file cannot be read as an image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise GoodfitError(
            f"{path} cannot be read as an image ({exc}); replace or delete the file."
        ) from exc
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale (common in medical PNGs)
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(a.max()), 1.0)
        img = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return img.convert("L" if color == "grayscale" else "RGB")


def to_levels(img, size: int) -> np.ndarray:
    """A PIL image (mode ``L`` or ``RGB``) resized to ``size`` x ``size`` as uint8 levels ``(C, size, size)``
    (level k is k / 255, :mod:`goodfit.storage`)."""
    from PIL import Image

    # BILINEAR in PIL filters over the whole source footprint when shrinking (antialiased).
    a = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    return a[None] if a.ndim == 2 else np.transpose(a, (2, 0, 1))


def to_array(img, size: int) -> np.ndarray:
    """:func:`to_levels` as float32 ``(C, size, size)`` in [0, 1]."""
    return to_float32(to_levels(img, size))


def list_images(root: Path) -> list[Path]:
    """The PNG / JPEG files under ``root`` (any depth, hidden ones skipped), sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def load_imagefolder(data_params) -> Dataset:
    """Images under ``data.path``, one sub-folder per class, as ``(N, C, S, S)`` uint8 levels (k is k / 255).

    ``C`` is 1 (``data.color: grayscale``) or 3 (``rgb``); ``S`` is ``data.image_size``.

    Raises:
        GoodfitError: missing folder, no or one class, an empty class, an unreadable
            file, or images of different sizes.
    """
    from PIL import Image

    root = existing_path(data_params.path, "a folder with one sub-folder of PNG/JPEG images per class",
                         "Fix data.path in params.yaml.")
    classes, samples = find_images(root)
    size, channels = data_params.image_size, (1 if data_params.color == "grayscale" else 3)
    x = np.empty((len(samples), channels, size, size), dtype=np.uint8)
    first: tuple[Path, tuple[int, int]] | None = None
    for i, (path, _) in enumerate(samples):
        img = read_image(path, data_params.color)
        if first is None:
            first = (path, img.size)
        elif img.size != first[1]:
            (w0, h0), (w1, h1) = first[1], img.size
            raise GoodfitError(
                f"{root}: images have different sizes: {first[0]} is {w0}x{h0} but {path} is {w1}x{h1}. "
                "Resizing them by different factors would change their pixel spacing (a shortcut a model "
                "can learn); crop or resize all images to one size first."
            )
        x[i] = to_levels(img, size)
    return Dataset(
        x=x,
        y=np.array([k for _, k in samples], dtype=np.int64),
        modality="image",
        class_names=classes,
        source=f"imagefolder:{root.resolve().name}",
    )
