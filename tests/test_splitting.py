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


# ---------------------------------------------------------- official splits and what is carved from them
def table(n, k=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3), dtype=np.float32), np.arange(n) % k


def dataset(x, y, k=2, official=None):
    return validate_dataset(Dataset(x=x, y=y, modality="tabular", class_names=list("abcdefgh"[:k]), source="t",
                                    official=official))


def rows_of(part):
    return {tuple(r) for r in part[0].tolist()}


def test_an_official_test_split_is_kept_and_validation_carved_from_official_train_only():
    x, y = table(200)
    ds = dataset(x, y, official={"train": (x[:120], y[:120]), "test": (x[120:], y[120:])})
    s = make_splits(ds, val_fraction=0.1, test_fraction=0.3, seed=0)
    assert s.strategy == "official train/test; validation carved from train"
    assert np.array_equal(s.arrays["test"][0], x[120:])  # the official test split, untouched
    assert rows_of(s.arrays["train"]) | rows_of(s.arrays["val"]) == rows_of((x[:120],))
    assert len(s.arrays["val"][1]) == 20  # val_fraction of all 200 samples, taken from the 120 of train
    assert np.bincount(s.arrays["val"][1]).tolist() == [10, 10]  # stratified
    other = make_splits(ds, val_fraction=0.1, test_fraction=0.3, seed=1)
    assert rows_of(other.arrays["val"]) != rows_of(s.arrays["val"])  # seeded


def test_an_official_train_split_alone_gets_test_and_validation_carved_from_it():
    x, y = table(200)
    ds = dataset(x, y, official={"train": (x, y)})
    s = make_splits(ds, val_fraction=0.1, test_fraction=0.2, seed=0)
    sizes = {k: len(v[1]) for k, v in s.arrays.items()}
    assert sizes == {"train": 140, "val": 20, "test": 40}
    assert rows_of(s.arrays["train"]) | rows_of(s.arrays["val"]) | rows_of(s.arrays["test"]) == rows_of((x,))
    assert all(np.bincount(v[1]).tolist() == [n // 2, n // 2] for v, n in zip(s.arrays.values(), sizes.values()))
    assert s.strategy == "official train/test; validation carved from train"
    other = make_splits(ds, val_fraction=0.1, test_fraction=0.2, seed=1)
    assert rows_of(other.arrays["test"]) != rows_of(s.arrays["test"])


def test_carved_splits_take_at_most_half_of_the_official_train_split():
    x, y = table(200)
    ds = dataset(x, y, official={"train": (x[:40], y[:40]), "test": (x[40:], y[40:])})
    s = make_splits(ds, val_fraction=0.5, test_fraction=0.2, seed=0)  # 0.5 x 200 = 100 > the 40 of train
    assert len(s.arrays["val"][1]) == 20 and len(s.arrays["train"][1]) == 20


def test_an_official_split_with_validation_is_used_as_it_is():
    x, y = table(120)
    official = {"train": (x[:80], y[:80]), "val": (x[80:100], y[80:100]), "test": (x[100:], y[100:])}
    s = make_splits(dataset(x, y, official=official), val_fraction=0.15, test_fraction=0.15, seed=0)
    assert s.strategy == "official"
    assert all(np.array_equal(s.arrays[k][0], official[k][0]) for k in official)


def test_keep_official_false_splits_the_whole_dataset_afresh():
    x, y = table(200)
    ds = dataset(x, y, official={"train": (x[:120], y[:120]), "test": (x[120:], y[120:])})
    s = make_splits(ds, val_fraction=0.15, test_fraction=0.15, seed=0, keep_official=False)
    assert s.strategy == "stratified" and len(s.arrays["test"][1]) == 30
    assert not np.array_equal(s.arrays["test"][0], x[170:])


def test_the_stratified_split_of_a_seed_is_the_same_in_every_version():
    # The same params must give the same split files (and dvc.lock hashes) in every later version:
    # the test split uses the seed, the validation split the seed + 1.
    x, y = table(20)
    x[:, 0] = np.arange(20)
    s = make_splits(dataset(x, y), val_fraction=0.2, test_fraction=0.2, seed=0)
    assert {k: sorted(v[0][:, 0].astype(int).tolist()) for k, v in s.arrays.items()} == {
        "train": [1, 2, 3, 4, 6, 7, 8, 13, 14, 16, 17, 19], "val": [5, 11, 12, 18], "test": [0, 9, 10, 15]}


def test_a_validation_split_may_lack_a_class_but_the_train_split_may_not():
    x, y = table(60, k=3)
    y_val = np.array([0, 1] * 5)  # no sample of class c
    official = {"train": (x[:40], y[:40]), "val": (x[40:50], y_val), "test": (x[50:], y[50:])}
    s = make_splits(dataset(x, y, k=3, official=official), val_fraction=0.15, test_fraction=0.15, seed=0)
    assert set(s.arrays["val"][1].tolist()) == {0, 1}
    no_c = {"train": (x[:40], y[:40] % 2), "val": (x[40:50], y[40:50]), "test": (x[50:], y[50:])}
    with pytest.raises(GoodfitError, match=re.escape("The train split lacks classes ['c']; the model could never "
                                                     "learn them. Add samples of those classes.")):
        make_splits(dataset(x, y, k=3, official=no_c), val_fraction=0.15, test_fraction=0.15, seed=0)


@pytest.mark.parametrize("val_fraction, test_fraction, what", [
    (0.2, 0.05, "test"),  # 1 of 20 test samples: fewer than the 2 classes
    (0.2, 0.95, "test"),  # 19 of 20: 1 left for the rest
    (0.78, 0.2, "validation"),  # 16 of the 16 left after the test split: none left for train
])
def test_a_split_too_small_to_stratify_names_the_split_it_carves(val_fraction, test_fraction, what):
    x, y = table(20)
    with pytest.raises(GoodfitError, match=f"Cannot carve the {what} split: "):
        make_splits(dataset(x, y), val_fraction=val_fraction, test_fraction=test_fraction, seed=0)


def test_a_class_absent_from_the_data_is_reported_as_missing_from_train():
    x, y = table(60, k=2)
    y = np.where(y == 1, 2, 0)  # three class names, class b never occurs
    with pytest.raises(GoodfitError, match=re.escape("lacks classes ['b']")):
        make_splits(dataset(x, y, k=3), val_fraction=0.2, test_fraction=0.2, seed=0)


def test_meta_counts_every_class_of_every_split_even_an_absent_one():
    x, y = table(60, k=3)
    official = {"train": (x[:40], y[:40]), "val": (x[40:50], np.array([0, 1] * 5)), "test": (x[50:], y[50:])}
    ds = dataset(x, y, k=3, official=official)
    meta = build_meta(ds, make_splits(ds, val_fraction=0.15, test_fraction=0.15, seed=0), seed=0)
    assert meta["counts"]["val"]["per_class"] == [5, 5, 0]
    assert all(type(c) is int for part in meta["counts"].values() for c in part["per_class"])  # counts, not 5.0


def test_meta_from_before_compact_storage_means_float32(split_files):
    folder, x, y = split_files
    meta = load_meta(folder / "meta.json")
    old = {k: v for k, v in meta.items() if k != "storage"}
    write_npz(folder / "val.npz", x=x, y=y)
    assert np.array_equal(load_split(folder / "val.npz", old)[1], y)
    levels = np.round(x * 255).astype(np.uint8)
    write_npz(folder / "val.npz", x=levels, y=y)
    for read in (load_split, lambda p, m: open_split(p, m, chunk_size=50)):
        with pytest.raises(GoodfitError, match=re.escape(f"{folder / 'val.npz'}: features are stored as uint8 but "
                                                         "meta.json says float32; the files come from different "
                                                         "runs. Re-create it with the stage that writes it")):
            read(folder / "val.npz", old)
        assert np.array_equal(read(folder / "val.npz", {**meta, "storage": "uint8"})[1], y)


def test_splits_carved_from_an_official_split_are_the_same_for_the_same_seed():
    x, y = table(200)
    for official in ({"train": (x, y)}, {"train": (x[:120], y[:120]), "test": (x[120:], y[120:])}):
        first, again = (make_splits(dataset(x, y, official=official), val_fraction=0.1, test_fraction=0.2, seed=0)
                        for _ in range(2))
        assert all(np.array_equal(first.arrays[k][0], again.arrays[k][0]) for k in first.arrays)


@pytest.mark.parametrize("official, what", [
    (lambda x, y: {"train": (x[:3], y[:3]), "val": (x[3:], y[3:])}, "test"),
    (lambda x, y: {"train": (x[:3], y[:3]), "test": (x[3:], y[3:])}, "validation"),
])
def test_a_split_too_small_to_carve_from_official_train_names_the_split(official, what):
    x, y = table(40)
    with pytest.raises(GoodfitError, match=f"Cannot carve the {what} split: "):
        make_splits(dataset(x, y, official=official(x, y)), val_fraction=0.1, test_fraction=0.1, seed=0)


def test_a_test_split_carved_from_official_train_takes_at_most_half_of_it():
    x, y = table(200)
    official = {"train": (x[:40], y[:40]), "val": (x[40:], y[40:])}  # 0.2 x 200 = 40: all of train
    s = make_splits(dataset(x, y, official=official), val_fraction=0.1, test_fraction=0.2, seed=0)
    assert len(s.arrays["test"][1]) == 20 and len(s.arrays["train"][1]) == 20


def test_a_carve_may_leave_exactly_one_sample_of_each_class():
    x, y = table(40)
    s = make_splits(dataset(x, y), val_fraction=0.9, test_fraction=0.05, seed=0)
    assert {k: len(v[1]) for k, v in s.arrays.items()} == {"train": 2, "val": 36, "test": 2}
    assert sorted(s.arrays["train"][1].tolist()) == [0, 1]


def test_open_split_leaves_the_features_on_disk(tmp_path):
    import tracemalloc

    d = digits()
    s = make_splits(d, val_fraction=0.15, test_fraction=0.15, seed=0)
    meta = build_meta(d, s, seed=0)
    x = np.tile(s.arrays["train"][0], (8, 1, 1, 1))  # 9.4 MB of features
    write_npz(tmp_path / "train.npz", x=x, y=np.tile(s.arrays["train"][1], 8))
    tracemalloc.start()
    try:
        rows, y, _ = open_split(tmp_path / "train.npz", meta, chunk_size=256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(rows) == len(y) == len(x)
    assert peak < x.nbytes / 4  # the labels and a chunk or so of rows, never the whole feature array
