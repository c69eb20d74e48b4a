import re

import numpy as np
import pytest

from goodfit.errors import GoodfitError
from goodfit.sources import load_dataset
from goodfit.sources.base import Dataset, validate_dataset
from goodfit.params import DataParams
from goodfit.io import write_json, write_npz
from goodfit.splitting import build_meta, load_meta, load_split, make_splits, normalization_stats, open_split


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


def test_a_split_left_with_one_class_or_empty_is_refused():
    rng = np.random.default_rng(0)
    x, y = rng.random((60, 3), dtype=np.float32), np.arange(60) % 2
    one_class_val = Dataset(x=x, y=y, modality="tabular", class_names=["a", "b"], source="t",
                            official={"train": (x[:40], y[:40]), "val": (x[40:50], np.zeros(10, np.int64)),
                                      "test": (x[50:], y[50:])})
    with pytest.raises(GoodfitError, match=r"The val split has 1 class \(10 samples\); every split needs at least "
                                           r"2 classes"):
        make_splits(validate_dataset(one_class_val), val_fraction=0.15, test_fraction=0.15, seed=0)
    empty_test = Dataset(x=x, y=y, modality="tabular", class_names=["a", "b"], source="t",
                         official={"train": (x, y), "test": (x[:0], y[:0])})
    with pytest.raises(GoodfitError, match=r"t \(test split\): there are no samples"):
        validate_dataset(empty_test)


@pytest.fixture
def split_files(tmp_path):
    d = digits()
    s = make_splits(d, val_fraction=0.15, test_fraction=0.15, seed=0)
    write_json(tmp_path / "meta.json", build_meta(d, s, seed=0))
    x, y = s.arrays["val"]
    return tmp_path, x, y


@pytest.mark.parametrize("change, match", [
    (lambda x, y: (x[..., :4], y), r"samples have shape \[1, 8, 4\] but meta\.json says \[1, 8, 8\]; the files "
                                    r"come from different runs\. Re-create it"),
    (lambda x, y: (x, y + 10), r"labels must lie in 0\.\.9 \(10 classes\), got values from 10 to 19\. Re-create it"),
    (lambda x, y: (x, y - 1), r"labels must lie in 0\.\.9 \(10 classes\), got values from -1 to 8"),
    (lambda x, y: (x, y + 0.5), r"labels must be integers, got non-integer values"),
    (lambda x, y: (x, y.astype(str)), r"labels must be integers, got dtype <U"),
    (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 70, np.inf, x), y),
     r"features contain NaN or infinite values \(1 entries, first in sample 1\)"),
    (lambda x, y: (x[:0], y[:0]), r"there are no samples"),
    (lambda x, y: (x, y[:-1]), r"labels must have shape \(N,\) with N = 269"),
    (lambda x, y: (x[:, 0], y), r"image features must have shape \(N, C, H, W\), got shape \(269, 8, 8\)"
                                r"|samples have shape \[8, 8\] but meta\.json says \[1, 8, 8\]"),  # open_split: no read
])
@pytest.mark.parametrize("read", [load_split, lambda path, meta: open_split(path, meta, chunk_size=100)],
                         ids=["load_split", "open_split"])
def test_split_files_are_checked_against_meta(split_files, change, match, read):
    folder, x, y = split_files
    meta = load_meta(folder / "meta.json")
    write_npz(folder / "val.npz", x=x, y=y)
    assert np.array_equal(read(folder / "val.npz", meta)[1], y)
    bad_x, bad_y = change(x, y)
    write_npz(folder / "val.npz", x=bad_x, y=bad_y)
    with pytest.raises(GoodfitError, match=match):
        read(folder / "val.npz", meta)


def test_open_split_reads_rows_on_demand_and_finds_the_value_range(split_files):
    folder, x, y = split_files
    write_npz(folder / "val.npz", x=x, y=y)
    lazy_x, lazy_y, value_range = open_split(folder / "val.npz", load_meta(folder / "meta.json"), chunk_size=50)
    assert not isinstance(lazy_x, np.ndarray) and np.array_equal(lazy_x[:], x) and np.array_equal(lazy_y, y)
    assert value_range == (float(x.min()), float(x.max()))
    x = x.copy()
    x[260, 0, 3, 3] = np.nan  # in the last chunk
    write_npz(folder / "val.npz", x=x, y=y)
    with pytest.raises(GoodfitError, match=r"samples 250 to 268\): features contain NaN or infinite values"):
        open_split(folder / "val.npz", load_meta(folder / "meta.json"), chunk_size=50)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.pop("normalization"), r"lacks the field 'normalization'; it was not written by this version's "
                                       r"split stage\. Re-create it: dvc repro -f split"),
    (lambda m: m.update(modality="video"), r"names the modality 'video', not one of image, timeseries, tabular"),
    (lambda m: m.update(n_classes=3), r"says n_classes 3 but lists 10 class names"),
])
def test_meta_json_is_checked(split_files, edit, match):
    folder, _, _ = split_files
    meta = load_meta(folder / "meta.json")
    edit(meta)
    write_json(folder / "meta.json", meta)
    with pytest.raises(GoodfitError, match=match):
        load_meta(folder / "meta.json")
    write_json(folder / "meta.json", [1, 2])
    with pytest.raises(GoodfitError, match=r"holds a list, not an object"):
        load_meta(folder / "meta.json")


def test_normalization_is_per_channel_or_feature_and_a_constant_one_gets_deviation_one():
    """Mean and standard deviation per channel (images, series: over samples and positions) or per
    feature (tables); a constant channel or feature gets a deviation of 1 so it passes unchanged."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(6, 2, 3, 3)).astype(np.float32)
    images[:, 1] = 4.0
    stats = normalization_stats(images, "image")
    assert stats["mean"] == pytest.approx([images[:, 0].astype(np.float64).mean(), 4.0])
    assert stats["std"] == pytest.approx([images[:, 0].astype(np.float64).std(), 1.0])
    table = rng.normal(size=(8, 3)).astype(np.float32)
    stats = normalization_stats(table, "tabular")
    assert stats["mean"] == pytest.approx(table.astype(np.float64).mean(axis=0).tolist())
    assert stats["std"] == pytest.approx(table.astype(np.float64).std(axis=0).tolist())


@pytest.mark.parametrize("read", [load_split, lambda path, meta: open_split(path, meta, chunk_size=100)],
                         ids=["load_split", "open_split"])
def test_a_bad_split_file_is_named_in_the_error(split_files, read):
    folder, x, y = split_files
    meta = load_meta(folder / "meta.json")
    for bad_x, bad_y in ((x, y + 10), (x[..., :4], y)):
        write_npz(folder / "val.npz", x=bad_x, y=bad_y)
        with pytest.raises(GoodfitError, match=rf"^{re.escape(str(folder / 'val.npz'))}"):
            read(folder / "val.npz", meta)


def test_a_split_of_one_sample_is_read_in_chunks_of_one(split_files):
    folder, x, y = split_files
    write_npz(folder / "val.npz", x=x[:1], y=y[:1])
    lazy_x, lazy_y, value_range = open_split(folder / "val.npz", load_meta(folder / "meta.json"), chunk_size=1)
    assert np.array_equal(lazy_x[:], x[:1]) and np.array_equal(lazy_y, y[:1])
    assert value_range == (float(x[0].min()), float(x[0].max()))


def test_meta_records_the_contract_fields():
    """meta.json's fields: what the later stages read, plus the split's provenance (strategy, seed)."""
    d = digits()
    s = make_splits(d, val_fraction=0.15, test_fraction=0.15, seed=7)
    meta = build_meta(d, s, seed=7)
    x_tr = s.arrays["train"][0]
    assert meta == {
        "modality": "image", "class_names": list(d.class_names), "n_classes": 10,
        "input_shape": list(x_tr.shape[1:]), "feature_names": list(d.feature_names), "source": d.source,
        "split_strategy": s.strategy, "seed": 7,
        "counts": {name: {"total": len(y), "per_class": np.bincount(y, minlength=10).tolist()}
                   for name, (_, y) in s.arrays.items()},
        "normalization": normalization_stats(x_tr, "image"), "storage": "float32"}
    assert s.strategy == "stratified"
    assert build_meta(d, s, seed=7, storage_dtype="uint8")["storage"] == "uint8"
