"""MedMNIST .npz source: the official format and split, bad files, and the download path (network stubbed)."""

import numpy as np
import pytest

from goodfit.errors import GoodfitError
from goodfit.params import DataParams
from goodfit.sources import load_dataset
from goodfit.sources import medmnist as mm
from goodfit.splitting import make_splits
from goodfit.storage import to_float32


def write_medmnist(path, sizes=(12, 4, 6), rgb=False, size=28, **replace):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes):
        shape = (n, size, size, 3) if rgb else (n, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]  # (N, 1)
    arrays.update(replace)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def load(path, name=None, **kw):
    return load_dataset(DataParams(source="medmnist", path=str(path), name=name, **kw))


def test_official_format_and_split_are_kept(tmp_path):
    path = write_medmnist(tmp_path / "x.npz")
    ds = load(path)
    assert ds.modality == "image" and ds.class_names == ["0", "1"] and ds.source == "medmnist:x"
    assert ds.x.shape == (22, 1, 28, 28) and ds.x.dtype == np.uint8  # 8-bit levels kept (goodfit.storage)
    raw = np.load(path)
    np.testing.assert_array_equal(ds.official["val"][0][:, 0], raw["val_images"])
    np.testing.assert_array_equal(to_float32(ds.official["val"][0])[:, 0], raw["val_images"] / np.float32(255))
    np.testing.assert_array_equal(ds.official["test"][1], raw["test_labels"][:, 0])
    splits = make_splits(ds, val_fraction=0.15, test_fraction=0.15, seed=0)
    assert splits.strategy == "official"
    assert {k: len(v[1]) for k, v in splits.arrays.items()} == {"train": 12, "val": 4, "test": 6}


def test_rgb_images_become_channels_first(tmp_path):
    ds = load(write_medmnist(tmp_path / "x.npz", rgb=True))
    assert ds.x.shape == (22, 3, 28, 28)


def test_class_names_from_the_medmnist_description(tmp_path):
    ds = load(write_medmnist(tmp_path / "x.npz"), name="breastmnist")
    assert ds.class_names == ["malignant", "normal, benign"] and ds.source == "medmnist:breastmnist"


@pytest.mark.parametrize("replace, match", [
    ({"val_labels": None}, r"is not in MedMNIST format: it lacks \['val_labels'\]"),
    ({"train_labels": np.zeros((12, 14), np.uint8)}, r"14 labels per image \(a multi-label task"),
    ({"train_images": np.zeros((12, 28, 28, 28, 1), np.uint8)}, r"3-D MedMNIST volumes are not supported"),
    ({"train_images": np.zeros((12, 28, 28), np.float32)}, r"images must be uint8 \(0\.\.255\)"),
    ({"test_labels": np.full((6, 1), 7, np.uint8)}, r"\(test split\): labels must lie in 0\.\.1 \(2 classes\), got values from 7 to 7"),
    ({"train_labels": np.zeros((11, 1), np.uint8)}, r"\(train split\): labels must have shape \(N,\) with N = 12"),
])
def test_bad_files(tmp_path, replace, match):
    path = write_medmnist(tmp_path / "x.npz", **replace)
    with pytest.raises(GoodfitError, match=match):
        load(path, name="breastmnist")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(GoodfitError, match=r"data\.path '.*nope\.npz' does not exist .*MedMNIST \.npz file"):
        load(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(GoodfitError, match=r"bad\.npz is not a readable \.npz file"):
        load(tmp_path / "bad.npz")


@pytest.fixture
def offline_download(monkeypatch, tmp_path):
    """Stub only the network transfer that medmnist uses; record what was asked for."""
    import torchvision.datasets.utils as tv_utils

    calls = []

    def fake_download_url(url, root, filename=None, md5=None, **kw):
        calls.append((url, filename))
        write_medmnist(f"{root}/{filename}")  # a tiny stand-in for the file the server would send

    monkeypatch.setattr(tv_utils, "download_url", fake_download_url)
    monkeypatch.chdir(tmp_path)
    return calls


def test_download_through_medmnist_into_data_raw(offline_download, tmp_path):
    ds = load_dataset(DataParams(source="medmnist", name="breastmnist"))
    assert (tmp_path / "data/download/breastmnist.npz").is_file()
    assert offline_download == [("https://zenodo.org/records/10519652/files/breastmnist.npz?download=1",
                                 "breastmnist.npz")]
    assert ds.class_names == ["malignant", "normal, benign"] and len(ds.official["train"][1]) == 12


def test_download_picks_the_medmnist_plus_size(offline_download):
    mm.download("breastmnist", size=64)
    assert offline_download[-1][1] == "breastmnist_64.npz"


def test_download_errors(offline_download, monkeypatch):
    with pytest.raises(GoodfitError, match=r"data\.name 'mnist' is not a MedMNIST dataset; choose one of .*breastmnist"):
        mm.download("mnist")
    with pytest.raises(GoodfitError, match=r"data\.image_size must be one of \(28, 64, 128, 224\)"):
        mm.download("breastmnist", size=32)
    import torchvision.datasets.utils as tv_utils

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    with pytest.raises(GoodfitError, match=r"Could not download MedMNIST 'breastmnist' .*set data\.path to the file"):
        mm.download("breastmnist")


def test_real_breastmnist(shared_data):
    ds = load(shared_data / "breastmnist.npz", name="breastmnist")
    assert {k: len(v[1]) for k, v in ds.official.items()} == {"train": 546, "val": 78, "test": 156}
    assert ds.x.shape == (780, 1, 28, 28)
    assert np.bincount(ds.official["test"][1]).tolist() == [42, 114]
