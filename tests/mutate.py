"""``make mutate``: mutation testing of goodfit's core modules with mutmut, one module at a time.

Each module in :data:`SCOPE` is mutated in a scratch copy of the project under
``.mutmut/<module>/`` (git-ignored): the copy's ``pyproject.toml`` is this one with
``[tool.mutmut]`` narrowed to that module and its own test files, so a mutant runs
only those of its module's tests that call the mutated function (mutmut records which
tests call which function in a first, clean run). Where only part of a module is in
scope, only the mutants of the listed functions are run.

A surviving mutant that cannot change behaviour is listed, with the reason, in
``docs/mutation.md`` (the table's rows name the module and the mutant); it counts as
equivalent, not as survived. The per-module counts are printed, written to
``.mutmut/summary.json``, and the diffs of the surviving mutants to
``.mutmut/survivors.txt``. Exits 1 when a module's score, killed (with timeouts) over
its non-equivalent mutants, is below :data:`MIN_SCORE`.

Usage: ``python tests/mutate.py [MODULE ...]`` (default: every module in :data:`SCOPE`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutmut"
EQUIVALENT_LIST = ROOT / "docs" / "mutation.md"
MIN_SCORE = 0.9
PROPERTIES = "tests/test_properties.py"


@dataclass(frozen=True)
class Scope:
    """What to mutate in one module and which test files may kill its mutants."""

    tests: tuple[str, ...]
    functions: tuple[str, ...] | None = None  # None: every function; "Class.method" for methods
    deselect: tuple[str, ...] = ()  # tests that run a stage script (the scratch copy has no stages/)


SCOPE = {
    "early_stopping": Scope(tests=("tests/test_early_stopping.py", PROPERTIES)),
    "evaluation": Scope(tests=("tests/test_evaluation.py",)),
    "uncertainty": Scope(tests=("tests/test_uncertainty.py", PROPERTIES)),
    "calibration": Scope(tests=("tests/test_calibration.py",)),
    "regularization": Scope(tests=("tests/test_regularization.py",)),
    # the fit loop's batching and shuffling
    "training": Scope(tests=("tests/test_training.py", "tests/test_streaming.py"),
                      functions=("_shuffled", "_gathered", "_train_epoch", "_train_step"),
                      deselect=("tests/test_streaming.py::"
                                "test_train_stage_on_a_small_budget_reads_from_disk_with_the_same_outputs",
                                "tests/test_streaming.py::test_a_cross_validation_ensemble_that_does_not_fit_is_refused")),
    # the per-sample parameter draws and the chunking that must not change them
    "augment": Scope(tests=("tests/test_augment.py", PROPERTIES),
                     functions=("image_transform_params", "augment_series_batch", "augment_tabular_batch",
                                "Augmenter.__init__", "Augmenter.batch", "Augmenter.iter_chunks", "val_seed")),
    "splitting": Scope(tests=("tests/test_splitting.py", "tests/test_storage.py", PROPERTIES),
                       deselect=tuple(f"tests/test_storage.py::{name}" for name in (
                           "test_a_split_file_whose_dtype_disagrees_with_meta_is_refused",
                           "test_medmnist_pipeline_stores_levels_and_trains_as_the_float32_files_do",
                           "test_float16_storage_of_a_float_source"))),
}

KILLED = {1, 3, 37}  # a failing test, pytest's internal error, caught by the type check
TIMEOUT = {24, -24, 36, 152, 255}
SURVIVED = {0, 5, 33}  # tests passed; no test selected (5, 33: no test calls the function)


def mutant_glob(module: str, function: str) -> str:
    """mutmut's name for the mutants of ``function`` (``Class.method`` for a method) of ``goodfit.<module>``."""
    if "." in function:
        cls, method = function.split(".")
        return f"goodfit.{module}.x\u01c1{cls}\u01c1{method}__mutmut_*"
    return f"goodfit.{module}.x_{function}__mutmut_*"


def scratch_pyproject(module: str, scope: Scope) -> str:
    """This project's pyproject.toml with ``[tool.mutmut]`` narrowed to ``module`` and its tests."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    base = tomllib.loads(text)["tool"]["mutmut"]
    start = text.index("[tool.mutmut]")
    end = re.search(r"^\[", text[start + 1:], flags=re.M)
    rest = text[start + 1 + end.start():] if end else ""
    selection = [*scope.tests, *(f"--deselect={test}" for test in scope.deselect)]
    settings = {**base, "only_mutate": [f"goodfit/{module}.py"], "pytest_add_cli_args_test_selection": selection}
    lines = ["[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return text[:start] + "\n".join(lines) + "\n\n" + rest


def equivalent_mutants() -> dict[str, str]:
    """``{"goodfit.<module>.<mutant>": reason}`` from the table in docs/mutation.md."""
    found = {}
    for line in EQUIVALENT_LIST.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`goodfit.") and "__mutmut_" in cells[1]:
            found[f"{cells[0].strip('`')}.{cells[1].strip('`')}"] = cells[-1]
    return found


def run_module(module: str, scope: Scope, jobs: int) -> dict[str, int | None]:
    """Mutate ``module`` in its scratch copy; returns mutmut's exit code per mutant in scope."""
    work = WORK / module
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("goodfit", "tests"):
        shutil.copytree(ROOT / folder, work / folder, ignore=ignore)
    (work / "pyproject.toml").write_text(scratch_pyproject(module, scope), encoding="utf-8")
    names = [mutant_glob(module, f) for f in scope.functions] if scope.functions else []
    mutmut = Path(sys.executable).with_name("mutmut")
    with open(work / "mutmut.log", "w", encoding="utf-8") as log:
        done = subprocess.run([str(mutmut), "run", "--max-children", str(jobs), *names], cwd=work, stdout=log,
                              stderr=subprocess.STDOUT, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
                                                     "GOODFIT_HYPOTHESIS_PROFILE": "mutation"})
    meta = work / "mutants" / "goodfit" / f"{module}.py.meta"
    if done.returncode != 0 or not meta.exists():
        sys.exit(f"mutmut failed on goodfit/{module}.py (exit {done.returncode}); see {work / 'mutmut.log'}")
    codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    if scope.functions:
        pattern = re.compile("|".join(re.escape(g).replace(r"\*", ".*") for g in names))
        codes = {k: v for k, v in codes.items() if pattern.fullmatch(k)}
    return codes


def diff_of(module: str, mutant: str) -> str:
    shown = subprocess.run([str(Path(sys.executable).with_name("mutmut")), "show", mutant], cwd=WORK / module,
                           capture_output=True, text=True)
    return shown.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"any of {', '.join(SCOPE)} (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutants run at once")
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.modules) - set(SCOPE)):
        parser.error(f"unknown module {', '.join(unknown)}; choose from {', '.join(SCOPE)}")
    modules = args.modules or list(SCOPE)
    equivalent = equivalent_mutants()
    summary, survivors, started = {}, [], time.monotonic()
    for module in modules:
        t0 = time.monotonic()
        codes = run_module(module, SCOPE[module], args.jobs)
        counts = {"killed": 0, "survived": 0, "equivalent": 0, "timeout": 0, "not_run": 0}
        for name, code in sorted(codes.items()):
            if code in KILLED:
                counts["killed"] += 1
                if name in equivalent:
                    print(f"note: {name} is listed as equivalent in docs/mutation.md but was killed")
            elif code in TIMEOUT:
                counts["timeout"] += 1
            elif code in SURVIVED and name in equivalent:
                counts["equivalent"] += 1
            elif code in SURVIVED:
                counts["survived"] += 1
                survivors.append((module, name))
            else:  # not checked, segfault, suspicious
                counts["not_run"] += 1
                survivors.append((module, name))
        tested = len(codes) - counts["equivalent"]
        counts["score"] = round((counts["killed"] + counts["timeout"]) / tested, 4) if tested else 1.0
        counts["seconds"] = round(time.monotonic() - t0)
        summary[module] = counts
        print(f"goodfit/{module}.py: " + ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
    total = round(time.monotonic() - started)
    (WORK / "summary.json").write_text(json.dumps({"modules": summary, "seconds": total}, indent=2) + "\n")
    with open(WORK / "survivors.txt", "w", encoding="utf-8") as out:
        for module, name in survivors:
            out.write(f"# {name}\n{diff_of(module, name)}\n")
    print(f"\n{len(survivors)} surviving mutants (diffs: {WORK / 'survivors.txt'}); {total} s in all")
    low = [m for m, c in summary.items() if c["score"] < MIN_SCORE]
    if low:
        print(f"below {MIN_SCORE:.0%} of the non-equivalent mutants killed: {', '.join(low)}")
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
