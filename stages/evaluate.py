"""DVC stage 'evaluate': model + test split -> reports/metrics.json (test metrics with 95% bootstrap intervals,
calibration, per-class numbers, fit diagnosis), learning curve, confusion matrix, reliability diagram."""

import re
import sys
from pathlib import Path

import _goodfit  # noqa: F401  (first: a clear error when goodfit is not installed)
from goodfit.cli import run_stage

FIGURES = Path("reports/figures")
CONFIDENCE = 0.95  # the intervals' level; metrics.json calls them test_ci95


def body(params, run):
    from goodfit import plots
    from goodfit.calibration import apply_temperature
    from goodfit.checkpoint import load_model
    from goodfit.evaluation import (DEFAULT_THRESHOLD, classification_metrics, confusion, diagnose_fit,
                                    per_class_metrics, predict_proba, prior_loss)
    from goodfit.history import read as read_history
    from goodfit.io import read_json, write_json
    from goodfit.splitting import load_meta, load_split
    from goodfit.uncertainty import bootstrap_intervals

    lang, bins = params.report.language, params.evaluate.calibration_bins
    meta = load_meta("data/split/meta.json")
    names = meta["class_names"]
    summary = read_json("reports/train/summary.json")
    history = read_history("reports/train/history.csv")
    x_test, y_test = load_split("data/split/test.npz", meta)
    model, spec = load_model("models/model.pt", input_shape=meta["input_shape"], n_classes=meta["n_classes"])
    threshold = spec.get("threshold", DEFAULT_THRESHOLD)  # the operating point the train stage saved
    temperature = spec.get("temperature")  # train.calibration: temperature, fitted on the validation split
    raw = predict_proba(model, x_test)
    proba = raw if temperature is None else apply_temperature(raw, temperature)
    metrics = classification_metrics(y_test, proba, threshold, n_bins=bins)
    if threshold != DEFAULT_THRESHOLD:  # also at the usual 0.5, for comparison with published results
        metrics["accuracy_at_default_threshold"] = classification_metrics(y_test, proba, n_bins=bins)["accuracy"]
    per_class = per_class_metrics(y_test, proba, names)
    ci, per_class_ci = bootstrap_intervals(y_test, proba, threshold=threshold, class_names=names,
                                           n_resamples=params.evaluate.bootstrap, seed=params.seed,
                                           confidence=CONFIDENCE, n_bins=bins)
    calibration = {"method": "none" if temperature is None else "temperature", "temperature": temperature or 1.0,
                   "bins": bins}
    if temperature is not None:  # the same test numbers without it, to show what it changed
        before = classification_metrics(y_test, raw, threshold, n_bins=bins)
        calibration.update({f"test_{k}_uncalibrated": before[k] for k in ("ece", "brier", "log_loss")})
    fit = diagnose_fit(history, baseline_loss=prior_loss(meta["counts"]["train"]["per_class"]),
                       overfit_rise=params.diagnosis.overfit_rise, underfit_ratio=params.diagnosis.underfit_ratio,
                       noise_floor=params.diagnosis.noise_floor)
    report = {"test": metrics, "test_ci95": ci, "fit": fit,
              "threshold": spec.get("threshold"),  # null: more than two classes
              "best_epoch": summary["best_epoch"], "stopped_epoch": summary["stopped_epoch"],
              "stop_reason": summary["stop_reason"], "calibration": calibration,
              "bootstrap": {"resamples": params.evaluate.bootstrap, "confidence": CONFIDENCE, "seed": params.seed,
                            "method": "percentile interval, test samples resampled within each class"}}
    if per_class:
        report.update({"test_per_class": per_class, "test_per_class_ci95": per_class_ci})
    write_json("reports/metrics.json", report)
    plots.learning_curve(history, FIGURES / "learning_curve.png", best_epoch=summary["best_epoch"],
                         verdict=fit["verdict"], language=lang)
    plots.confusion_matrix(confusion(y_test, proba, threshold), names, FIGURES / "confusion_matrix.png",
                           language=lang)
    plots.reliability_diagram(y_test, proba, FIGURES / "reliability_diagram.png", class_names=names, n_bins=bins,
                              uncalibrated=None if temperature is None else raw, temperature=temperature,
                              language=lang)
    logged = {f"test_{k}": v for k, v in metrics.items()}
    logged.update({f"test_ci95_{k}_{end}": v for k, bounds in ci.items() for end, v in bounds.items()})
    logged.update({re.sub(r"[^\w\-. /]", "_", f"test_{name}_{k}"): v  # MLflow's allowed key characters
                   for name, numbers in per_class.items() for k, v in numbers.items()})
    logged.update({f"calibration_{k}": v for k, v in calibration.items() if isinstance(v, (int, float))})
    run.log_metrics(logged, parent=True, model_id=run.model_id("models/model.pt"))  # also on the MLflow model's page
    run.log_metrics({f"fit_{k}": v for k, v in fit.items() if isinstance(v, float)})
    run.set_tags({"goodfit.fit_diagnosis": fit["verdict"]}, parent=True)
    for name in ("learning_curve.png", "confusion_matrix.png", "reliability_diagram.png"):
        run.log_artifact(FIGURES / name)
    run.log_artifact("reports/metrics.json")
    acc = ci["accuracy"]
    calibrated = "" if temperature is None else \
        f" (T={temperature:g}; before {calibration['test_ece_uncalibrated']:.4f})"
    print(f"evaluate: test accuracy {metrics['accuracy']:.4f} (95% CI {acc['low']:.4f}-{acc['high']:.4f}), "
          f"balanced {metrics['balanced_accuracy']:.4f}, macro F1 {metrics['f1_macro']:.4f}, "
          f"ECE {metrics['ece']:.4f}{calibrated}; fit: {fit['verdict']} ({fit['reason']})")

def data_files(params):
    return [Path("data/split/test.npz"), Path("models/model.pt")]


if __name__ == "__main__":
    sys.exit(run_stage("evaluate", body, data_files=data_files))
