"""Same bits on other CPUs? A shortened pipeline natively and under qemu-user's CPU models, hashes compared.

Runs the stage bodies of split, augment, train and evaluate (the stage scripts'
own ``body`` functions, with MLflow logging left out: an emulated MLflow start-up
takes minutes and writes nothing DVC tracks) in scratch copies of the project
with a shortened config (1 augmented copy, 3 epochs), once natively and once per
emulated CPU (``qemu-x86_64 -cpu MODEL``, Debian's ``qemu-user``), each with
``repro.portable`` on and off, and prints the SHA-256 of every output.

Under emulation the split is computed there too; the augmented file is copied
from the native run, because qemu 7.2 returns NaN from the AVX2 gathers of
``grid_sample`` (a different count each run), an emulator fault no real CPU shows.

    apt-get install qemu-user                       # once
    python benchmarks/cross_cpu.py                  # Haswell (Intel, AVX2) and EPYC (AMD, AVX2): ~10 min
    python benchmarks/cross_cpu.py --cpus Haswell --settings on
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("data/split/train.npz", "data/split/meta.json", "data/augmented/train.npz", "models/model.pt",
           "reports/train/history.csv", "reports/metrics.json", "reports/figures/learning_curve.png")


class _NoTracking:
    """Stands in for the MLflow stage run: these checks compare DVC outputs only."""

    def log_metrics(self, *args, **kwargs):
        pass

    def log_artifact(self, *args, **kwargs):
        pass

    def set_tags(self, *args, **kwargs):
        pass

    def log_model(self, *args, **kwargs):
        return {}

    def model_id(self, *args, **kwargs):
        return None


def worker(stages: list[str]) -> None:
    """Run ``stages`` in the current folder (a scratch project), pinned as its params say."""
    sys.path.insert(0, str(Path.cwd() / "stages"))
    from goodfit.numerics import pin, portable_from_params

    pin(portable_from_params("params.yaml"))
    import torch

    from goodfit.params import load_params

    params = load_params("params.yaml")
    print(f"ATen capability {torch.backends.cpu.get_cpu_capability()}", flush=True)
    for stage in stages:
        spec = importlib.util.spec_from_file_location(f"stage_{stage}", f"stages/{stage}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.body(params, _NoTracking())


def scratch_project(dest: Path, portable: bool) -> Path:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    from ruamel.yaml import YAML

    y = YAML()
    params = y.load((dest / "params.yaml").read_text())
    params["augment"]["copies"], params["augment"]["gallery_variants"] = 1, 2
    params["train"]["max_epochs"] = 3
    params["repro"]["portable"] = portable
    with (dest / "params.yaml").open("w") as fh:
        y.dump(params, fh)
    return dest


def run(where: Path, stages: list[str], cpu: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATEN_", "ONEDNN_", "DNNL_", "MKL_CBWR",
                                                                     "NPY_", "OPENBLAS_CORETYPE"))}
    env["MPLBACKEND"] = "Agg"
    cmd = ([] if cpu is None else ["qemu-x86_64", "-cpu", cpu]) + [sys.executable, __file__, "--worker", *stages]
    done = subprocess.run(cmd, cwd=where, env=env, capture_output=True, text=True)
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if "TCG doesn't support" not in ln]
    if done.returncode != 0:
        return f"failed ({done.returncode}): " + " | ".join(lines[-3:])
    return next((ln for ln in lines if ln.startswith("ATen capability")), "")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "-"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpus", nargs="+", default=["Haswell", "EPYC"], help="qemu CPU models to emulate")
    ap.add_argument("--settings", nargs="+", choices=["on", "off"], default=["on", "off"],
                    help="repro.portable values to run")
    ap.add_argument("--jobs", type=int, default=2, help="emulated runs at a time")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    if shutil.which("qemu-x86_64") is None:
        print("qemu-x86_64 not found: apt-get install qemu-user", file=sys.stderr)
        return 2
    from goodfit.numerics import cpu_model

    base = Path(tempfile.mkdtemp(prefix="goodfit-cross-cpu-"))
    rows: list[tuple[str, str, Path, str]] = []
    jobs = []
    for setting in args.settings:
        native = scratch_project(base / f"native-{setting}", setting == "on")
        note = run(native, ["split", "augment", "train", "evaluate"], None)
        rows.append((f"native: {cpu_model()}", setting, native, note))
        for cpu in args.cpus:
            where = base / f"{cpu}-{setting}"
            shutil.copytree(native, where)
            for out in OUTPUTS:
                if not out.startswith("data/augmented"):
                    (where / out).unlink(missing_ok=True)
            jobs.append((f"qemu -cpu {cpu}", setting, where))
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        notes = list(pool.map(lambda j: run(j[2], ["split", "train", "evaluate"], j[0].split()[-1]), jobs))
    rows += [(name, setting, where, note) for (name, setting, where), note in zip(jobs, notes)]
    for setting in args.settings:
        print(f"\nrepro.portable: {setting == 'on'}")
        for name, s, where, note in rows:
            if s == setting:
                print(f"  {name} ({note})")
                print("    " + "  ".join(f"{'/'.join(Path(o).parts[-2:])} {digest(where / o)}" for o in OUTPUTS))
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
