"""Pipeline overhead: a no-change ``dvc repro``, ``dvc exp show`` and each stage's start-up imports.

Runs in the project root. The first ``dvc repro`` brings the pipeline up to date
(it runs the stages only if something changed); then each command is timed
``--runs`` times, alternately, and must report that nothing changed. Stage
start-up: a fresh interpreter imports the goodfit modules the stage script
imports (read from its source) and reports the time and which heavy libraries
that pulled in; ``mlflow.tracking``, which every stage loads when its run opens,
is timed on its own. Libraries imported only inside the functions that need them
(matplotlib for figures, scikit-learn for data and metrics) load later.

    python benchmarks/bench_pipeline.py
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt_times, interleaved, median  # noqa: E402

HEAVY = ("torch", "mlflow", "matplotlib", "sklearn", "pandas", "scipy")
LIMIT_S = 3.0


def sh(cmd: str) -> str:
    out = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"error: `{cmd}` failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


def stage_imports(stage: str) -> list[str]:
    """The goodfit modules ``stages/<stage>.py`` imports, at module level or in its functions."""
    tree = ast.parse((ROOT / "stages" / f"{stage}.py").read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("goodfit"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                mods.add(sub if (ROOT / (sub.replace(".", "/") + ".py")).exists() else node.module)
        elif isinstance(node, ast.Import):
            mods.update(a.name for a in node.names if a.name.startswith("goodfit"))
    return sorted(mods)


def import_probe(modules: list[str]) -> tuple[float, list[str]]:
    code = ("import importlib, sys, time\nt = time.perf_counter()\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(time.perf_counter() - t)\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    seconds, heavy = (out.stdout.splitlines() + [""])[:2]
    return float(seconds), [m for m in heavy.split(",") if m]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    print(f"conditions: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start")
    sh("dvc repro")  # bring outputs up to date; afterwards nothing may change
    results = {}

    def check(cmd, expect):
        def run(_):
            out = sh(cmd)
            if expect not in out:
                raise SystemExit(f"error: `{cmd}` did not say {expect!r}; something changed:\n{out}")
        return run

    times = interleaved({
        "dvc repro (no change)": check("dvc repro", "Data and pipelines are up to date."),
        "dvc exp show": check("COLUMNS=400 dvc exp show --no-pager", "workspace"),  # a wide table, not truncated
        "dvc status": check("dvc status", "Data and pipelines are up to date."),
        "python -c pass (interpreter start)": lambda _: sh(f"{sys.executable} -c pass"),
    }, args.runs)
    for name, values in times.items():
        results[name] = median(values)
        print(f"{name}: {fmt_times(values)}, median {results[name]:.2f} s")
    probes = [import_probe(["mlflow.tracking"]) for _ in range(args.runs)]
    print(f"mlflow.tracking (every stage logs; imported when its run opens): median "
          f"{median([p[0] for p in probes]):.2f} s; heavy libraries loaded: {', '.join(probes[-1][1])}")
    for stage in ("split", "augment", "train", "evaluate"):
        modules = stage_imports(stage)
        probes = [import_probe(modules) for _ in range(args.runs)]
        print(f"stage {stage} start-up imports: median {median([p[0] for p in probes]):.2f} s "
              f"({', '.join(modules)}); heavy libraries loaded: {', '.join(probes[-1][1]) or 'none'}")
    worst = max(results["dvc repro (no change)"], results["dvc exp show"])
    print(f"pipeline overhead: no-change dvc repro {results['dvc repro (no change)']:.2f} s, dvc exp show "
          f"{results['dvc exp show']:.2f} s, {'both under' if worst < LIMIT_S else 'NOT under'} {LIMIT_S:g} s "
          f"(median of {args.runs})")
    return 0 if worst < LIMIT_S else 1


if __name__ == "__main__":
    sys.exit(main())
