"""End to end: the project copied into a temporary git + DVC repo, real `dvc repro` and `dvc exp run`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import copy_project

pytestmark = pytest.mark.slow

SHRINK = {"augment": {"copies": 1, "gallery_variants": 3},
          "train": {"max_epochs": 4, "hidden": [32], "channels": [8, 16], "batch_size": 64, "lr": 0.01},
          "early_stopping": {"patience": 2}}


def sh(cmd, cwd, env, check=True):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, shell=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def shrink_params(path: Path) -> None:
    from ruamel.yaml import YAML  # keeps comments, as `dvc exp run -S` does

    y = YAML()
    data = y.load(path.read_text())
    for section, values in SHRINK.items():
        for key, value in values.items():
            data[section][key] = value
    with path.open("w") as fh:
        y.dump(data, fh)


def make_repo(base: Path):
    """The project in a fresh git repo at ``base`` with a shrunken config; returns (root, env)."""
    root = copy_project(base)
    shrink_params(root / "params.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    (root / "dvc.lock").unlink(missing_ok=True)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as on users' machines: stages leave __pycache__ in goodfit/
    for cmd in ("git init -q -b main", "git config user.email t@example.com", "git config user.name t",
                "git add -A", "git commit -qm project"):
        sh(cmd, root, env)
    return root, env


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("repo"))


def test_repro_produces_every_output_and_logs_to_mlflow(repo):
    root, env = repo
    out = sh("dvc repro", root, env)
    for stage in ("split", "augment", "train", "evaluate"):
        assert f"Running stage '{stage}'" in out.stdout
    for rel in ("data/split/train.npz", "data/split/val.npz", "data/split/test.npz", "data/split/meta.json",
                "data/augmented/train.npz", "models/model.pt", "reports/train/history.csv",
                "reports/train/summary.json", "reports/metrics.json", "reports/figures/learning_curve.png",
                "reports/figures/augmentation.png", "reports/figures/confusion_matrix.png"):
        assert (root / rel).is_file(), rel
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert 0.3 < metrics["test"]["accuracy"] <= 1.0  # well above chance (0.1) after 4 epochs
    assert (root / "mlflow.db").is_file()
    c = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = c.search_runs([c.get_experiment_by_name("goodfit").experiment_id])
    assert sorted(r.info.run_name for r in runs if r.data.tags.get("goodfit.stage")) == \
        ["augment", "evaluate", "split", "train"]
    train = [r for r in runs if r.info.run_name == "train"][0]
    assert [a.path for a in c.list_artifacts(train.info.run_id)] == ["history.csv"]
    assert "Data and pipelines are up to date." in sh("dvc repro", root, env).stdout


def test_repro_is_byte_reproducible(repo):
    root, env = repo
    sh("dvc repro", root, env)
    first = (root / "dvc.lock").read_text()
    sh("dvc repro -f", root, env)
    assert (root / "dvc.lock").read_text() == first


def test_weight_decay_sweep_reruns_train_and_evaluate_only(repo):
    root, env = repo
    sh("dvc repro", root, env)
    sh("git add -A && git commit -qm lock", root, env)
    out = sh("dvc exp run -S weight_decay=1e-3", root, env)
    assert "Running stage 'train'" in out.stdout and "Running stage 'evaluate'" in out.stdout
    assert "Running stage 'split'" not in out.stdout and "Running stage 'augment'" not in out.stdout
    show = json.loads(sh("dvc exp show --json", root, env).stdout)
    exps = [e for rev in show for e in (rev.get("experiments") or [])]
    assert exps, show
    c = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = c.search_runs([c.get_experiment_by_name("goodfit").experiment_id],
                         filter_string="params.weight_decay = '0.001'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parents and "test_accuracy" in parents[0].data.metrics
    assert parents[0].data.tags["dvc.exp_name"] not in ("", "workspace")
    assert json.loads(sh("dvc plots show --json", root, env).stdout)


def test_exp_run_on_a_ucr_source(repo, tmp_path):
    from test_source_ucr import write_ucr

    root, env = repo
    folder = write_ucr(tmp_path / "toy", n=(40, 30), length=32)
    out = sh(f"dvc exp run -S data.source=ucr -S data.path={folder} -S data.name=Toy", root, env)
    for stage in ("split", "augment", "train", "evaluate"):
        assert f"Running stage '{stage}'" in out.stdout
    meta = json.loads((root / "data/split/meta.json").read_text())
    assert meta["modality"] == "timeseries" and meta["source"] == "ucr:Toy" and meta["input_shape"] == [1, 32]
    assert meta["counts"]["test"]["total"] == 30 and "carved" in meta["split_strategy"]
    assert json.loads((root / "reports/train/summary.json").read_text())["model"] == "cnn1d"
    assert "accuracy" in json.loads((root / "reports/metrics.json").read_text())["test"]


def test_hardlinked_cache_keeps_one_copy_of_each_output(tmp_path):
    """`make run DVC_CACHE_TYPE=hardlink`: data/ and the DVC cache share each file (one copy on disk), the
    stages still replace their outputs on a re-run, and DVC sees the workspace as up to date."""
    root, env = make_repo(tmp_path / "repo")
    # -o: the venv this test runs in stands in for `make install`'s
    out = sh("make -o .venv/.installed run DVC_CACHE_TYPE=hardlink", root, env)
    assert "dvc config --local cache.type hardlink" in out.stdout
    assert "type = hardlink" in (root / ".dvc/config.local").read_text()
    assert "hardlink" not in (root / ".dvc/config").read_text()  # a machine's choice, not the project's
    for rel in ("data/split/train.npz", "data/augmented/train.npz", "models/model.pt"):
        assert (root / rel).stat().st_nlink == 2, rel  # the workspace file is the cache's file
    before = (root / "models/model.pt").read_bytes()
    params = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("weight_decay: 1.0e-4", "weight_decay: 1.0e-2", 1))
    assert "Running stage 'train'" in sh("dvc repro", root, env).stdout
    assert (root / "models/model.pt").read_bytes() != before and (root / "models/model.pt").stat().st_nlink == 2
    assert "Data and pipelines are up to date." in sh("dvc status", root, env).stdout
