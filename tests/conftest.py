"""Shared fixtures: every test logs to a temporary MLflow store, never the user's."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import Phase, settings

# Property-based tests (tests/test_properties.py) draw the same examples on every run and
# machine (derandomize: the draws follow from each test's name, no example database), so CI
# never fails on an example a previous run did not see; few examples keep the suite fast.
settings.register_profile("goodfit", derandomize=True, database=None, max_examples=25, deadline=None,
                          print_blob=False)
# `make mutate` only asks whether a property fails, not for the smallest failing example.
settings.register_profile("mutation", settings.get_profile("goodfit"),
                          phases=[Phase.explicit, Phase.reuse, Phase.generate], report_multiple_bugs=False)
settings.load_profile(os.environ.get("GOODFIT_HYPOTHESIS_PROFILE", "goodfit"))

# A test run started in the background by a shell without job control (`cmd &`, nohup) inherits
# SIGINT ignored; Python then installs no KeyboardInterrupt handler, and every process the tests
# start inherits the ignored signal, so the Ctrl-C tests would see nothing. Restore Python's own
# handler: processes started from here then get SIGINT's default, as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _temporary_mlflow_store(tmp_path, monkeypatch):
    """Point MLflow at a throw-away SQLite store and keep DVC variables out."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow-test.db'}")
    for var in ("DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_STAGE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture
def shared_data() -> Path:
    """The real medical datasets beside the project; skips when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference datasets not found at {SHARED_DATA} (only present on development machines)")
    return SHARED_DATA


def write_params(path: Path, **overrides) -> Path:
    """Write a small params.yaml for fast runs, with nested overrides like ``train={'max_epochs': 3}``."""
    import yaml

    base = {
        "seed": 0, "weight_decay": 1e-4, "l1_lambda": 0.0, "dropout": 0.2,
        "data": {"source": "digits"},
        "augment": {"copies": 1, "gallery_variants": 3},
        "train": {"max_epochs": 3, "hidden": [16], "channels": [4, 8], "batch_size": 128},
        "early_stopping": {"patience": 2, "verbose": False},
        "report": {"language": "en"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    path.write_text(yaml.safe_dump(base, sort_keys=False), encoding="utf-8")
    return path


def run_stage_script(stage: str, cwd: Path, *extra: str, env: dict | None = None,
                     timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``stages/<stage>.py`` from the project in ``cwd`` (a scratch project folder)."""
    return subprocess.run([sys.executable, str(ROOT / "stages" / f"{stage}.py"), *extra], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def project(tmp_path) -> Path:
    """A scratch folder with a tiny params.yaml, for running stage scripts."""
    write_params(tmp_path / "params.yaml")
    return tmp_path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def copy_project(dest: Path) -> Path:
    """Copy the tracked project files (no data, models, venv or stores) into ``dest``."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


@pytest.fixture(scope="module")
def repo_factory(tmp_path_factory):
    """Build a temporary git repo holding the project with a shrunken config."""
    from test_pipeline import make_repo

    return lambda name: make_repo(tmp_path_factory.mktemp(name))


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store with its schema already created (that takes seconds); copy it per use."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def fresh_store(template: Path, path: Path) -> dict:
    """Copy the template store to ``path``; returns the environment that points a stage at it."""
    shutil.copyfile(template, path)
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{path}"}


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, mlflow_template) -> Path:
    """A scratch project (tiny params) where split and augment already ran; copy it with ``clone_prepared``."""
    cwd = tmp_path_factory.mktemp("prepared")
    write_params(cwd / "params.yaml")
    env = fresh_store(mlflow_template, cwd / "mlflow.db")
    for stage in ("split", "augment"):
        result = run_stage_script(stage, cwd, env=env)
        assert result.returncode == 0, result.stderr
    return cwd


def clone_prepared(src: Path, dest: Path) -> Path:
    """Copy a prepared project's params and data (not its MLflow store) into ``dest``."""
    shutil.copytree(src / "data", dest / "data")
    shutil.copy2(src / "params.yaml", dest / "params.yaml")
    return dest


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` as a module (the benchmarks folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
