import numpy as np
import pytest

from goodfit.errors import GoodfitError
from goodfit.sources import load_dataset
from goodfit.sources.base import Dataset, validate_dataset
from goodfit.params import DataParams
from goodfit.splitting import build_meta, make_splits, normalization_stats


def digits():
    return load_dataset(DataParams(source="digits"))


def test_builtin_sources():
    d = digits()
    assert d.x.shape == (1797, 1, 8, 8) and d.x.dtype == np.float32 and d.modality == "image"
    assert 0 <= d.x.min() and d.x.max() <= 1
    b = load_dataset(DataParams(source="breast_cancer"))
    assert b.x.shape == (569, 30) and b.modality == "tabular" and len(b.feature_names) == 30


def test_stratified_seeded_split():
    d = digits()
    s1 = make_splits(d, val_fraction=0.15, test_fraction=0.15, seed=3)
    s2 = make_splits(d, val_fraction=0.15, test_fraction=0.15, seed=3)
    s3 = make_splits(d, val_fraction=0.15, test_fraction=0.15, seed=4)
    assert all(np.array_equal(s1.arrays[k][1], s2.arrays[k][1]) for k in s1.arrays)
    assert not np.array_equal(s1.arrays["test"][1], s3.arrays["test"][1])
    sizes = {k: len(v[1]) for k, v in s1.arrays.items()}
    assert sum(sizes.values()) == 1797 and abs(sizes["test"] - 270) <= 1
    overall = np.bincount(d.y) / len(d.y)
    for _, y in s1.arrays.values():
        assert np.abs(np.bincount(y, minlength=10) / len(y) - overall).max() < 0.02


def test_official_split_is_kept_and_val_carved_when_missing():
    rng = np.random.default_rng(0)
    x, y = rng.random((100, 5), dtype=np.float32), np.arange(100) % 2
    ds = Dataset(x=x, y=y, modality="tabular", class_names=["a", "b"], source="t",
                 official={"train": (x[:60], y[:60]), "test": (x[60:], y[60:])})
    s = make_splits(validate_dataset(ds), val_fraction=0.15, test_fraction=0.15, seed=0)
    assert len(s.arrays["test"][1]) == 40 and len(s.arrays["train"][1]) + len(s.arrays["val"][1]) == 60
    assert "carved" in s.strategy


def test_normalization_from_train_only():
    d = digits()
    s = make_splits(d, val_fraction=0.15, test_fraction=0.15, seed=0)
    meta = build_meta(d, s, seed=0)
    x_tr = s.arrays["train"][0]
    assert meta["normalization"]["mean"] == pytest.approx([float(x_tr.mean())])
    assert meta["counts"]["train"]["total"] == len(x_tr)
    assert normalization_stats(np.ones((4, 3), np.float32), "tabular")["std"] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("mutate, match", [
    (lambda d: setattr(d, "y", np.zeros_like(d.y)) or setattr(d, "class_names", ["only"]), "needs at least 2 classes"),
    (lambda d: d.x.__setitem__((0, 0, 0, 0), np.nan), r"NaN or infinite values \(1 entries, first in sample 0\)"),
    (lambda d: setattr(d, "y", d.y + 5), r"labels must lie in 0\.\.9 \(10 classes\), got values from 5 to 14"),
    (lambda d: setattr(d, "y", d.y.astype(float) + 0.5), "labels must be integers"),
    (lambda d: setattr(d, "x", d.x[:, 0]), r"image features must have shape \(N, C, H, W\), got shape \(1797, 8, 8\)"),
    (lambda d: setattr(d, "y", d.y[:10]), r"labels must have shape \(N,\) with N = 1797"),
])
def test_invalid_datasets(mutate, match):
    d = digits()
    mutate(d)
    with pytest.raises(GoodfitError, match=match):
        validate_dataset(d)


def test_split_too_small_for_stratification():
    x = np.zeros((12, 2), np.float32)
    y = np.array([0] * 11 + [1])
    ds = validate_dataset(Dataset(x=x, y=y, modality="tabular", class_names=["a", "b"], source="t"))
    with pytest.raises(GoodfitError, match="class 1 has a single sample"):
        make_splits(ds, val_fraction=0.2, test_fraction=0.2, seed=0)
    x = np.zeros((10, 2), np.float32)
    ds = validate_dataset(Dataset(x=x, y=np.arange(10) % 5, modality="tabular", class_names=list("abcde"),
                                  source="t"))
    with pytest.raises(GoodfitError, match="needs at least one sample of each of the 5 classes"):
        make_splits(ds, val_fraction=0.1, test_fraction=0.1, seed=0)
