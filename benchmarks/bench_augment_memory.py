"""Peak memory of the augment stage on a large image set (default: 50,000 x 128 x 128, 10 copies).

Writes a synthetic train split (random grayscale images, 3.3 GB of float32) into
a scratch project, runs the real ``stages/augment.py`` on it in a child process
and reads the child's peak resident memory (``ru_maxrss`` from ``wait4``). The
output (550,000 images, 36 GB) is written in full, then the scratch folder is
deleted. Needs about 40 GB of free disk in ``--workdir``.

    python benchmarks/bench_augment_memory.py
    python benchmarks/bench_augment_memory.py --images 5000      # a quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from goodfit.io import dumps_json, write_npz, write_npz_streamed  # noqa: E402

GIB = 1024**3


def write_split(folder: Path, n: int, size: int, chunk: int = 2048) -> None:
    """A synthetic image train split written chunk by chunk (never whole in memory)."""
    rng = np.random.default_rng(0)
    y = (np.arange(n) % 2).astype(np.int64)
    chunks = (rng.random((min(chunk, n - s), 1, size, size), dtype=np.float32) for s in range(0, n, chunk))
    write_npz_streamed(folder / "train.npz", {"y": y}, {"x": ((n, 1, size, size), chunks)})
    small = rng.random((20, 1, size, size), dtype=np.float32)
    for name in ("val", "test"):
        write_npz(folder / f"{name}.npz", x=small, y=(np.arange(20) % 2).astype(np.int64))
    counts = {"total": n, "per_class": [n - n // 2, n // 2]}
    meta = {"modality": "image", "class_names": ["a", "b"], "n_classes": 2, "input_shape": [1, size, size],
            "feature_names": [], "source": "synthetic", "split_strategy": "stratified", "seed": 0,
            "counts": {"train": counts, "val": {"total": 20, "per_class": [10, 10]},
                       "test": {"total": 20, "per_class": [10, 10]}},
            "normalization": {"mean": [0.5], "std": [0.29]}}
    (folder / "meta.json").write_text(dumps_json(meta))


def run_child(cmd: list[str], cwd: Path, env: dict) -> tuple[int, float, float, str]:
    """Run ``cmd``; returns (exit code, wall seconds, peak RSS in bytes, output)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        out = log.read().decode(errors="replace")
    return proc.returncode, time.perf_counter() - start, usage.ru_maxrss * 1024.0, out  # ru_maxrss: KiB on Linux


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--chunk-size", type=int, default=2048, help="augment.chunk_size")
    ap.add_argument("--limit-gib", type=float, default=4.0)
    ap.add_argument("--workdir", default=None, help="where the scratch project goes (default: the temp folder)")
    args = ap.parse_args(argv)
    input_bytes = args.images * args.size**2 * 4
    output_bytes = input_bytes * (args.copies + 1)
    work = Path(tempfile.mkdtemp(prefix="goodfit-bench-", dir=args.workdir))
    free = shutil.disk_usage(work).free
    if free < (input_bytes + output_bytes) * 1.05:
        shutil.rmtree(work)
        print(f"error: {work.parent} has {free / GIB:.1f} GiB free; this benchmark writes "
              f"{(input_bytes + output_bytes) / GIB:.1f} GiB. Pass --workdir on a larger disk or fewer --images.",
              file=sys.stderr)
        return 2
    try:
        (work / "data" / "split").mkdir(parents=True)
        t0 = time.perf_counter()
        write_split(work / "data" / "split", args.images, args.size)
        print(f"input: {args.images} images of {args.size}x{args.size} float32 = {input_bytes / GIB:.2f} GiB "
              f"(written in {time.perf_counter() - t0:.0f} s)")
        (work / "params.yaml").write_text(
            f"seed: 0\naugment:\n  copies: {args.copies}\n  chunk_size: {args.chunk_size}\n"
            "  image: {hflip: 0.5}\nreport: {language: en}\n")
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "MPLBACKEND": "Agg"}
        code, wall, peak, out = run_child([sys.executable, str(ROOT / "stages" / "augment.py")], work, env)
        if code != 0:
            print(out, file=sys.stderr)
            print(f"error: the augment stage failed with exit code {code}", file=sys.stderr)
            return 1
        written = (work / "data" / "augmented" / "train.npz").stat().st_size
        rows = args.images * (args.copies + 1)
        print(out.strip().splitlines()[-1])
        print(f"augment stage: {rows} rows, {written / GIB:.1f} GiB written in {wall:.0f} s "
              f"({args.images * args.copies / wall:,.0f} augmented images/s including start-up and writing)")
        print(f"peak RSS of the stage process: {peak / GIB:.2f} GiB (input alone {input_bytes / GIB:.2f} GiB, "
              f"output {output_bytes / GIB:.1f} GiB)")
        ok = peak < args.limit_gib * GIB
        print(f"augment memory {args.size}px: peak RSS {peak / GIB:.2f} GiB for {args.images} images x "
              f"{args.copies} copies, {'under' if ok else 'OVER'} the {args.limit_gib:g} GiB limit (1 run)")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
