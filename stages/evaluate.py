"""DVC stage 'evaluate': model + test split -> reports/metrics.json, learning curve, confusion matrix."""

import sys
from pathlib import Path

import _goodfit  # noqa: F401  (first: a clear error when goodfit is not installed)
from goodfit.cli import run_stage

FIGURES = Path("reports/figures")


def body(params, run):
    from goodfit import plots
    from goodfit.checkpoint import load_model
    from goodfit.evaluation import (DEFAULT_THRESHOLD, classification_metrics, confusion, diagnose_fit,
                                    predict_proba, prior_loss)
    from goodfit.io import read_json, write_json
    from goodfit.splitting import load_meta, load_split
    from goodfit.history import read as read_history

    lang = params.report.language
    meta = load_meta("data/split/meta.json")
    summary = read_json("reports/train/summary.json")
    history = read_history("reports/train/history.csv")
    x_test, y_test = load_split("data/split/test.npz", meta)
    model, spec = load_model("models/model.pt", input_shape=meta["input_shape"], n_classes=meta["n_classes"])
    threshold = spec.get("threshold", DEFAULT_THRESHOLD)  # the operating point the train stage saved
    proba = predict_proba(model, x_test)
    metrics = classification_metrics(y_test, proba, threshold)
    if threshold != DEFAULT_THRESHOLD:  # also at the usual 0.5, for comparison with published results
        metrics["accuracy_at_default_threshold"] = classification_metrics(y_test, proba)["accuracy"]
    fit = diagnose_fit(history, baseline_loss=prior_loss(meta["counts"]["train"]["per_class"]),
                       overfit_rise=params.diagnosis.overfit_rise, underfit_ratio=params.diagnosis.underfit_ratio,
                       noise_floor=params.diagnosis.noise_floor)
    write_json("reports/metrics.json", {"test": metrics, "fit": fit,
                                        "threshold": spec.get("threshold"),  # null: more than two classes
                                        "best_epoch": summary["best_epoch"],
                                        "stopped_epoch": summary["stopped_epoch"],
                                        "stop_reason": summary["stop_reason"]})
    plots.learning_curve(history, FIGURES / "learning_curve.png", best_epoch=summary["best_epoch"],
                         verdict=fit["verdict"], language=lang)
    plots.confusion_matrix(confusion(y_test, proba, threshold), meta["class_names"],
                           FIGURES / "confusion_matrix.png", language=lang)
    run.log_metrics({f"test_{k}": v for k, v in metrics.items()}, parent=True)
    run.log_metrics({f"fit_{k}": v for k, v in fit.items() if isinstance(v, float)})
    run.set_tags({"goodfit.fit_diagnosis": fit["verdict"]}, parent=True)
    for name in ("learning_curve.png", "confusion_matrix.png"):
        run.log_artifact(FIGURES / name)
    run.log_artifact("reports/metrics.json")
    print(f"evaluate: test accuracy {metrics['accuracy']:.4f}, balanced {metrics['balanced_accuracy']:.4f}, "
          f"macro F1 {metrics['f1_macro']:.4f}; fit: {fit['verdict']} ({fit['reason']})")


def data_files(params):
    return [Path("data/split/test.npz"), Path("models/model.pt")]


if __name__ == "__main__":
    sys.exit(run_stage("evaluate", body, data_files=data_files))
