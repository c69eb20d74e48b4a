"""CSV source: numeric features and a label column; missing values and text columns name the column."""

import numpy as np
import pytest

from goodfit.errors import GoodfitError
from goodfit.params import DataParams
from goodfit.sources import load_dataset


def load(path, target="label"):
    return load_dataset(DataParams(source="csv", path=str(path), target=target))


def write(tmp_path, text):
    path = tmp_path / "table.csv"
    path.write_text(text)
    return path


def test_numeric_features_and_text_labels(tmp_path):
    path = write(tmp_path, "age,label,bmi\n50,sick,22.5\n61,healthy,30.1\n45,sick,27\n70,healthy,24.2\n")
    ds = load(path)
    assert ds.modality == "tabular" and ds.feature_names == ["age", "bmi"]
    assert ds.class_names == ["healthy", "sick"] and ds.y.tolist() == [1, 0, 1, 0]
    np.testing.assert_array_equal(ds.x, np.array([[50, 22.5], [61, 30.1], [45, 27], [70, 24.2]], np.float32))
    assert ds.source == "csv:table.csv"


def test_numeric_labels_sort_numerically(tmp_path):
    ds = load(write(tmp_path, "x,label\n1,10\n2,2\n3,-1\n4,2\n"))
    assert ds.class_names == ["-1", "2", "10"] and ds.y.tolist() == [2, 1, 0, 1]


@pytest.mark.parametrize("text, target, match", [
    ("a,b\n1,2\n3,4\n", "label", r"data\.target 'label' is not a column of .*table\.csv; its columns are 'a', 'b'"),
    ("a,label\n1,x\n,y\n3,x\n", "label", r"column 'a' has 1 missing value\(s\) \(first in data row 2\)"),
    ("a,label\n1,x\n2,\n3,y\n", "label", r"column 'label' has 1 missing value\(s\) \(first in data row 2\)"),
    ("a,sex,label\n1,F,x\n2,M,y\n", "label", r"feature column 'sex' is not numeric \(e\.g\. 'F'\)\. Encode it"),
    ("a,b,label\n1,2.5kg,x\n2,3,y\n", "label", r"feature column 'b' is not numeric \(e\.g\. '2\.5kg'\)"),
    ("label\nx\ny\n", "label", r"has no feature columns besides the label column 'label'"),
    ("a,label\n1,x\n2,x\n", "label", r"found 1 class \(\['x'\]\); a classifier needs at least 2 classes"),
    ("", "label", r"cannot be read as CSV"),
    ("a,b,label\n1,inf,x\n2,3,y\n", "label", r"column 'b' holds infinite values"),
])
def test_bad_tables(tmp_path, text, target, match):
    with pytest.raises(GoodfitError, match=match):
        load(write(tmp_path, text), target)


def test_missing_file_or_folder(tmp_path):
    with pytest.raises(GoodfitError, match=r"data\.path '.*nope\.csv' does not exist"):
        load(tmp_path / "nope.csv")
    with pytest.raises(GoodfitError, match=r"is a folder; for data\.source 'csv' it must be a CSV file"):
        load(tmp_path)
