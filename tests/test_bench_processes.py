"""benchmarks/bench_processes.py: how it compares the curves of one and two processes, and its report."""

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_processes")


def run(processes, seed, losses, seconds=10.0):
    return {"processes": processes, "seed": seed, "seconds": seconds, "n_train": 100, "epochs": len(losses),
            "best_epoch": 1 + losses.index(min(losses)), "best_val_loss": min(losses),
            "history": [{"epoch": i + 1, "val_loss": v} for i, v in enumerate(losses)]}


def test_curve_gaps_between_settings_and_between_seeds(bench):
    runs = [run(1, 0, [1.0, 0.5]), run(2, 0, [1.0, 0.45]), run(1, 1, [0.8, 0.6]), run(2, 1, [0.9, 0.6])]
    gaps = bench.curve_gaps(runs)
    assert gaps["processes_1_vs_2"] == pytest.approx(0.1)  # seed 1, epoch 1
    assert gaps["seeds_within_1"] == pytest.approx(0.2)  # epoch 1: 1.0 vs 0.8
    assert gaps["seeds_within_2"] == pytest.approx(0.15)  # epoch 2: 0.45 vs 0.6


def test_report_gives_rows_per_second_and_medians(bench):
    runs = [run(1, 0, [1.0, 0.5], seconds=4.0), run(2, 0, [1.0, 0.4], seconds=8.0),
            run(1, 1, [0.9, 0.5], seconds=5.0), run(2, 1, [0.9, 0.6], seconds=10.0)]
    text = bench.report(runs).splitlines()
    assert text[2] == "| 1 | 0 | 4.0 | 50 | 2 | 0.5000 |"  # 100 rows x 2 epochs / 4 s
    assert "median, 1 process: 4.5 s, 45 rows / s" in text
    assert "median, 2 processes: 9.0 s, 22 rows / s" in text


def test_epochs_below_one_is_a_clear_error(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--epochs", "0"])
    assert "--epochs must be at least 1, got 0" in capsys.readouterr().err
