"""Prove that the pipeline reproduces: ``python -m goodfit.reprocheck`` (``make check-repro``).

Checks, in order:

a. ``dvc repro -f`` twice; every output hash in ``dvc.lock`` must be the same both
   times (same machine, same libraries: bit-for-bit). A difference names the stage
   and the file.
b. The committed ``dvc.lock`` must match what the current code, params and data
   produce. If a param hash or the hash of a dependency no stage produces (code, the
   datasets in data/raw) differs, the committed lock is stale (someone changed code,
   params or data without re-running the pipeline): failure. If only outputs differ,
   and the dependencies that are other stages' outputs with them, code, params and
   data are the same and this machine computed other low-order float bits:
   *another machine's numerics*
   (a GPU, ``repro.portable: false``, or a CPU the portable kernels do not cover),
   and check (d) decides.
c. ``dvc status`` must be clean afterwards.
d. The test metrics (``test.*`` in ``reports/metrics.json``) must match the committed
   ones within ``--atol``. Epochs, the fit diagnosis and other numbers are not
   measurements of the model's quality: when the bits differ they are listed, not judged.

Exit code 0 when all pass, 1 otherwise; each failure is one line naming what differs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _lock_entries(lock_text: str) -> dict[tuple[str, str, str], str]:
    """``{(stage, kind, path): hash}`` for deps, outs and params of a dvc.lock text."""
    lock = yaml.safe_load(lock_text) or {}
    entries = {}
    for stage, body in (lock.get("stages") or {}).items():
        for kind in ("deps", "outs"):
            for item in body.get(kind) or []:
                entries[(stage, kind, item["path"])] = str(item.get("md5") or item.get("hash"))
        for file, values in (body.get("params") or {}).items():
            entries[(stage, "params", file)] = json.dumps(values, sort_keys=True)
    return entries


def diff_locks(before: str, after: str) -> list[tuple[str, str, str]]:
    """The ``(stage, kind, path)`` entries whose hashes differ between two dvc.lock texts."""
    a, b = _lock_entries(before), _lock_entries(after)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def classify_changes(before: str, after: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """Split the differences of two dvc.lock texts into ``(stale, numerics)``.

    *stale*: a param, or a dependency that no stage produces (code, the user's data),
    differs: the committed lock does not belong to this code, these params or this data.
    *numerics*: an output differs, or a dependency that is another stage's output
    (``models/model.pt`` for evaluate, ``data/split/train.npz`` inside ``data/split``):
    the same inputs computed other bits.
    """
    produced = {path for (_, kind, path) in _lock_entries(after) if kind == "outs"}
    produced |= {path for (_, kind, path) in _lock_entries(before) if kind == "outs"}

    def is_produced(path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in produced)

    stale, numerics = [], []
    for entry in diff_locks(before, after):
        _, kind, path = entry
        (numerics if kind == "outs" or (kind == "deps" and is_produced(path)) else stale).append(entry)
    return stale, numerics


def _numbers(obj: Any, prefix: str = "") -> dict[str, float]:
    if isinstance(obj, dict):
        out: dict[str, float] = {}
        for k, v in obj.items():
            out.update(_numbers(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return {prefix.rstrip("."): float(obj)}
    return {}


def compare_metrics(committed: dict, current: dict, atol: float, prefix: str = "test.") -> list[str]:
    """Lines describing every ``prefix`` number that differs by more than ``atol`` (or is missing)."""
    a, b = _numbers(committed), _numbers(current)
    problems = []
    for key in sorted(k for k in set(a) | set(b) if k.startswith(prefix)):
        if key not in a or key not in b:
            problems.append(f"{key}: present in only one of the committed and the reproduced metrics")
        elif abs(a[key] - b[key]) > atol:
            problems.append(f"{key}: committed {a[key]:.6g}, reproduced {b[key]:.6g} (|diff| > {atol:g})")
    return problems


def other_differences(committed: dict, current: dict, prefix: str = "test.") -> list[str]:
    """The numbers outside ``prefix`` that differ at all (epochs, diagnosis numbers): reported, not judged."""
    a, b = _numbers(committed), _numbers(current)
    return [f"{k} {a.get(k, 'missing')} -> {b.get(k, 'missing')}" for k in sorted(set(a) | set(b))
            if not k.startswith(prefix) and a.get(k) != b.get(k)]


def numerics_note(root: Path) -> str:
    """Why bits can differ here: the portable setting and this CPU, for the report's (b) line."""
    from goodfit.numerics import cpu_model, portable_from_params

    portable = portable_from_params(root / "params.yaml")
    how = ("repro.portable is true, so this CPU should have matched: please report it" if portable else
           "repro.portable is false: each CPU runs its own fastest kernels")
    return f"this CPU: {cpu_model()}; {how}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goodfit.reprocheck", description=__doc__.splitlines()[0])
    parser.add_argument("--atol", type=float, default=0.02,
                        help="absolute tolerance for the test metrics in reports/metrics.json (default 0.02)")
    parser.add_argument("--metrics", default="reports/metrics.json")
    args = parser.parse_args(argv)
    root = Path(_run(["git", "rev-parse", "--show-toplevel"], Path.cwd()).stdout.strip() or ".")
    committed_lock = _run(["git", "show", "HEAD:dvc.lock"], root).stdout
    committed_metrics = _run(["git", "show", f"HEAD:{args.metrics}"], root).stdout
    failures: list[str] = []

    locks = []
    for attempt in (1, 2):
        print(f"[repro] dvc repro -f (run {attempt} of 2) ...", flush=True)
        result = _run(["dvc", "repro", "-f"], root)
        if result.returncode != 0:
            print(result.stdout[-3000:] + result.stderr[-3000:])
            print(f"FAIL: dvc repro -f exited {result.returncode}")
            return 1
        locks.append((root / "dvc.lock").read_text())
    for stage, kind, path in diff_locks(locks[0], locks[1]):
        failures.append(f"(a) not reproducible: stage '{stage}' {kind[:-1]} '{path}' differs between two runs")
    if not failures:
        print("(a) ok: two dvc repro -f runs gave identical dvc.lock hashes")

    bitwise = True
    if not committed_lock:
        failures.append("(b) there is no committed dvc.lock; run dvc repro and commit dvc.lock")
    else:
        stale, numerics = classify_changes(committed_lock, locks[1])
        for stage, kind, path in stale:
            failures.append(f"(b) committed dvc.lock is stale: stage '{stage}' {kind} '{path}' changed; "
                            "run dvc repro and commit dvc.lock and reports/")
        if numerics and not stale:
            bitwise = False
            outs = ", ".join(sorted({p for _, _, p in numerics}))
            print(f"(b) another machine's numerics: outputs differ bit-wise from the committed dvc.lock ({outs}) "
                  f"while code, params and data match ({numerics_note(root)}); the test metrics decide: see (d)")
        elif not numerics and not stale:
            print("(b) ok: the committed dvc.lock matches bit-for-bit")

    status = _run(["dvc", "status", "--json"], root)
    if status.returncode != 0 or json.loads(status.stdout or "{}"):
        failures.append(f"(c) dvc status is not clean after the runs: {status.stdout.strip() or status.stderr.strip()}")
    else:
        print("(c) ok: dvc status is clean")

    current_metrics = (root / args.metrics).read_text()
    if not committed_metrics:
        failures.append(f"(d) {args.metrics} is not committed; commit it")
    else:
        before, after = json.loads(committed_metrics), json.loads(current_metrics)
        problems = compare_metrics(before, after, args.atol)
        failures += [f"(d) {p}" for p in problems]
        if not problems:
            note = "identical" if committed_metrics == current_metrics else f"within tolerance (atol {args.atol:g})"
            print(f"(d) ok: test metrics {note}")
        others = other_differences(before, after)
        if others:
            print("(d) not compared (not measurements of the model): " + "; ".join(others))
    if failures:
        print("\n".join(f"FAIL {f}" for f in failures))
        return 1
    print("reproducibility: " + ("bit-for-bit" if bitwise else
                                 "another machine's numerics, test metrics within tolerance"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
