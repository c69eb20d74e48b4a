import math

import pytest

from goodfit import history
from goodfit.errors import GoodfitError


def rows(n=3, **extra):
    return [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "val_accuracy": 0.5, "lr": 1e-3,
             "weight_l1": 2.0, "weight_l2": 1.0, "sparsity": 0.0, "train_eval_loss": 0.9 / e,
             "train_eval_accuracy": 0.6, **extra} for e in range(1, n + 1)]


def test_csv_round_trip_in_the_documented_column_order(tmp_path):
    h = [{**r, "val_auc": 0.9} for r in rows()]
    text = history.to_csv(h)
    assert text.splitlines()[0] == ",".join(history.COLUMNS) + ",val_auc"
    path = tmp_path / "history.csv"
    path.write_text(text)
    assert history.read(path) == h


def test_a_history_from_before_train_eval_reads_back_and_falls_back_to_train_loss(tmp_path):
    old = [{k: v for k, v in r.items() if not k.startswith("train_eval")} for r in rows()]
    path = tmp_path / "history.csv"
    path.write_text(history.to_csv(old))
    assert "train_eval_loss" not in path.read_text()
    back = history.read(path)
    assert back == old
    assert history.train_measure(back) == "train_loss"
    assert history.train_measure(rows()) == "train_eval_loss"
    assert history.train_measure([]) == "train_loss"


def test_folds_round_trip():
    members = [rows(2), rows(3)]
    joined = history.with_folds(members)
    assert [r["fold"] for r in joined] == [1, 1, 2, 2, 2]
    assert history.split_folds(joined) == members
    assert history.split_folds(rows()) is None
    assert history.to_csv(joined).splitlines()[0].endswith(",fold")


@pytest.mark.parametrize("content, match", [
    ("epoch,val_loss\n1,0.5\n", r"lacks columns \['train_loss'\]"),
    ("", r"is not a readable CSV file"),
])
def test_malformed_files_are_refused(tmp_path, content, match):
    path = tmp_path / "history.csv"
    path.write_text(content)
    with pytest.raises(GoodfitError, match=match):
        history.read(path)
    with pytest.raises(GoodfitError, match="does not exist. Run the train stage first"):
        history.read(tmp_path / "missing.csv")


def test_non_finite_values_survive_the_csv(tmp_path):
    h = rows(2)
    h[1]["train_loss"] = math.nan
    path = tmp_path / "history.csv"
    path.write_text(history.to_csv(h))
    assert math.isnan(history.read(path)[1]["train_loss"])
