"""A user's dataset under DVC control (goodfit.rawdata, `make data SRC=...`)."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from goodfit.errors import GoodfitError
from goodfit.rawdata import add, dvc_hash, main, tracking_warning


def _csv(path: Path, seed: int, n: int = 80) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(int)
    rows = ["f1,f2,f3,label"] + [f"{a:.6f},{b:.6f},{c:.6f},{'sick' if t else 'well'}" for (a, b, c), t in zip(x, y)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _sh(cmd, cwd, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(cmd, cwd=cwd, shell=True, capture_output=True, text=True, timeout=300, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def dvc_project(tmp_path):
    """A bare git + DVC project with a params.yaml (with a comment) and a dvc.yaml."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "params.yaml").write_text("data:\n  source: digits   # where the data come from\n  path: null\n")
    (root / "dvc.yaml").write_text("stages: {}\n")
    for cmd in ("git init -q", "git config user.email t@example.com", "git config user.name t",
                f"{sys.executable} -m dvc init -q"):
        _sh(cmd, root)
    return root


def test_add_copies_dvc_adds_and_points_data_path_at_it(dvc_project, tmp_path):
    src = _csv(tmp_path / "cohort.csv", seed=0)
    rel = add(src, root=dvc_project, source="csv", target="label")
    assert rel == Path("data/raw/cohort.csv")
    copy = dvc_project / rel
    assert copy.read_bytes() == src.read_bytes()
    assert dvc_hash(rel, dvc_project) == hashlib.md5(src.read_bytes()).hexdigest()  # DVC's own md5 of the bytes
    assert "/cohort.csv" in (dvc_project / "data/raw/.gitignore").read_text()
    params = (dvc_project / "params.yaml").read_text()
    assert "path: data/raw/cohort.csv" in params and "source: csv" in params and "target: label" in params
    assert "# where the data come from" in params  # comments kept
    assert tracking_warning(str(rel), dvc_project) is None


def test_adding_a_new_version_replaces_the_copy_and_its_hash(dvc_project, tmp_path):
    first = add(_csv(tmp_path / "cohort.csv", seed=0), root=dvc_project)
    h1 = dvc_hash(first, dvc_project)
    second = add(_csv(tmp_path / "cohort.csv", seed=1), root=dvc_project)
    assert second == first and dvc_hash(second, dvc_project) != h1
    assert dvc_hash(second, dvc_project) == hashlib.md5((tmp_path / "cohort.csv").read_bytes()).hexdigest()
    assert not [p for p in (dvc_project / "data/raw").iterdir() if p.name.endswith((".tmp", ".old"))]


def test_add_a_folder(dvc_project, tmp_path):
    folder = tmp_path / "scans"
    for cls in ("benign", "malignant"):
        (folder / cls).mkdir(parents=True)
        (folder / cls / "a.png").write_bytes(b"not really a png, bytes are enough here " + cls.encode())
    rel = add(folder, root=dvc_project, source="imagefolder")
    assert (dvc_project / rel / "malignant/a.png").is_file()
    assert dvc_hash(rel, dvc_project).endswith(".dir")


@pytest.mark.parametrize("make_src, kwargs, message", [
    (lambda t: t / "missing.csv", {}, r"The dataset '.*missing.csv' does not exist .*make data SRC="),
    (lambda t: (t / "empty").mkdir() or t / "empty", {}, r"The dataset folder '.*empty' is empty"),
    (lambda t: _csv(t / "c.csv", 0), {"name": "../escape.csv"}, r"must be a plain file or folder name"),
    (lambda t: _csv(t / "c.csv", 0), {"name": "x.dvc"}, r"must be a plain file or folder name"),
    (lambda t: _csv(t / "c.csv", 0), {"source": "parquet"}, r"data.source 'parquet'|nothing was written"),
    (lambda t: _csv(t / "c.csv", 0), {"source": "csv"}, r"data.target \(the label column\) is required"),
])
def test_bad_input_is_a_clear_error_and_changes_nothing(dvc_project, tmp_path, make_src, kwargs, message):
    src = make_src(tmp_path)
    before = (dvc_project / "params.yaml").read_text()
    with pytest.raises(GoodfitError, match=message):
        add(src, root=dvc_project, **kwargs)
    assert (dvc_project / "params.yaml").read_text() == before
    assert not (dvc_project / "data/raw" / Path(src).name).exists()  # nothing copied either


def test_outside_a_dvc_project_is_a_clear_error(tmp_path):
    with pytest.raises(GoodfitError, match="is not a goodfit DVC project .*project root"):
        add(_csv(tmp_path / "c.csv", 0), root=tmp_path)


def test_a_failing_dvc_add_leaves_params_as_they_were(dvc_project, tmp_path):
    (dvc_project / "data/raw").mkdir(parents=True)
    tracked = _csv(dvc_project / "data/raw/c.csv", 0)
    _sh("git add data/raw/c.csv && git commit -qm data", dvc_project)  # git already tracks it: DVC refuses
    before = (dvc_project / "params.yaml").read_text()
    with pytest.raises(GoodfitError, match=r"`dvc add data/raw/c.csv` failed .*params.yaml was not changed"):
        add(tracked, root=dvc_project)
    assert (dvc_project / "params.yaml").read_text() == before


def test_the_command_line_says_what_to_commit(dvc_project, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(dvc_project)
    assert main([str(_csv(tmp_path / "c.csv", 0))]) == 0
    out = capsys.readouterr().out
    assert "git add data/raw/c.csv.dvc data/raw/.gitignore params.yaml" in out and "dvc push" in out
    assert main([str(tmp_path / "nope.csv")]) == 2
    assert "error: The dataset" in capsys.readouterr().err


def test_tracking_warning(tmp_path):
    assert tracking_warning(None, tmp_path) is None
    outside = tracking_warning("/data/cohort.csv", tmp_path)
    assert "outside data/raw/" in outside and "make data SRC=/data/cohort.csv" in outside
    (tmp_path / "data/raw").mkdir(parents=True)
    (tmp_path / "data/raw/c.csv").write_text("a\n")
    untracked = tracking_warning("data/raw/c.csv", tmp_path)
    assert "not under DVC control" in untracked and "dvc add data/raw/c.csv" in untracked
    (tmp_path / "data/raw/c.csv.dvc").write_text("outs:\n- md5: 0123\n  path: c.csv\n")
    assert tracking_warning("data/raw/c.csv", tmp_path) is None
    assert tracking_warning(str(tmp_path / "data/raw/c.csv"), tmp_path) is None  # absolute path, same file


@pytest.mark.slow
def test_replacing_the_dataset_reruns_split_and_push_pull_moves_it(tmp_path):
    """The real project: a dataset brought with `make data`, `dvc status` after replacing it, a local remote."""
    from test_pipeline import make_repo

    root, _ = make_repo(tmp_path / "a")
    src = _csv(tmp_path / "cohort.csv", seed=0)
    _sh(f"{sys.executable} -m goodfit.rawdata {src} --source csv --target label", root)
    _sh("dvc repro split", root)
    assert _sh("dvc status split", root).stdout.strip().endswith("up to date.")
    _sh("git add -A && git commit -qm 'data: cohort'", root)

    _csv(src, seed=1)  # a corrected export of the same cohort
    _sh(f"{sys.executable} -m goodfit.rawdata {src}", root)
    status = _sh("dvc status split", root).stdout
    assert "split:" in status and "modified:" in status and "data/raw" in status
    _sh("dvc repro split && git add -A && git commit -qm 'data: cohort v2'", root)

    remote = tmp_path / "remote"
    _sh(f"dvc remote add -d store {remote} && dvc push -q data/raw/cohort.csv.dvc", root)
    _sh("git add -A && git commit -qm remote", root)
    clone = tmp_path / "b"
    _sh(f"git clone -q {root} {clone}", tmp_path)
    assert not (clone / "data/raw/cohort.csv").exists()
    _sh("dvc pull -q data/raw/cohort.csv.dvc", clone)
    assert (clone / "data/raw/cohort.csv").read_bytes() == src.read_bytes()


def test_make_data_runs_the_command():
    dry = subprocess.run(["make", "-n", "data", "SRC=/data/cohort.csv", "ARGS=--source csv"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert "python -m goodfit.rawdata /data/cohort.csv --source csv" in dry.stdout


def test_split_warns_once_about_a_dataset_dvc_does_not_track(project, tmp_path):
    from conftest import run_stage_script, write_params

    src = _csv(tmp_path / "outside.csv", seed=0)
    write_params(project / "params.yaml", data={"source": "csv", "path": str(src), "target": "label"})
    result = run_stage_script("split", project)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning: data.path") == 1
    assert "outside data/raw/" in result.stderr and f"make data SRC={src}" in result.stderr
    assert (project / "data/split/train.npz").is_file()


def test_the_datasets_dvc_hash_tags_the_mlflow_parent_run(dvc_project, tmp_path):
    from mlflow.tracking import MlflowClient

    from conftest import run_stage_script

    rel = add(_csv(tmp_path / "cohort.csv", seed=0), root=dvc_project, source="csv", target="label")
    result = run_stage_script("split", dvc_project)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    client = MlflowClient()
    exp = client.get_experiment_by_name("goodfit")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parent) == 1 and parent[0].data.tags["goodfit.data_dvc_md5"] == dvc_hash(rel, dvc_project)
