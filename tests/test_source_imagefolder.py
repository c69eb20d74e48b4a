"""Image-folder source: PNG/JPEG files in one sub-folder per class, built with PIL in tmp_path."""

import numpy as np
import pytest
from PIL import Image

from goodfit.errors import GoodfitError
from goodfit.params import DataParams
from goodfit.sources import load_dataset
from goodfit.storage import to_float32


def write_folder(root, classes=("benign", "malignant"), n=3, size=(40, 40), mode="L", ext="png"):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0]) if mode in ("L", "I;16") else (size[1], size[0], 3)
            if mode == "I;16":
                img = Image.fromarray(rng.integers(0, 65536, shape, dtype=np.uint16))
            else:
                img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)
            img.save(root / c / f"{i}.{ext}")
    return root


def load(root, **kw):
    return load_dataset(DataParams(source="imagefolder", path=str(root), **kw))


def test_classes_from_sorted_folders_resized_grayscale(tmp_path):
    write_folder(tmp_path, classes=("normal", "abnormal"), n=3)
    (tmp_path / "normal" / "notes.txt").write_text("ignored, as in torchvision's ImageFolder")
    ds = load(tmp_path, image_size=16)
    assert ds.class_names == ["abnormal", "normal"] and ds.modality == "image"
    assert ds.x.shape == (6, 1, 16, 16) and ds.x.dtype == np.uint8  # 8-bit levels kept (goodfit.storage)
    assert ds.y.tolist() == [0, 0, 0, 1, 1, 1]


def test_same_pixels_as_pil_resize(tmp_path):
    write_folder(tmp_path, n=1, size=(30, 20), mode="RGB", ext="jpg")
    ds = load(tmp_path, image_size=12, color="rgb")
    assert ds.x.shape == (2, 3, 12, 12)
    with Image.open(tmp_path / "benign" / "0.jpg") as img:
        expected = np.asarray(img.convert("RGB").resize((12, 12), Image.Resampling.BILINEAR)) / np.float32(255)
    np.testing.assert_array_equal(to_float32(ds.x[0]), np.transpose(expected, (2, 0, 1)))


def test_rgb_to_grayscale_and_16_bit(tmp_path):
    write_folder(tmp_path / "a", mode="RGB")
    assert load(tmp_path / "a", color="grayscale").x.shape == (6, 1, 28, 28)
    write_folder(tmp_path / "b", mode="I;16", n=2)
    ds = load(tmp_path / "b", image_size=40)
    with Image.open(tmp_path / "b" / "benign" / "0.png") as img:
        raw = np.asarray(img, dtype=np.float64)
    np.testing.assert_allclose(to_float32(ds.x[0, 0]), np.round(raw / 65535 * 255) / 255, atol=1 / 255 + 1e-6)


def test_mixed_sizes(tmp_path):
    write_folder(tmp_path, n=2)
    Image.new("L", (50, 40)).save(tmp_path / "malignant" / "big.png")
    with pytest.raises(GoodfitError, match=r"images have different sizes: .*0\.png is 40x40 but .*big\.png is "
                                           r"50x40\. .*resize all images to one size first"):
        load(tmp_path)


def test_unreadable_file(tmp_path):
    write_folder(tmp_path, n=2)
    (tmp_path / "benign" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(GoodfitError, match=r"broken\.png cannot be read as an image .*replace or delete the file"):
        load(tmp_path)


def test_empty_class(tmp_path):
    write_folder(tmp_path, n=2)
    (tmp_path / "unknown").mkdir()
    (tmp_path / "unknown" / "readme.txt").write_text("no images")
    with pytest.raises(GoodfitError, match=r"class folder\(s\) \['unknown'\] hold no PNG/JPEG images"):
        load(tmp_path)


def test_single_class(tmp_path):
    write_folder(tmp_path, classes=("benign",))
    with pytest.raises(GoodfitError, match=r"single class folder \('benign'\); a classifier needs at least 2"):
        load(tmp_path)


def test_no_class_folders_or_not_a_folder(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "loose.png")
    with pytest.raises(GoodfitError, match="has no sub-folders; put the images of each class"):
        load(tmp_path)
    with pytest.raises(GoodfitError, match=r"is a file; for data\.source 'imagefolder' it must be a folder"):
        load(tmp_path / "loose.png")
    with pytest.raises(GoodfitError, match=r"data\.path '.*missing' does not exist"):
        load(tmp_path / "missing")
