import os

import pytest
from mlflow.tracking import MlflowClient

from goodfit.errors import GoodfitError
from goodfit.tracking import StageRun, pipeline_id, tracking_uri


def open_run(stage="train", params_bytes=b"seed: 1\n", **kw):
    return StageRun(stage=stage, experiment="t", all_params={"seed": 1, "train.lr": 0.01},
                    stage_params={"train.lr": 0.01}, params_bytes=params_bytes, tags={"goodfit.dataset": "d"}, **kw)


def runs(uri):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("t")
    return c, c.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def test_default_store_is_sqlite_at_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_stages_of_one_execution_share_a_parent(tmp_path):
    with open_run("train", root=tmp_path) as run:
        run.log_metrics({"val_loss": 0.5}, step=1)
        run.log_metrics({"val_loss": 0.4}, step=2)
    with open_run("evaluate", root=tmp_path) as run:
        run.log_metrics({"test_accuracy": 0.9}, parent=True)
        run.set_tags({"goodfit.fit_diagnosis": "good_fit"}, parent=True)
    with open_run("train", params_bytes=b"seed: 2\n", root=tmp_path):
        pass
    c, all_runs = runs(os.environ["MLFLOW_TRACKING_URI"])
    parents = [r for r in all_runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 2  # two params files -> two executions
    first = parents[0]
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == first.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["evaluate", "train"]
    assert first.data.metrics["test_accuracy"] == 0.9
    assert first.data.params["train.lr"] == "0.01"
    assert first.data.tags["goodfit.fit_diagnosis"] == "good_fit"
    assert all(r.info.status == "FINISHED" for r in all_runs)
    train = [r for r in children if r.info.run_name == "train"][0]
    steps = [m.step for m in c.get_metric_history(train.info.run_id, "val_loss")]
    assert steps == [1, 2]
    assert train.data.tags["goodfit.stage"] == "train" and train.data.tags["goodfit.dataset"] == "d"


def test_failed_and_interrupted_runs_are_marked(tmp_path):
    with pytest.raises(ValueError):
        with open_run("split", root=tmp_path):
            raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt):
        with open_run("augment", root=tmp_path):
            raise KeyboardInterrupt
    _, all_runs = runs(os.environ["MLFLOW_TRACKING_URI"])
    status = {r.info.run_name: r.info.status for r in all_runs}
    assert status["split"] == "FAILED" and status["augment"] == "KILLED"


def test_unreachable_server_fails_fast_naming_the_uri(tmp_path, monkeypatch):
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(GoodfitError, match=f"Cannot use the MLflow tracking store http://127.0.0.1:{port}"):
        with open_run(root=tmp_path):
            pass
    assert time.monotonic() - start < 30


def test_pipeline_id_depends_on_commit_experiment_and_params():
    a = pipeline_id(b"x", "c1", "")
    assert a == pipeline_id(b"x", "c1", "")
    assert len({a, pipeline_id(b"y", "c1", ""), pipeline_id(b"x", "c2", ""), pipeline_id(b"x", "c1", "e")}) == 4
