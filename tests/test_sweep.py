"""Queued sweeps with two workers, the comparison report, and a DVC remote, in a real temporary repo."""

import json
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from test_pipeline import sh

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def committed(repo_factory):
    root, env = repo_factory("sweep")
    sh("dvc repro", root, env)
    sh("git add -A && git commit -qm 'pipeline results'", root, env)
    return root, env


def wait_for_queue(root, env, timeout=900):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = sh("dvc queue status", root, env).stdout
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(3)
    raise AssertionError(f"queue did not finish in {timeout} s:\n{status}")


def run_queue(root, env, jobs):
    """``dvc queue start -j jobs``, then wait until the queue is done; returns ``dvc queue status``."""
    try:
        # The workers are daemons that outlive `dvc queue start`: keep them off our pipes.
        subprocess.run(f"dvc queue start -j {jobs}", cwd=root, env=env, shell=True, check=True, timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        return wait_for_queue(root, env)
    finally:
        subprocess.run("dvc queue stop", cwd=root, env=env, shell=True, timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def test_queued_sweep_with_two_workers_lands_every_run(committed):
    root, env = committed
    sh("dvc exp run --queue -S 'weight_decay=0,1e-2'", root, env)
    status = run_queue(root, env, 2)
    assert status.count("Success") == 2, status
    assert "Failed" not in status, sh("dvc queue logs $(dvc queue status | awk '/Failed/{print $1; exit}')",
                                      root, env, check=False).stdout
    show = json.loads(sh("dvc exp show --json", root, env).stdout)
    exps = [e for rev in show for e in (rev.get("experiments") or [])]
    values = sorted(e["revs"][0]["data"]["params"]["params.yaml"]["data"]["weight_decay"] for e in exps)
    assert values == [0, 0.01]
    for e in exps:
        assert "accuracy" in e["revs"][0]["data"]["metrics"]["reports/metrics.json"]["data"]["test"]

    # Every execution landed in the one store at the repo root, with params and test metrics on one run.
    c = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = c.search_runs([c.get_experiment_by_name("goodfit").experiment_id])
    parents = {r.data.tags["dvc.exp_name"]: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    for e in exps:
        parent = parents[e["name"]]
        assert float(parent.data.params["weight_decay"]) == e["revs"][0]["data"]["params"]["params.yaml"]["data"][
            "weight_decay"]
        assert parent.data.metrics["test_accuracy"] == pytest.approx(
            e["revs"][0]["data"]["metrics"]["reports/metrics.json"]["data"]["test"]["accuracy"])
        assert parent.data.tags["dvc.baseline_rev"] == sh("git rev-parse HEAD", root, env).stdout.strip()
        assert all(r.info.status == "FINISHED" for r in runs
                   if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)

    # The comparison report reads the finished sweep.
    out = sh("python -m goodfit.compare --out reports/compare", root, env)
    assert "swept param: weight_decay" in out.stdout
    table = (root / "reports/compare/sweep.csv").read_text().splitlines()
    assert table[0].startswith("name,value,best_val_loss,val_accuracy,test_log_loss,test_accuracy")
    assert len(table) == 1 + 3  # the baseline (1e-4) and two experiments
    assert (root / "reports/compare/sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_dvc_remote_push_then_pull_in_a_fresh_clone(committed, tmp_path):
    root, env = committed
    remote = tmp_path / "remote"
    sh(f"dvc remote add -d --local storage {remote}", root, env)
    sh("dvc push", root, env)
    clone = tmp_path / "clone"
    sh(f"git clone -q {root} {clone}", tmp_path, env)
    sh(f"dvc remote add -d --local storage {remote}", clone, env)
    sh("dvc pull", clone, env)
    for rel in ("data/split/train.npz", "data/augmented/train.npz", "models/model.pt"):
        assert (clone / rel).read_bytes() == (root / rel).read_bytes()
    status = sh("dvc status --json", clone, env).stdout
    assert json.loads(status) == {}, status
    assert "Data and pipelines are up to date." in sh("dvc repro", clone, env).stdout
