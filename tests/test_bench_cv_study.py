"""benchmarks/cv_study.py on a tiny synthetic series set (the real study needs the real data)."""

import numpy as np
import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def study():
    return load_benchmark("cv_study")


def test_study_predicts_every_training_series_with_both_contenders(study, tmp_path):
    params = study.preset_params("ecg200", ".", 0, tmp_path)
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 20)
    x = (rng.normal(size=(40, 1, 96)) + y[:, None, None] * np.sin(np.linspace(0, 6, 96))).astype(np.float32)
    out = study.study(params, x, y, "timeseries", 2, seed=0, folds=2, val_share=0.2)
    assert set(out) == {"single", "ensemble"}
    for metrics in out.values():
        assert 0.0 <= metrics["accuracy at 0.5"] <= 1.0 and np.isfinite(metrics["log_loss"])
        assert metrics["roc_auc"] > 0.5  # the class signal is strong: both learn it from held-out folds


def test_a_source_without_an_official_training_split_is_refused(study, tmp_path, monkeypatch, capsys):
    from goodfit.sources.base import Dataset

    monkeypatch.setattr(study, "load_dataset", lambda data: Dataset(x=np.zeros((4, 1, 8), np.float32),
                                                                     y=np.array([0, 1, 0, 1]), modality="timeseries",
                                                                     class_names=["a", "b"], source="t"))
    assert study.main(["ecg200", "--data-path", "."]) == 2
    assert "has no official training split" in capsys.readouterr().err
