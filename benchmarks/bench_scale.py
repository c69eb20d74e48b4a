"""How goodfit grows with the data: split -> augment -> train on 10,000, 30,000 and 100,000 grayscale
128 x 128 images, with the wall time, the peak resident memory and the bytes on disk of each stage.

    python benchmarks/bench_scale.py                       # 10,000 / 30,000 / 100,000 images
    python benchmarks/bench_scale.py --sizes 2000 --epochs 1 --work /tmp/scale   # a quick look

For each size it writes a MedMNIST-format ``.npz`` of synthetic 8-bit images (two classes:
a bright disc or a bright square at a random place, on noise; 80 / 10 / 10 official
split), copies the project into a fresh git + DVC repository beside it, and runs
``dvc repro -s split``, ``-s augment`` (``augment.copies``, 4 by default) and ``-s train``
(``--epochs`` epochs, 2 by default; early stopping off; a CNN with a strided first layer so the
training set's reading, not the arithmetic, is what grows) one at a time. Per stage it
prints the wall time of the ``dvc repro`` call (the stage and DVC's hashing and caching of
its outputs), the peak RSS of the largest process of that call (the stage script; from
``wait4``), and the bytes of ``data/`` and of the DVC cache afterwards. The training set is
read from disk when it is larger than ``train.memory_budget`` (``--memory-budget``, GiB;
default ``auto``).

Targets (issue of record in benchmarks/README.md): peak RSS of every stage under 6 GiB at
100,000 images; time and bytes growing linearly, within 15%, from 10,000 to 100,000.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from goodfit.io import write_npz_streamed  # noqa: E402

SIZE = 128
STAGES = ("split", "augment", "train")
SHARES = {"train": 0.8, "val": 0.1, "test": 0.1}


def synthetic_images(n: int, seed: int, chunk: int = 2048):
    """``n`` images (uint8, ``(n, 128, 128)``) and labels, generated a chunk at a time: class 0 a disc,
    class 1 a square, each of random size and place, on noise."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    labels = np.random.default_rng([seed, 0]).integers(0, 2, n)

    def chunks():
        for start in range(0, n, chunk):
            rng = np.random.default_rng([seed, 1, start])
            m = min(chunk, n - start)
            img = rng.normal(60, 20, (m, SIZE, SIZE))
            cy, cx = rng.uniform(32, 96, (2, m, 1, 1))
            r = rng.uniform(10, 24, (m, 1, 1))
            square = labels[start:start + m, None, None] == 1
            shape = np.where(square, (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r),
                             (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2)
            img[shape] += 120
            yield np.clip(img, 0, 255).astype(np.uint8)

    return labels, chunks


def write_dataset(path: Path, n: int, seed: int = 0) -> None:
    """A MedMNIST-format ``.npz`` of ``n`` images, 80 / 10 / 10 official split; the training images are
    streamed to the file a chunk at a time."""
    counts = {"val": n // 10, "test": n // 10}
    counts["train"] = n - counts["val"] - counts["test"]
    arrays, streamed = {}, {}
    for k, (split, m) in enumerate(counts.items()):
        labels, chunks = synthetic_images(m, seed + 1000 * k)
        arrays[f"{split}_labels"] = labels[:, None].astype(np.uint8)
        if split == "train":
            streamed["train_images"] = ((m, SIZE, SIZE), chunks(), np.uint8)
        else:
            arrays[f"{split}_images"] = np.concatenate(list(chunks()))
    write_npz_streamed(path, arrays, streamed)


def sh(cmd: list[str], cwd: Path, env: dict) -> None:
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)


def make_repo(folder: Path, data: Path, args) -> dict:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, folder / rel)
    (folder / "dvc.lock").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["MPLBACKEND"] = "Agg"
    sets = ["data.source=medmnist", f"data.path={data}", f"augment.copies={args.copies}",
            "augment.gallery_variants=2", "train.model=cnn", "train.channels=[8,16]", "train.hidden=[16]",
            f"train.max_epochs={args.epochs}", "train.batch_size=256", f"train.memory_budget={args.memory_budget}",
            f"early_stopping.patience={args.epochs + 1}", "evaluate.bootstrap=100"]
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "config", "user.email", "bench@localhost"],
                ["git", "config", "user.name", "bench"], ["git", "add", "-A"], ["git", "commit", "-qm", "project"]):
        sh(cmd, folder, env)
    set_params(folder / "params.yaml", sets)
    return env


def set_params(path: Path, assignments: list[str]) -> None:
    """``key=value`` assignments (value as YAML) into params.yaml, keeping its comments."""
    import yaml
    from ruamel.yaml import YAML

    y = YAML()
    data = y.load(path.read_text())
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[last] = yaml.safe_load(value)
    with path.open("w") as fh:
        y.dump(data, fh)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def run_stage(stage: str, folder: Path, env: dict) -> dict:
    start = time.perf_counter()
    with open(folder / f"{stage}.log", "wb") as log:
        proc = subprocess.Popen(["dvc", "repro", "-s", stage], cwd=folder, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{folder}: dvc repro -s {stage} failed; see {folder / (stage + '.log')}")
    return {"seconds": time.perf_counter() - start, "peak_rss_gib": usage.ru_maxrss / 2**20,
            "data_gib": folder_bytes(folder / "data") / 2**30,
            "cache_gib": folder_bytes(folder / ".dvc" / "cache") / 2**30}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--memory-budget", default="auto", help="train.memory_budget (GiB, or auto)")
    parser.add_argument("--work", default=None, help="a folder for the data and repositories (deleted per size "
                                                     "afterwards unless --keep); default: a temporary folder")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    import tempfile

    base = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="goodfit-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"machine: {_cpu()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    print("| images | stage | wall s | s per 1,000 images | peak RSS GiB | data/ GiB | DVC cache GiB |")
    print("|---|---|---|---|---|---|---|")
    results = {}
    for n in args.sizes:
        folder = base / f"scale-{n}"
        folder.mkdir()
        data = base / f"images-{n}.npz"
        write_dataset(data, n)
        env = make_repo(folder, data, args)
        for stage in STAGES:
            r = results[(n, stage)] = run_stage(stage, folder, env)
            print(f"| {n:,} | {stage} | {r['seconds']:.1f} | {1000 * r['seconds'] / n:.2f} | {r['peak_rss_gib']:.2f} "
                  f"| {r['data_gib']:.2f} | {r['cache_gib']:.2f} |", flush=True)
        if not args.keep:
            shutil.rmtree(folder)
            data.unlink()
    for line in growth(results, args.sizes):
        print(line)
    return 0


def growth(results: dict, sizes) -> list[str]:
    """Per stage, how time and data/ grew from the smallest size to the largest, and what each further
    1,000 images cost between consecutive sizes: equal costs are linear growth on top of a fixed
    start-up (imports, DVC's own work), which the ratio from smallest to largest also holds."""
    sizes = sorted(sizes)
    if len(sizes) < 2:
        return []
    lo, hi, lines = sizes[0], sizes[-1], []
    for stage in STAGES:
        a, b = results[(lo, stage)], results[(hi, stage)]
        lines.append(f"{stage}: from {lo:,} to {hi:,} images, time x{b['seconds'] / a['seconds']:.2f}, "
                     f"data/ x{b['data_gib'] / max(a['data_gib'], 1e-12):.2f} (linear: x{hi / lo:.2f})")
        steps = []
        for k, m in zip(sizes, sizes[1:]):
            dt = 1000 * (results[(m, stage)]["seconds"] - results[(k, stage)]["seconds"]) / (m - k)
            dd = 1000 * 1024 * (results[(m, stage)]["data_gib"] - results[(k, stage)]["data_gib"]) / (m - k)
            steps.append(f"{k:,}->{m:,}: {dt:.2f} s, {dd:.1f} MiB of data/")
        lines.append(f"{stage}: each further 1,000 images " + ", ".join(steps))
    return lines


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
