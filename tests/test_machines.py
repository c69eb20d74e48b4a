"""A sweep spread over two machines, the DVC way: two clones of one bare git repository stand in for
the machines; each queues and runs its share, pushes its experiments (git) and their outputs (a shared
DVC remote), both log to one real `mlflow server`; one clone then pulls every experiment and
`python -m goodfit.compare` reads the whole sweep."""

import json

import pytest
from mlflow.tracking import MlflowClient

from test_pipeline import sh
from test_sweep import run_queue
from test_tracking_server import mlflow_server

pytestmark = pytest.mark.slow


def run_share(root, env, values):
    """This machine's share of the sweep: queued, then run by one worker."""
    sh(f"dvc exp run --queue -S 'weight_decay={values}'", root, env)
    status = run_queue(root, env, 1)
    assert "Failed" not in status and status.count("Success") == len(values.split(",")), status


def experiments(root, env):
    show = json.loads(sh("dvc exp show --json", root, env).stdout)
    return {e["name"]: e["revs"][0]["data"] for rev in show for e in (rev.get("experiments") or [])}


def test_a_sweep_over_two_machines_pushed_pulled_and_compared(repo_factory, tmp_path):
    first, env = repo_factory("machine-a")
    shared = tmp_path / "shared"
    shared.mkdir()
    origin, storage = shared / "goodfit.git", shared / "dvc-storage"
    sh(f"git init -q --bare -b main {origin}", tmp_path, env)
    with mlflow_server(f"sqlite:///{shared / 'mlflow.db'}", shared) as (url, _):
        env = {**env, "MLFLOW_TRACKING_URI": url}  # every machine logs to the one server
        # machine A: the baseline, committed and pushed (git and DVC) for the others
        sh(f"git remote add origin {origin} && dvc remote add -d storage {storage}", first, env)
        sh("dvc repro && git add -A && git commit -qm 'baseline results' && git push -q origin main", first, env)
        sh("dvc push", first, env)
        second = tmp_path / "machine-b"
        sh(f"git clone -q {origin} {second}", tmp_path, env)
        sh("git config user.email b@example.com && git config user.name b && dvc pull", second, env)

        run_share(first, env, "0")
        run_share(second, env, "1e-2")
        for machine in (first, second):
            sh("dvc exp push origin", machine, env)  # the experiments' commits, and their outputs to storage
        assert len(experiments(first, env)) == 1

        # machine A gathers the whole sweep
        sh("dvc exp pull origin", first, env)
        exps = experiments(first, env)
        assert sorted(e["params"]["params.yaml"]["data"]["weight_decay"] for e in exps.values()) == [0, 0.01]
        for name in exps:  # the outputs came through the shared DVC remote: in the cache, nothing to re-run
            sh(f"dvc exp apply {name}", first, env)
            assert json.loads(sh("dvc status --json", first, env).stdout) == {}, name
            sh("git checkout -q -- . && dvc checkout -q", first, env)
        out = sh("python -m goodfit.compare --out reports/compare", first, env)
        assert "swept param: weight_decay" in out.stdout
        table = (first / "reports/compare/sweep.csv").read_text().splitlines()
        assert len(table) == 1 + 3  # the baseline and the two machines' experiments
        assert {row.split(",")[0] for row in table[1:]} >= set(exps)

        # one MLflow server holds every pipeline run of both machines
        client = MlflowClient(url)
        runs = client.search_runs([client.get_experiment_by_name("goodfit").experiment_id])
        parents = {r.data.tags.get("dvc.exp_name") for r in runs if "mlflow.parentRunId" not in r.data.tags}
        assert set(exps) <= parents
