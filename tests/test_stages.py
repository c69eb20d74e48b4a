"""One smoke test per stage script, on tiny data in a scratch folder."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, run_stage_script, write_params


def run_ok(stage, cwd):
    result = run_stage_script(stage, cwd)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    """split -> augment -> train -> evaluate once, shared by the checks below."""
    cwd = tmp_path_factory.mktemp("stages")
    write_params(cwd / "params.yaml")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{cwd / 'mlflow.db'}"
    try:
        outs = {stage: run_ok(stage, cwd) for stage in ("split", "augment", "train", "evaluate")}
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    return cwd, outs


def test_split_stage(pipeline_dir):
    cwd, _ = pipeline_dir
    meta = json.loads((cwd / "data/split/meta.json").read_text())
    assert meta["modality"] == "image" and meta["input_shape"] == [1, 8, 8]
    sizes = {s: len(np.load(cwd / f"data/split/{s}.npz")["y"]) for s in ("train", "val", "test")}
    assert sizes == {s: meta["counts"][s]["total"] for s in sizes}
    assert sum(sizes.values()) == 1797


def test_augment_stage(pipeline_dir):
    cwd, _ = pipeline_dir
    n_train = len(np.load(cwd / "data/split/train.npz")["y"])
    aug = np.load(cwd / "data/augmented/train.npz")
    assert aug["x"].shape == (2 * n_train, 1, 8, 8)  # copies: 1 -> originals + 1
    assert (cwd / "reports/figures/augmentation.png").is_file()


def test_train_stage(pipeline_dir):
    cwd, outs = pipeline_dir
    summary = json.loads((cwd / "reports/train/summary.json").read_text())
    history = (cwd / "reports/train/history.csv").read_text().splitlines()
    assert history[0] == ("epoch,train_loss,val_loss,val_accuracy,lr,weight_l1,weight_l2,sparsity,train_eval_loss,"
                          "train_eval_accuracy")
    assert len(history) - 1 == summary["stopped_epoch"] <= 3
    assert (cwd / "models/model.pt").is_file()
    assert "epoch   1/3" in outs["train"].stdout  # a progress line per epoch (English report)


def test_evaluate_stage(pipeline_dir):
    cwd, _ = pipeline_dir
    metrics = json.loads((cwd / "reports/metrics.json").read_text())
    assert set(metrics["test"]) >= {"accuracy", "balanced_accuracy", "f1_macro", "roc_auc"}
    assert metrics["fit"]["verdict"] in ("overfitting", "underfitting", "good_fit")
    assert metrics["threshold"] is None  # ten classes: the likelier class, no threshold
    assert metrics["fit"]["train_measure"] == "train_eval_loss"
    assert {"ece", "brier"} <= set(metrics["test"])
    # every test metric has its interval, around the point estimate
    assert set(metrics["test_ci95"]) == set(metrics["test"])
    for name, value in metrics["test"].items():
        bounds = metrics["test_ci95"][name]
        assert bounds["low"] < bounds["high"], name
        if name != "ece":  # resampling only widens the per-bin gaps: the ECE's interval may lie above it
            assert bounds["low"] <= value <= bounds["high"], name
    assert metrics["bootstrap"]["resamples"] == 1000 and metrics["calibration"]["method"] == "none"
    meta = json.loads((cwd / "data/split/meta.json").read_text())
    assert list(metrics["test_per_class"]) == meta["class_names"]  # by class name, in class order
    assert set(metrics["test_per_class"]["3"]) == {"sensitivity", "specificity", "ppv", "npv", "roc_auc"}
    assert set(metrics["test_per_class_ci95"]["3"]) == set(metrics["test_per_class"]["3"])
    for fig in ("learning_curve.png", "confusion_matrix.png", "reliability_diagram.png"):
        assert (cwd / "reports/figures" / fig).is_file()


def test_stages_logged_to_mlflow(pipeline_dir):
    cwd, _ = pipeline_dir
    c = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    exp = c.get_experiment_by_name("goodfit")
    runs = c.search_runs([exp.experiment_id])
    names = sorted(r.info.run_name for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert names == ["augment", "evaluate", "split", "train"]
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags][0]
    assert "test_accuracy" in parent.data.metrics and parent.data.params["weight_decay"] == "0.0001"
    metrics = json.loads((cwd / "reports/metrics.json").read_text())
    assert parent.data.metrics["test_ci95_accuracy_low"] == metrics["test_ci95"]["accuracy"]["low"]
    assert parent.data.metrics["test_ece"] == metrics["test"]["ece"]
    assert parent.data.metrics["test_3_sensitivity"] == metrics["test_per_class"]["3"]["sensitivity"]


def test_bad_params_exit_2_and_write_nothing(tmp_path):
    write_params(tmp_path / "params.yaml", early_stopping={"patience": 0})
    result = run_stage_script("split", tmp_path)
    assert result.returncode == 2
    assert "params.yaml: early_stopping.patience must be an integer >= 1, got 0." in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "mlflow-test.db").exists()


@pytest.mark.parametrize("stage", ["split", "augment", "train", "evaluate"])
def test_python_without_goodfit_is_a_clear_error(tmp_path, stage):
    # `python -S` skips site-packages: the situation of a DVC started outside the project's venv.
    write_params(tmp_path / "params.yaml")
    result = subprocess.run([sys.executable, "-S", str(ROOT / "stages" / f"{stage}.py")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: goodfit is not installed for {sys.executable}")
    assert "source .venv/bin/activate" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_missing_input_is_a_clear_error(tmp_path):
    write_params(tmp_path / "params.yaml")
    result = run_stage_script("train", tmp_path)
    assert result.returncode == 2
    assert "data/split/meta.json does not exist. Run the stage that produces it first" in result.stderr


def test_bad_source_data_exit_2_and_write_nothing(tmp_path):
    (tmp_path / "images" / "only_class").mkdir(parents=True)
    write_params(tmp_path / "params.yaml", data={"source": "imagefolder", "path": "images"})
    result = run_stage_script("split", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has a single class folder ('only_class'); a classifier needs at least 2 classes" in result.stderr
    assert not (tmp_path / "data").exists()


def breast_cancer_pipeline(tmp_path, **train):
    """The four stages on breast_cancer with ``train`` settings; the model, its spec, the val and test
    splits, summary.json, metrics.json and evaluate's stdout.

    repro.portable is off: the stages then run the same CPU kernels as this test process, which
    recomputes their predictions (a pinned stage and an unpinned test differ in the last bits of a
    probability)."""
    from goodfit.checkpoint import load_model

    write_params(tmp_path / "params.yaml", data={"source": "breast_cancer"}, train=train, repro={"portable": False})
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    for stage in ("split", "augment", "train", "evaluate"):
        result = run_stage_script(stage, tmp_path, env=env)
        assert result.returncode == 0, result.stderr
    model, spec = load_model(tmp_path / "models/model.pt")
    read = lambda name: json.loads((tmp_path / name).read_text())  # noqa: E731
    return (model, spec, np.load(tmp_path / "data/split/val.npz"), np.load(tmp_path / "data/split/test.npz"),
            read("reports/train/summary.json"), read("reports/metrics.json"), result.stdout)


def test_validation_chosen_threshold_is_saved_with_the_model_and_used_on_test(tmp_path):
    from goodfit.evaluation import choose_threshold, classification_metrics, predict_proba

    model, spec, val, test, summary, metrics, _ = breast_cancer_pipeline(tmp_path, threshold="val_accuracy")
    expected = choose_threshold(val["y"], predict_proba(model, val["x"]))
    assert spec["threshold"] == summary["threshold"] == metrics["threshold"] == expected
    proba = predict_proba(model, test["x"])
    assert metrics["test"]["accuracy"] == classification_metrics(test["y"], proba, expected)["accuracy"]
    if expected != 0.5:
        assert metrics["test"]["accuracy_at_default_threshold"] == classification_metrics(test["y"], proba)["accuracy"]


def test_temperature_is_fitted_on_validation_saved_with_the_model_and_applied_on_test(tmp_path):
    from goodfit.calibration import apply_temperature, expected_calibration_error, fit_temperature
    from goodfit.evaluation import predict_proba

    model, spec, val, test, summary, metrics, stdout = breast_cancer_pipeline(tmp_path, calibration="temperature")
    expected = fit_temperature(val["y"], predict_proba(model, val["x"]))
    assert spec["temperature"] == summary["temperature"] == metrics["calibration"]["temperature"] == expected
    assert metrics["calibration"]["method"] == "temperature" and expected != 1.0
    raw = predict_proba(model, test["x"])
    assert metrics["test"]["ece"] == pytest.approx(expected_calibration_error(test["y"], apply_temperature(raw, expected)),
                                                   abs=1e-12)
    assert metrics["calibration"]["test_ece_uncalibrated"] == pytest.approx(expected_calibration_error(test["y"], raw),
                                                                            abs=1e-12)
    assert "T=" in stdout


def test_threshold_on_a_multiclass_task_fails_before_training(tmp_path):
    write_params(tmp_path / "params.yaml", train={"threshold": "val_accuracy"})
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    for stage in ("split", "augment"):
        assert run_stage_script(stage, tmp_path, env=env).returncode == 0
    result = run_stage_script("train", tmp_path, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train.threshold is 'val_accuracy', but a decision threshold applies to two-class tasks only and this " \
           "dataset has 10 classes; set train.threshold to 0.5." in result.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "reports/train").exists()


def test_cross_validation_ensemble_through_the_stages(tmp_path):
    from goodfit.checkpoint import load_model
    from goodfit.evaluation import classification_metrics, predict_proba
    from goodfit.models import Ensemble

    write_params(tmp_path / "params.yaml", data={"source": "breast_cancer"},
                 train={"folds": 3, "threshold": "val_accuracy"})
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    for stage in ("split", "augment", "train", "evaluate"):
        result = run_stage_script(stage, tmp_path, env=env)
        assert result.returncode == 0, result.stderr
    val, aug_val = np.load(tmp_path / "data/split/val.npz"), np.load(tmp_path / "data/augmented/val.npz")
    assert len(aug_val["y"]) == 2 * len(val["y"]) and np.array_equal(aug_val["x"][:len(val["y"])], val["x"])
    model, spec = load_model(tmp_path / "models/model.pt")
    assert isinstance(model, Ensemble) and len(model.members) == 3 and spec["folds"] == 3
    summary = json.loads((tmp_path / "reports/train/summary.json").read_text())
    assert len(summary["fold_best_epochs"]) == 3 and summary["n_val"] == len(val["y"]) + len(
        np.load(tmp_path / "data/split/train.npz")["y"])
    history = (tmp_path / "reports/train/history.csv").read_text().splitlines()
    assert history[0].endswith(",fold") and {line.rsplit(",", 1)[1] for line in history[1:]} == {"1", "2", "3"}
    metrics = json.loads((tmp_path / "reports/metrics.json").read_text())
    assert len(metrics["fit"]["fold_verdicts"]) == 3 and metrics["threshold"] == spec["threshold"]
    test = np.load(tmp_path / "data/split/test.npz")
    assert metrics["test"]["accuracy"] == classification_metrics(test["y"], predict_proba(model, test["x"]),
                                                                 spec["threshold"])["accuracy"]
    runs = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs(
        [e.experiment_id for e in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()])
    assert any("val_loss_fold3" in r.data.metrics for r in runs)


def test_more_folds_than_a_class_has_samples_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["a,b,label"] + [f"{rng.normal():.3f},{rng.normal():.3f},{int(i < 8)}" for i in range(40)]
    (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
    write_params(tmp_path / "params.yaml", data={"source": "csv", "path": "table.csv", "target": "label"},
                 train={"folds": 10})
    for stage in ("split", "augment"):
        assert run_stage_script(stage, tmp_path).returncode == 0
    result = run_stage_script("train", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "train.folds is 10, but class 1 has only" in result.stderr and "Lower train.folds" in result.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "reports/train").exists()


def test_dvc_yaml_lists_exactly_the_params_each_stage_reads():
    """So that registering a model (mlflow.register_as) re-runs train alone, and a sweep never re-runs split."""
    import yaml

    from goodfit.cli import STAGE_PARAMS

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert {name: tuple(stage["params"]) for name, stage in stages.items()} == STAGE_PARAMS
