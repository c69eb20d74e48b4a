"""Quality of a params preset on real data: test metrics over seeds, with and without
augmentation + regularization, and the learning-curve figure for the README.

Each run is the pipeline itself: the four stage scripts, exactly as ``dvc repro``
runs them, in a scratch folder holding params.yaml = the project's params.yaml +
``presets/NAME.yaml`` + the seed, the data path and (for the baseline) every
augmentation and regularization knob switched off. Early stopping on the
validation split selects the model in both settings; the test split is only
scored.

    python benchmarks/presets.py breastmnist --data-path path/to/breastmnist.npz
    python benchmarks/presets.py ecg200 --data-path path/to/ECG200 --jobs 2

Writes ``docs/results/NAME.json`` (every run's test metrics with their 95% bootstrap
intervals, calibration and stopping epochs), ``docs/figures/NAME_learning_curves.png`` and
``docs/figures/NAME_reliability.png`` (the preset's first seed), and prints a Markdown table.

Choosing a preset must not look at the test split. ``--validation-only`` runs the
preset (with ``--set KEY=VALUE`` overrides for a candidate) through split, augment
and train only, and prints the validation metrics at the best epoch of each seed
and their mean; the test split is never scored, nothing is written:

    python benchmarks/presets.py ecg200 --data-path path/to/ECG200 --validation-only \
        --seeds 0 1 2 3 4 --set train.kernel_size=5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from goodfit import plots  # noqa: E402
from goodfit.io import atomic_write_bytes, read_json, write_json  # noqa: E402
from goodfit.params import _Loader  # noqa: E402
from goodfit.preset import apply_preset  # noqa: E402
from goodfit.history import read as read_history  # noqa: E402

STAGES = ("split", "augment", "train", "evaluate")
# Everything that fights overfitting except early stopping, switched off.
BASELINE = {"augment": {"copies": 0}, "dropout": 0.0, "weight_decay": 0.0, "l1_lambda": 0.0,
            "train": {"label_smoothing": 0.0}}
VARIANTS = {"preset": {}, "baseline": BASELINE}
METRICS = ("accuracy", "roc_auc", "balanced_accuracy", "f1_macro", "accuracy_at_default_threshold", "ece", "brier",
           "log_loss")
SEEDS_DRAWN: list[int] = []  # the seeds of this invocation
FIGURES_DRAWN: dict[str, bytes] = {}  # preset name -> its first seed's reliability diagram
VAL_METRICS = ("val_loss", "val_accuracy", "val_auc")  # history.csv columns; val_auc only for some runs


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def _override(assignment: str) -> dict:
    """``a.b=value`` (value parsed as YAML) -> ``{"a": {"b": value}}``."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE (e.g. train.kernel_size=5), got {assignment!r}")
    out: dict = yaml.load(value, Loader=_Loader)  # noqa: S506
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def run_stages(name: str, variant: str, seed: int, data_path: str, work: Path, overrides: dict,
               stages=STAGES) -> Path:
    """Run ``stages`` of one pipeline execution in a scratch folder; returns the folder."""
    folder = work / f"{name}-{variant}-seed{seed}"
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    apply_preset(name, params_path=folder / "params.yaml", presets_dir=ROOT / "presets")
    params = yaml.load((folder / "params.yaml").read_text(), Loader=_Loader)  # noqa: S506
    params = _merge(_merge(params, overrides), {"seed": seed, "data": {"path": data_path}, **VARIANTS[variant]})
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}", "MPLBACKEND": "Agg"}
    for stage in stages:
        proc = subprocess.run([sys.executable, str(ROOT / "stages" / f"{stage}.py")], cwd=folder, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{folder}: stage {stage} failed:\n{proc.stderr}")
    return folder


def validation_at_best(name: str, seed: int, data_path: str, work: Path, overrides: dict) -> dict:
    """Split, augment and train only: the validation metrics at the best epoch (the test split is not read)."""
    folder = run_stages(name, "preset", seed, data_path, work, overrides, stages=STAGES[:3])
    summary = read_json(folder / "reports/train/summary.json")
    if "fold_best_epochs" in summary:  # train.folds > 1: the out-of-fold loss of the ensemble's members
        return {"seed": seed, "best_epoch": summary["best_epoch"], "stopped_epoch": summary["stopped_epoch"],
                "val_loss": summary["best_val_loss"]}
    history = read_history(folder / "reports/train/history.csv")
    best = next(row for row in history if int(row["epoch"]) == summary["best_epoch"])
    losses = [float(row["val_loss"]) for row in history]
    return {"seed": seed, "best_epoch": summary["best_epoch"], "stopped_epoch": summary["stopped_epoch"],
            **{k: float(best[k]) for k in VAL_METRICS if k in best},
            # how steady the validation curve is: its largest rise from one epoch to the next, as a ratio
            "val_loss_jump": max((b / a for a, b in zip(losses, losses[1:]) if a > 0), default=1.0)}


def run_once(name: str, variant: str, seed: int, data_path: str, work: Path, overrides: dict) -> dict:
    """One pipeline execution; returns its test metrics, stopping epochs and history."""
    folder = run_stages(name, variant, seed, data_path, work, overrides)
    metrics = read_json(folder / "reports/metrics.json")
    if variant == "preset" and seed == min(SEEDS_DRAWN):  # the README's reliability diagram: the first seed's
        FIGURES_DRAWN[name] = (folder / "reports/figures/reliability_diagram.png").read_bytes()
    return {"variant": variant, "seed": seed, "threshold": metrics.get("threshold", 0.5),
            "test": {k: metrics["test"][k] for k in METRICS if k in metrics["test"]},
            "test_ci95": {k: metrics.get("test_ci95", {}).get(k) for k in ("accuracy", "roc_auc", "ece")},
            "calibration": metrics.get("calibration", {}),
            "best_epoch": metrics["best_epoch"], "stopped_epoch": metrics["stopped_epoch"],
            "verdict": metrics["fit"]["verdict"],
            "history": read_history(folder / "reports/train/history.csv")}


def _with_ci(r: dict, key: str) -> str:
    ci = r["test_ci95"].get(key)
    return f"{r['test'][key]:.4f}" + ("" if not ci else f" [{ci['low']:.3f}, {ci['high']:.3f}]")


def _ece(r: dict) -> str:
    before = r["calibration"].get("test_ece_uncalibrated")
    return f"{r['test']['ece']:.3f}" + ("" if before is None else f" ({before:.3f})")


def summary_table(runs: list[dict]) -> str:
    """The README's table: test accuracy and ROC AUC with their 95% bootstrap intervals (over the test
    samples: the uncertainty of one run's score), the ECE (before temperature scaling in brackets)."""
    lines = ["| setting | seed | test accuracy [95% CI] | test ROC AUC [95% CI] | ECE (before T) "
             "| threshold (accuracy at 0.5) | best / stopped epoch |",
             "|---|---|---|---|---|---|---|"]
    for variant in VARIANTS:
        rows = [r for r in runs if r["variant"] == variant]
        for r in rows:
            at_half = r["test"].get("accuracy_at_default_threshold", r["test"]["accuracy"])
            lines.append(f"| {variant} | {r['seed']} | {_with_ci(r, 'accuracy')} | {_with_ci(r, 'roc_auc')} "
                         f"| {_ece(r)} | {r['threshold']:.3f} ({at_half:.4f}) | {r['best_epoch']} / "
                         f"{r['stopped_epoch']} |")
        acc = np.array([r["test"]["accuracy"] for r in rows])
        auc = np.array([r["test"]["roc_auc"] for r in rows])
        ece = np.array([r["test"]["ece"] for r in rows])
        lines.append(f"| **{variant}** | mean ± sd | **{acc.mean():.4f} ± {acc.std(ddof=1):.4f}** "
                     f"| **{auc.mean():.4f} ± {auc.std(ddof=1):.4f}** | {ece.mean():.3f} ± {ece.std(ddof=1):.3f} "
                     "| | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the preset (presets/NAME.yaml)")
    parser.add_argument("--data-path", required=True, help="data.path for the preset's dataset")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="pipelines run at once (each uses train.threads)")
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where results/ and figures/ go")
    parser.add_argument("--set", dest="overrides", type=_override, action="append", default=[],
                        metavar="KEY=VALUE", help="override a preset key (both settings), e.g. dropout=0.5")
    parser.add_argument("--validation-only", action="store_true",
                        help="choose between candidates: validation metrics only, the test split is never scored")
    args = parser.parse_args(argv)
    data_path = str(Path(args.data_path).resolve())
    overrides: dict = {}
    for extra in args.overrides:
        overrides = _merge(overrides, extra)
    if args.validation_only:
        with tempfile.TemporaryDirectory(prefix="goodfit-bench-") as tmp, ThreadPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(lambda s: validation_at_best(args.name, s, data_path, Path(tmp), overrides),
                                 args.seeds))
        for row in rows:
            print(json.dumps(row))
        keys = [k for k in (*VAL_METRICS, "val_loss_jump") if k in rows[0]]
        print(f"{args.name} {json.dumps(overrides)}: validation at the best epoch, mean of {len(rows)} seeds: "
              + ", ".join(f"{k} {np.mean([r[k] for r in rows]):.4f}" for k in keys))
        return 0
    SEEDS_DRAWN.extend(args.seeds)
    jobs = [(v, s) for v in VARIANTS for s in args.seeds]
    with tempfile.TemporaryDirectory(prefix="goodfit-bench-") as tmp, ThreadPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(lambda job: run_once(args.name, job[0], job[1], data_path, Path(tmp), overrides),
                             jobs))
    out = Path(args.out)
    title = {"preset": f"{args.name}: preset (augmentation + regularization)",
             "baseline": f"{args.name}: no augmentation, no regularization"}
    plots.learning_curve_comparison(
        {title[v]: [r["history"] for r in runs if r["variant"] == v] for v in VARIANTS},
        out / "figures" / f"{args.name}_learning_curves.png", language="ja")
    if args.name in FIGURES_DRAWN:
        atomic_write_bytes(out / "figures" / f"{args.name}_reliability.png", FIGURES_DRAWN[args.name])
    write_json(out / "results" / f"{args.name}.json",
               {"preset": args.name, "data": Path(data_path).name, "baseline_overrides": BASELINE,
                "runs": [{k: v for k, v in r.items() if k != "history"} for r in runs]})
    print(summary_table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
