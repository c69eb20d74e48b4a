import math

import pandas as pd
import pytest

from goodfit.compare import CI_COLUMNS, TABLE_COLUMNS, _execution, best_run, format_table, swept_params, sweep_table
from goodfit.errors import GoodfitError
from goodfit import plots


def execution(name, wd, acc, l2, verdict="good_fit", ci=None, val_loss=0.5):
    """A hand-made execution; ``ci`` = (low, high) of test accuracy (None: a run from before the intervals)."""
    hist = {"val_loss": [(1, 1.0), (2, 0.5), (3, 0.6)], "train_loss": [(1, 1.2), (2, 0.7), (3, 0.5)],
            "val_accuracy": [(1, 0.5), (2, 0.8), (3, 0.79)], "weight_l2": [(1, 9.0), (2, l2), (3, 11.0)],
            "sparsity": [(1, 0.0), (2, 0.01), (3, 0.02)]}
    metrics = {"test_accuracy": acc, "test_log_loss": 0.3, "best_val_loss": val_loss, "best_epoch": 2.0,
               "stopped_epoch": 3.0}
    if ci is not None:
        metrics.update({"test_accuracy_low": ci[0], "test_accuracy_high": ci[1], "test_log_loss_low": 0.25,
                        "test_log_loss_high": 0.35, "test_roc_auc_low": 0.9, "test_roc_auc_high": 0.99})
    return {"name": name, "run_id": name, "params": {"weight_decay": str(wd), "seed": "42", "mlflow.experiment": "g"},
            "metrics": metrics, "tags": {"goodfit.fit_diagnosis": verdict}, "history": hist}


def marks(table):
    """ci_overlaps_best per run name: True, False or None (missing)."""
    return {n: (None if pd.isna(v) else bool(v)) for n, v in zip(table["name"], table["ci_overlaps_best"])}


def test_detects_swept_param_and_builds_sorted_table():
    runs = [execution("b", 1e-2, 0.9, 8.0), execution("a", 0.0, 0.8, 10.0), execution("c", 1e-4, 0.85, 9.5)]
    assert swept_params(runs) == ["weight_decay"]
    table = sweep_table(runs, "weight_decay")
    assert table["value"].tolist() == [0.0, 1e-4, 1e-2]
    assert table["test_accuracy"].tolist() == [0.8, 0.85, 0.9]
    assert table["weight_l2"].tolist() == [10.0, 9.5, 8.0]  # read at the best epoch (2)
    assert table["val_accuracy"].tolist() == [0.8, 0.8, 0.8]


def test_sweep_figure_draws_the_like_for_like_training_curve_when_every_run_has_it():
    old, new = execution("a", 0.0, 0.8, 10.0), execution("b", 1e-2, 0.9, 8.0)
    new["history"]["train_eval_loss"] = [(1, 0.9), (2, 0.4), (3, 0.3)]
    assert plots.sweep_train_curve([new, dict(new, name="c")]) == "train_eval_loss"
    assert plots.sweep_train_curve([old, new]) == "train_loss"  # one run from before: the same quantity for all


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


def test_interval_columns_follow_the_existing_ones():
    table = sweep_table([execution("a", 0.0, 0.8, 1.0, ci=(0.75, 0.85)), execution("b", 0.1, 0.9, 1.0)], "weight_decay")
    assert list(table.columns) == list(TABLE_COLUMNS) + list(CI_COLUMNS)
    assert list(table.columns[:6]) == ["name", "value", "best_val_loss", "val_accuracy", "test_log_loss",
                                       "test_accuracy"]
    assert table["test_accuracy_low"][0] == 0.75 and table["test_accuracy_high"][0] == 0.85
    assert table["test_log_loss_low"][0] == 0.25 and table["test_roc_auc_high"][0] == 0.99
    assert table[[c for c in CI_COLUMNS]].iloc[1].isna().all()  # b has no intervals
    csv = table.to_csv(index=False, lineterminator="\n", float_format="%.6g").splitlines()
    assert csv[0].endswith(",fit_diagnosis,test_accuracy_low,test_accuracy_high,test_roc_auc_low,test_roc_auc_high,"
                           "test_log_loss_low,test_log_loss_high,ci_overlaps_best")
    assert csv[2].endswith("good_fit,,,,,,,")  # missing: empty cells


def test_overlap_non_overlap_and_missing_intervals():
    runs = [execution("best", 1e-4, 0.95, 1.0, ci=(0.92, 0.98)),
            execution("near", 0.0, 0.91, 1.0, ci=(0.87, 0.94)),     # overlaps the best's [0.92, 0.98]
            execution("touch", 1e-3, 0.89, 1.0, ci=(0.86, 0.92)),    # shares only the end point 0.92
            execution("far", 1e-2, 0.80, 1.0, ci=(0.75, 0.85)),      # entirely below
            execution("old", 1e-1, 0.93, 1.0)]                        # evaluated before the intervals
    table = sweep_table(runs, "weight_decay")
    assert table["name"][best_run(table)] == "best"
    assert marks(table) == {"best": True, "near": True, "touch": True, "far": False, "old": None}
    assert str(table["ci_overlaps_best"].dtype) == "boolean"


def test_interval_above_the_best_counts_as_overlapping_only_when_it_reaches_it():
    # A lower point estimate can come with a wider interval reaching above the best's.
    runs = [execution("best", 0.0, 0.90, 1.0, ci=(0.88, 0.91)), execution("wide", 0.1, 0.89, 1.0, ci=(0.70, 0.99)),
            execution("narrow", 0.2, 0.86, 1.0, ci=(0.85, 0.879))]
    assert marks(sweep_table(runs, "weight_decay")) == {"best": True, "wide": True, "narrow": False}


def test_tie_on_test_accuracy_goes_to_the_lower_validation_loss():
    def runs(loss_a, loss_b):
        return [execution("a", 0.0, 0.9, 1.0, ci=(0.85, 0.93), val_loss=loss_a),
                execution("b", 0.1, 0.9, 1.0, ci=(0.88, 0.95), val_loss=loss_b),
                execution("c", 0.2, 0.8, 1.0, ci=(0.70, 0.87), val_loss=0.1)]
    low_a, low_b = sweep_table(runs(0.3, 0.4), "weight_decay"), sweep_table(runs(0.4, 0.3), "weight_decay")
    assert low_a["name"][best_run(low_a)] == "a" and low_b["name"][best_run(low_b)] == "b"
    # c overlaps a's interval [0.85, 0.93] but not b's [0.88, 0.95]
    assert marks(low_a) == {"a": True, "b": True, "c": True}
    assert marks(low_b) == {"a": True, "b": True, "c": False}
    same = sweep_table(runs(0.3, 0.3), "weight_decay")  # a full tie: the first row (the lower param value)
    assert same["name"][best_run(same)] == "a"


def test_best_run_without_an_interval_marks_nothing():
    runs = [execution("best", 0.0, 0.95, 1.0), execution("b", 0.1, 0.9, 1.0, ci=(0.85, 0.93))]
    table = sweep_table(runs, "weight_decay")
    assert marks(table) == {"best": None, "b": None}
    assert "the best run (best) has no 95% interval" in format_table(table)


def test_old_runs_print_the_plain_table():
    table = sweep_table([execution("a", 0.0, 0.8, 1.0), execution("b", 0.1, 0.9, 1.0)], "weight_decay")
    assert table["ci_overlaps_best"].isna().all()
    printed = format_table(table)
    assert printed == table[list(TABLE_COLUMNS)].to_string(index=False, float_format=lambda v: f"{v:.4g}")
    assert "≈" not in printed


def test_printed_table_marks_the_runs_overlapping_the_best():
    runs = [execution("a", 0.0, 0.91, 1.0, ci=(0.87, 0.94)), execution("b", 1e-4, 0.95, 1.0, ci=(0.92, 0.98)),
            execution("c", 1e-2, 0.80, 1.0, ci=(0.75, 0.85)), execution("d", 1e-1, 0.7, 1.0)]
    printed = format_table(sweep_table(runs, "weight_decay"))
    lines = printed.splitlines()
    assert lines[0].split()[:2] == ["≈best", "name"] and "test_accuracy_ci95" in lines[0].split()
    mark_width = len(lines[0].split()[0])
    assert {ln[mark_width:].split()[0]: ln[:mark_width].strip() for ln in lines[1:5]} == {
        "a": "≈", "b": "best", "c": "", "d": ""}
    assert "[0.87, 0.94]" in lines[1] and "[0.75, 0.85]" in lines[3]
    assert lines[5] == "" and lines[6] == "≈: its 95% interval of test accuracy overlaps the best run's — the test " \
                                           "split cannot tell them apart"


def test_execution_reads_test_ci95_from_the_metrics_file():
    report = {"test": {"accuracy": 0.97, "roc_auc": 0.99, "log_loss": 0.1},
              "test_ci95": {"accuracy": {"low": 0.95, "high": 0.99}, "roc_auc": {"low": 0.98, "high": 1.0},
                            "log_loss": {"low": 0.07, "high": 0.14}},
              "fit": {"verdict": "good_fit"}}
    entry = {"rev": "0" * 40, "data": {"metrics": {"reports/metrics.json": {"data": report},
                                                   "reports/train/summary.json": {"data": {"best_val_loss": 0.2}}},
                                       "params": {"params.yaml": {"data": {"weight_decay": 1e-4}}}}}
    with_ci = _execution("a", entry)["metrics"]
    assert with_ci["test_accuracy_low"] == 0.95 and with_ci["test_roc_auc_high"] == 1.0
    assert with_ci["test_log_loss_low"] == 0.07 and with_ci["test_accuracy"] == 0.97
    del report["test_ci95"]
    assert not any(k.endswith(("_low", "_high")) for k in _execution("a", entry)["metrics"])


@pytest.mark.parametrize("language", ["ja", "en"])
def test_sweep_figure_with_intervals(tmp_path, language):
    runs = [execution("a", 0.0, 0.91, 10.0, "overfitting", ci=(0.87, 0.94)),
            execution("b", 1e-4, 0.95, 9.0, ci=(0.92, 0.98)), execution("c", 1e-3, 0.93, 8.5),
            execution("d", 1e-2, 0.80, 8.0, "underfitting", ci=(0.75, 0.85))]
    table = sweep_table(runs, "weight_decay")
    with_ci, without = tmp_path / "ci.png", tmp_path / "plain.png"
    plots.sweep_figure(table, runs, with_ci, param="weight_decay", language=language, best="b")
    plots.sweep_figure(table[list(TABLE_COLUMNS)], runs, without, param="weight_decay", language=language)
    assert with_ci.read_bytes()[:4] == b"\x89PNG" and without.read_bytes()[:4] == b"\x89PNG"
    assert with_ci.read_bytes() != without.read_bytes()  # the intervals are drawn
