"""Data-parallel training on the CPU: the train stage with ``train.processes`` 1 and 2 (gloo), side by side.

    python benchmarks/bench_processes.py --seeds 0 1 2 --epochs 20 [--figure docs/figures/processes_learning_curves.png]

Per seed, split and augment run once in a scratch folder (the default pipeline's params.yaml,
digits unless ``--source`` says otherwise); then the train stage script runs with
``train.processes: 1`` and ``2``, alternately (ABBA over the seeds), each for exactly
``--epochs`` epochs (early stopping's patience set past them, so both do the same work). Prints
per run the stage's wall time (launch, imports and MLflow included) and the training rows per
second it comes to, the medians per setting, and how far the validation-loss curves of the two
settings lie apart against how far the seeds' curves lie apart within one setting (seed noise).
``--figure`` draws both settings' learning curves, one line pair per seed. Nothing is chosen
here and the test split is not read.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import conditions, median  # noqa: E402

SETTINGS = (1, 2)


def write_params(folder: Path, *, seed: int, epochs: int, processes: int, source: str) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["seed"] = seed
    params["data"]["source"] = source
    params["train"].update(max_epochs=epochs, processes=processes)
    params["early_stopping"].update(patience=epochs + 1, verbose=False)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def stage(name: str, folder: Path, env: dict) -> float:
    start = time.perf_counter()
    with open(folder / f"{name}.log", "wb") as log:
        code = subprocess.run([sys.executable, str(ROOT / "stages" / f"{name}.py")], cwd=folder, env=env,
                              stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"{folder}: stage {name} failed (exit {code}); see {folder / (name + '.log')}")
    return time.perf_counter() - start


def history(folder: Path) -> list[dict]:
    rows = csv.DictReader(io.StringIO((folder / "reports/train/history.csv").read_text()))
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items()} for r in rows]


def run(seeds: list[int], epochs: int, source: str, work: Path) -> list[dict]:
    runs = []
    for i, seed in enumerate(seeds):
        base = work / f"seed{seed}"
        base.mkdir(parents=True)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}", "MPLBACKEND": "Agg"}
        write_params(base, seed=seed, epochs=epochs, processes=1, source=source)
        for name in ("split", "augment"):
            stage(name, base, env)
        for processes in SETTINGS if i % 2 == 0 else reversed(SETTINGS):
            folder = work / f"seed{seed}-p{processes}"
            shutil.copytree(base / "data", folder / "data")
            write_params(folder, seed=seed, epochs=epochs, processes=processes, source=source)
            seconds = stage("train", folder, {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"})
            summary = json.loads((folder / "reports/train/summary.json").read_text())
            runs.append({"seed": seed, "processes": processes, "seconds": seconds, "n_train": summary["n_train"],
                         "epochs": summary["stopped_epoch"], "best_val_loss": summary["best_val_loss"],
                         "best_epoch": summary["best_epoch"], "history": history(folder)})
    return runs


def curve_gaps(runs: list[dict]) -> dict:
    """Largest |val_loss| gap per epoch between the settings (same seed) and between seeds (same setting)."""
    curves = {(r["processes"], r["seed"]): np.array([h["val_loss"] for h in r["history"]]) for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    between = max(float(np.abs(curves[(1, s)] - curves[(2, s)]).max()) for s in seeds)
    within = {p: max(float(np.abs(curves[(p, a)] - curves[(p, b)]).max()) for a in seeds for b in seeds if a < b)
              if len(seeds) > 1 else float("nan") for p in SETTINGS}
    return {"processes_1_vs_2": between, "seeds_within_1": within[1], "seeds_within_2": within[2]}


def report(runs: list[dict]) -> str:
    lines = ["| train.processes | seed | wall s | training rows / s | best epoch | best val_loss |",
             "|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["processes"], r["seed"])):
        rate = r["n_train"] * r["epochs"] / r["seconds"]
        lines.append(f"| {r['processes']} | {r['seed']} | {r['seconds']:.1f} | {rate:.0f} | {r['best_epoch']} "
                     f"| {r['best_val_loss']:.4f} |")
    for p in SETTINGS:
        mine = [r for r in runs if r["processes"] == p]
        lines.append(f"median, {p} process{'es' if p > 1 else ''}: {median([r['seconds'] for r in mine]):.1f} s, "
                     f"{median([r['n_train'] * r['epochs'] / r['seconds'] for r in mine]):.0f} rows / s")
    gaps = curve_gaps(runs)
    lines.append(f"largest val_loss gap at one epoch: 1 vs 2 processes (same seed) {gaps['processes_1_vs_2']:.4f}; "
                 f"between seeds, 1 process {gaps['seeds_within_1']:.4f}, 2 processes {gaps['seeds_within_2']:.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--source", default="digits", help="data.source needing no files: digits | breast_cancer")
    parser.add_argument("--figure", type=Path, help="write both settings' learning curves to this PNG")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    print(conditions(threads=1), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = run(args.seeds, args.epochs, args.source, Path(tmp))
    print(report(runs))
    if args.figure:
        from goodfit.plots import learning_curve_comparison

        panels = {f"train.processes: {p}" + (" (gloo, 2 ランク)" if p > 1 else ""):
                  [r["history"] for r in sorted(runs, key=lambda r: r["seed"]) if r["processes"] == p]
                  for p in SETTINGS}
        learning_curve_comparison(panels, args.figure, title=f"{args.source}: 1 プロセスと 2 プロセスの学習曲線 "
                                  f"(シード {', '.join(map(str, args.seeds))})")
        print(f"figure: {args.figure}")
    print(json.dumps([{k: v for k, v in r.items() if k != "history"} for r in runs], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
