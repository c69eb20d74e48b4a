"""DVC stage 'train': augmented train + val -> models/model.pt, reports/train/{history.csv,summary.json}."""

import sys
from pathlib import Path

import _goodfit  # noqa: F401  (first: a clear error when goodfit is not installed)
from goodfit.cli import run_stage

MODEL = Path("models/model.pt")
TRAIN = Path("data/augmented/train.npz")
REPORTS = Path("reports/train")


def body(params, run):
    from goodfit.checkpoint import save_model
    from goodfit import history as hist
    from goodfit.crossval import fit_cross_validated, fold_history, originals, summarize
    from goodfit.calibration import apply_temperature, fit_temperature
    from goodfit.evaluation import check_threshold, choose_threshold, predict_proba
    from goodfit.io import write_json, write_text
    from goodfit.models import build_model, model_spec
    from goodfit.params import as_flat_dict
    from goodfit.resume import Checkpoints, code_files, fingerprint
    from goodfit.splitting import load_meta, load_split
    from goodfit.storage import to_float32
    from goodfit.streaming import head, load_training_set
    from goodfit.training import configure_torch, fit, fit_options, format_epoch

    t = params.train
    configure_torch(threads=t.threads)
    meta = load_meta("data/split/meta.json")
    x_train, y_train = load_training_set(TRAIN, meta, t)
    x_val, y_val = load_split("data/split/val.npz", meta)
    spec = model_spec(kind=t.model, modality=meta["modality"], input_shape=meta["input_shape"],
                      n_classes=meta["n_classes"], hidden=t.hidden, channels=t.channels, dropout=params.dropout,
                      batch_norm=t.batch_norm, kernel_size=t.kernel_size, global_pool=t.global_pool,
                      class_names=meta["class_names"], feature_names=meta.get("feature_names"),
                      **meta["normalization"])
    check_threshold(t.threshold, meta["n_classes"])
    fit_kwargs = fit_options(params)
    # resume states after every epoch: a stopped run goes on where it stopped (goodfit.resume)
    checkpoints = Checkpoints(fingerprint(as_flat_dict(params), data_files(params) + [Path("data/split/meta.json")],
                                          code_files(Path(__file__))))

    def on_epoch(row, fold=None):
        print(("" if fold is None else f"[{fold}/{t.folds}] ") + format_epoch(row, t.max_epochs,
                                                                             params.report.language), flush=True)
        suffix = "" if fold is None else f"_fold{fold}"
        run.log_metrics({k + suffix: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])

    if t.folds > 1:  # k-fold cross-validation ensemble over train + validation (goodfit.crossval)
        x_val, y_val = load_split("data/augmented/val.npz", meta)
        cv = fit_cross_validated(spec, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                                 copies=params.augment.copies, folds=t.folds, seed=params.seed,
                                 fit_kwargs=fit_kwargs, on_epoch=lambda fold, row: on_epoch(row, fold),
                                 checkpoints=checkpoints)
        model, history, numbers = cv.model, fold_history(cv), summarize(cv)
        choose_on = lambda: (cv.y_pool, cv.oof_proba)  # noqa: E731 - out-of-fold predictions of every pooled sample
        spec = {**spec, "folds": t.folds}
        n_val = len(cv.y_pool)
    else:
        model = build_model(spec, seed=params.seed)
        n = originals(len(y_train), params.augment.copies, TRAIN)
        resume = checkpoints.load()
        for row in (resume or {}).get("history", []):  # this run's MLflow record holds the epochs before the stop too
            run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        result = fit(model, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, seed=params.seed,
                     on_epoch=on_epoch, x_train_eval=head(x_train, n), y_train_eval=y_train[:n],
                     checkpoint=checkpoints.saver(), resume=resume, **fit_kwargs)
        history = result.history
        choose_on = lambda: (y_val, predict_proba(model, x_val))  # noqa: E731
        numbers = {"best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
                   "stopped_epoch": result.stopped_epoch, "stop_reason": result.stop_reason}
        n_val = len(y_val)
    if t.calibration == "temperature":  # fitted on the validation split only, saved with the model, applied by evaluate
        y_choose, p_choose = choose_on()
        spec["temperature"] = fit_temperature(y_choose, p_choose)
        choose_on = lambda: (y_choose, apply_temperature(p_choose, spec["temperature"]))  # noqa: E731
    if t.threshold == "val_accuracy":  # the operating point is part of the model: chosen on validation, saved with it
        spec["threshold"] = choose_threshold(*choose_on())
    elif meta["n_classes"] == 2:
        spec["threshold"] = t.threshold
    save_model(MODEL, model, spec)
    write_text(REPORTS / "history.csv", hist.to_csv(history))
    summary = {**numbers, "n_train": int(len(y_train)), "n_val": int(n_val), "model": spec["kind"],
               "n_parameters": int(sum(p.numel() for p in model.parameters())),
               "threshold": spec.get("threshold"),  # two classes only; null otherwise
               **({"temperature": spec["temperature"]} if "temperature" in spec else {})}
    write_json(REPORTS / "summary.json", summary)
    run.log_metrics({"best_epoch": summary["best_epoch"], "best_val_loss": summary["best_val_loss"],
                     "stopped_epoch": summary["stopped_epoch"],
                     **({} if summary["threshold"] is None else {"threshold": summary["threshold"]}),
                     **({"temperature": spec["temperature"]} if "temperature" in spec else {})}, parent=True)
    run.set_tags({"goodfit.stop_reason": summary["stop_reason"]}, parent=True)
    run.log_artifact(REPORTS / "history.csv")
    logged = run.log_model(MODEL, input_example=to_float32(x_val[:5]), register_as=params.mlflow.register_as)
    checkpoints.clear()  # the outputs are written: nothing left to resume
    what = "best epoch" if t.folds == 1 else f"{t.folds}-fold ensemble, members' median best epoch"
    print(f"train: {what} {summary['best_epoch']} (val_loss {summary['best_val_loss']:.4f}"
          f"{'' if t.folds == 1 else ', out of fold'}), stopped at epoch {summary['stopped_epoch']} "
          f"({summary['stop_reason']}) -> {MODEL}")
    if logged:  # ids go to the console and MLflow only, never into a DVC output
        print(f"train: MLflow model {logged['uri']}" + (f", registered as {logged['name']} version "
              f"{logged['version']} ({logged['alias_uri']})" if "alias_uri" in logged else ""))


def data_files(params):
    return [TRAIN, Path("data/split/val.npz")] + (
        [Path("data/augmented/val.npz")] if params.train.folds > 1 else [])


if __name__ == "__main__":
    sys.exit(run_stage("train", body, data_files=data_files))
