"""Compact storage on real data: bytes on disk, peak memory, time and test metrics of the BreastMNIST
preset with ``data.storage: float32`` (four bytes a value, as goodfit stored every split before) and
``auto`` (8-bit images stay uint8 in data/split and data/augmented, augmented copies rounded to the
nearest level).

    python benchmarks/bench_storage.py --data-path path/to/breastmnist.npz --seeds 0 1 2 --jobs 2

Each run is the preset's pipeline, the four stage scripts in a scratch folder exactly as
``benchmarks/presets.py`` runs them (its scratch folders), with ``data.storage`` set. Prints, per
setting, the bytes of data/split and data/augmented (the DVC cache holds another copy of each unless
``cache.type`` links them, README), each stage's wall time and peak resident memory (the stage
process's own, from ``wait4``), and the test accuracy and ROC AUC per seed with their mean ± sd.
The test split is scored once per run, as the pipeline always does; nothing here chooses anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import presets  # noqa: E402

SETTINGS = ("float32", "auto")
DATA_DIRS = ("data/split", "data/augmented")


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_stage(stage: str, folder: Path, env: dict) -> dict:
    """One stage script as its own process: wall seconds and the process's peak RSS (MiB)."""
    start = time.perf_counter()
    with open(folder / f"{stage}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "stages" / f"{stage}.py")], cwd=folder, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{folder}: stage {stage} failed; see {folder / (stage + '.log')}")
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": usage.ru_maxrss / 1024}


def run_once(setting: str, seed: int, data_path: str, work: Path) -> dict:
    folder = presets.run_stages("breastmnist", "preset", seed, data_path, work / setting,
                                {"data": {"storage": setting}}, stages=())
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}", "MPLBACKEND": "Agg"}
    stages = {stage: run_stage(stage, folder, env) for stage in presets.STAGES}
    metrics = json.loads((folder / "reports/metrics.json").read_text())
    return {"setting": setting, "seed": seed, "stages": stages,
            "bytes": {d: folder_bytes(folder / d) for d in DATA_DIRS},
            "test": {k: metrics["test"][k] for k in ("accuracy", "roc_auc")},
            "best_epoch": metrics["best_epoch"]}


def report(runs: list[dict]) -> str:
    lines = ["| data.storage | data/split | data/augmented | split / augment / train / evaluate: s (peak RSS MiB) "
             "| test accuracy | test ROC AUC |", "|---|---|---|---|---|---|"]
    for setting in SETTINGS:
        rows = sorted((r for r in runs if r["setting"] == setting), key=lambda r: r["seed"])
        first = rows[0]
        stages = " / ".join(
            f"{np.mean([r['stages'][s]['seconds'] for r in rows]):.1f} "
            f"({max(r['stages'][s]['peak_rss_mib'] for r in rows):.0f})" for s in presets.STAGES)
        acc = np.array([r["test"]["accuracy"] for r in rows])
        auc = np.array([r["test"]["roc_auc"] for r in rows])
        sd = (lambda a: f" ± {a.std(ddof=1):.4f}" if len(a) > 1 else "")
        lines.append(f"| {setting} | {first['bytes']['data/split'] / 2**20:.2f} MiB "
                     f"| {first['bytes']['data/augmented'] / 2**20:.2f} MiB | {stages} "
                     f"| {acc.mean():.4f}{sd(acc)} ({', '.join(f'{v:.4f}' for v in acc)}) "
                     f"| {auc.mean():.4f}{sd(auc)} ({', '.join(f'{v:.4f}' for v in auc)}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-path", required=True, help="breastmnist.npz (MedMNIST v2, 28 px)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="pipelines run at once (each uses train.threads)")
    args = parser.parse_args(argv)
    data_path = str(Path(args.data_path).resolve())
    if not Path(data_path).is_file():
        parser.error(f"--data-path {args.data_path} is not a file; pass the BreastMNIST .npz (breastmnist.npz)")
    presets.SEEDS_DRAWN[:] = args.seeds
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(setting, seed) for setting in SETTINGS for seed in args.seeds]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            runs = list(pool.map(lambda job: run_once(*job, data_path, Path(tmp)), jobs))
    print(report(runs))
    print(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
