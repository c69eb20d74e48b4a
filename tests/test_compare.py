import math

import pytest

from goodfit.compare import swept_params, sweep_table
from goodfit.errors import GoodfitError
from goodfit import plots


def execution(name, wd, acc, l2, verdict="good_fit"):
    hist = {"val_loss": [(1, 1.0), (2, 0.5), (3, 0.6)], "train_loss": [(1, 1.2), (2, 0.7), (3, 0.5)],
            "val_accuracy": [(1, 0.5), (2, 0.8), (3, 0.79)], "weight_l2": [(1, 9.0), (2, l2), (3, 11.0)],
            "sparsity": [(1, 0.0), (2, 0.01), (3, 0.02)]}
    return {"name": name, "run_id": name, "params": {"weight_decay": str(wd), "seed": "42", "mlflow.experiment": "g"},
            "metrics": {"test_accuracy": acc, "test_log_loss": 0.3, "best_val_loss": 0.5, "best_epoch": 2.0,
                        "stopped_epoch": 3.0}, "tags": {"goodfit.fit_diagnosis": verdict}, "history": hist}


def test_detects_swept_param_and_builds_sorted_table():
    runs = [execution("b", 1e-2, 0.9, 8.0), execution("a", 0.0, 0.8, 10.0), execution("c", 1e-4, 0.85, 9.5)]
    assert swept_params(runs) == ["weight_decay"]
    table = sweep_table(runs, "weight_decay")
    assert table["value"].tolist() == [0.0, 1e-4, 1e-2]
    assert table["test_accuracy"].tolist() == [0.8, 0.85, 0.9]
    assert table["weight_l2"].tolist() == [10.0, 9.5, 8.0]  # read at the best epoch (2)
    assert table["val_accuracy"].tolist() == [0.8, 0.8, 0.8]


def test_non_numeric_param_is_refused():
    runs = [execution("a", "x", 0.8, 1.0), execution("b", 0.1, 0.8, 1.0)]
    with pytest.raises(GoodfitError, match="has weight_decay = 'x', not a number"):
        sweep_table(runs, "weight_decay")


@pytest.mark.parametrize("language", ["ja", "en"])
def test_sweep_figure(tmp_path, language):
    runs = [execution("a", 0.0, 0.8, 10.0, "overfitting"), execution("b", 1e-4, 0.85, 9.0),
            execution("c", 1e-2, 0.9, 8.0)]
    table = sweep_table(runs, "weight_decay")
    plots.sweep_figure(table, runs, tmp_path / "s.png", param="weight_decay", language=language)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert not math.isnan(table["sparsity"][0])


def test_other_sweeps_from_the_same_commit_are_left_out():
    from goodfit.compare import same_except

    base, a, b = execution("base", 1e-4, 0.8, 1.0), execution("a", 1e-2, 0.8, 1.0), execution("l1", 1e-4, 0.8, 1.0)
    b["params"]["l1_lambda"] = "0.001"
    base["params"]["l1_lambda"] = a["params"]["l1_lambda"] = "0.0"
    assert [e["name"] for e in same_except([base, a, b], "weight_decay")] == ["base", "a"]
    assert [e["name"] for e in same_except([base, a, b], "l1_lambda")] == ["base", "l1"]
