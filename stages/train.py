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
    from goodfit.distributed import is_main
    from goodfit import history as hist
    from goodfit.calibration import apply_temperature, fit_temperature
    from goodfit.evaluation import check_threshold, choose_threshold
    from goodfit.io import write_json, write_text
    from goodfit.params import as_flat_dict
    from goodfit.resume import Checkpoints, code_files, fingerprint
    from goodfit.search import TrainData, train
    from goodfit.splitting import load_meta, load_split
    from goodfit.storage import to_float32
    from goodfit.streaming import load_training_set
    from goodfit.training import configure_torch

    t = params.train
    configure_torch(threads=t.threads)
    meta = load_meta("data/split/meta.json")
    x_train, y_train = load_training_set(TRAIN, meta, t)  # in memory, or on disk past train.memory_budget
    # a cross-validation ensemble pools train and validation, both with their augmented copies (goodfit.crossval)
    x_val, y_val = load_split("data/augmented/val.npz" if t.folds > 1 else "data/split/val.npz", meta)
    check_threshold(t.threshold, meta["n_classes"])
    # resume states after every epoch: a stopped run goes on where it stopped (goodfit.resume)
    # (not with train.processes > 1: a stopped data-parallel run starts again at epoch 1)
    checkpoints = Checkpoints(fingerprint(as_flat_dict(params), data_files(params) + [Path("data/split/meta.json")],
                                          code_files(Path(__file__))), enabled=t.processes == 1)
    # one model, a k-fold ensemble, or the best of train.search's candidates on validation (goodfit.search)
    trained = train(params, TrainData(meta=meta, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val),
                    run=run, checkpoints=checkpoints, **({} if is_main() else {"log": lambda *a, **k: None}))
    if not is_main():  # data-parallel: rank 0 alone chooses the threshold, writes and logs
        return
    fitted = trained.fitted
    model, spec, history, numbers, choose_on = fitted.model, fitted.spec, fitted.history, fitted.numbers, \
        fitted.choose_on
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
    summary = {**numbers, "n_train": int(len(y_train)), "n_val": int(fitted.n_val), "model": spec["kind"],
               "n_parameters": int(sum(p.numel() for p in model.parameters())),
               "threshold": spec.get("threshold"),  # two classes only; null otherwise
               **({"temperature": spec["temperature"]} if "temperature" in spec else {}),
               **trained.summary}  # train.search: the grid, every candidate's score, the winner
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
    # train.processes > 1: this process starts the ranks under torchrun and waits (goodfit.distributed)
    sys.exit(run_stage("train", body, data_files=data_files, processes=lambda params: params.train.processes))
