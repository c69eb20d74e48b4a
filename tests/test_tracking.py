import os
import socket
import time

import pytest
from mlflow.tracking import MlflowClient

from goodfit.errors import GoodfitError
from goodfit.tracking import EXPERIMENT_KIND, TAG_EXPERIMENT_KIND, StageRun, pipeline_id, tracking_uri


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


def closed_port() -> int:
    """A loopback port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return


def test_unreachable_server_fails_fast_naming_the_uri(tmp_path, monkeypatch):
    port = closed_port()
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


def test_a_store_that_goes_away_does_not_slow_every_epoch(tmp_path, capsys):
    """Logging to a server that stopped answering: one slow failure, then skipped calls, then recovery."""
    uri = f"http://127.0.0.1:{closed_port()}"
    with open_run(root=tmp_path) as run:
        store_client = run.client
        run.client, run.uri = MlflowClient(uri), uri  # from here on the calls reach no server
        run.retry_after_s = 1.0
        start = time.monotonic()
        for step in range(1, 21):
            run.log_metrics({"val_loss": 1.0 / step, "train_loss": 2.0 / step}, step=step)
        failing = time.monotonic() - start
        run.log_artifact(tmp_path / "missing.csv")
        assert run.missed_metrics == {"val_loss": set(range(1, 21)), "train_loss": set(range(1, 21))}
        run.client = store_client  # the store is back: after the pause one call probes it, then logging resumes
        time.sleep(1.1)
        run.log_metrics({"val_loss": 0.01}, step=21)
        run_id = run.run_id
    assert failing < 12, f"20 epochs of logging to a dead server took {failing:.1f} s"
    err = capsys.readouterr().err
    assert err.count(f"warning: could not log metrics at step 1 to MLflow ({uri})") == 1
    assert (f"did not receive: metrics train_loss, val_loss at step(s) 1-20; artifact {tmp_path / 'missing.csv'}. "
            "The stage's outputs are complete") in err
    c, _ = runs(os.environ["MLFLOW_TRACKING_URI"])
    assert [m.step for m in c.get_metric_history(run_id, "val_loss")] == [21]
    assert c.get_run(run_id).info.status == "FINISHED"


def test_interrupt_while_starting_leaves_no_running_run(tmp_path):
    class Interrupted(StageRun):
        def _params(self, run_id, params):
            raise KeyboardInterrupt  # Ctrl-C after the runs were created, before the stage began

    with pytest.raises(KeyboardInterrupt):
        with Interrupted(stage="train", experiment="t", all_params={}, stage_params={}, params_bytes=b"",
                         root=tmp_path):
            pass
    _, all_runs = runs(os.environ["MLFLOW_TRACKING_URI"])
    assert len(all_runs) == 2 and {r.info.status for r in all_runs} == {"KILLED"}


def test_interrupt_during_a_store_call_waits_for_the_call_to_end():
    import signal

    from goodfit.tracking import _signals_held

    done = []
    with pytest.raises(KeyboardInterrupt):
        with _signals_held():
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of a SQLite transaction
            time.sleep(0.05)
            done.append("committed")  # the call runs to its end ...
    assert done == ["committed"]  # ... and the interrupt is raised right after it
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_experiment_is_tagged_for_model_development(tmp_path):
    """The tag MLflow 3 reads as the experiment's kind: set on a new experiment and on an existing one that lacks it
    (created by an older goodfit); a kind someone chose stays."""
    uri = os.environ["MLFLOW_TRACKING_URI"]
    c = MlflowClient(uri)
    with open_run("split", root=tmp_path):
        pass
    assert c.get_experiment_by_name("t").tags[TAG_EXPERIMENT_KIND] == EXPERIMENT_KIND == "custom_model_development"
    old = c.create_experiment("older")
    chosen = c.create_experiment("chosen", tags={TAG_EXPERIMENT_KIND: "genai_development"})
    for name in ("older", "chosen"):
        with StageRun(stage="split", experiment=name, all_params={}, stage_params={}, params_bytes=b"", root=tmp_path):
            pass
    assert c.get_experiment(old).tags[TAG_EXPERIMENT_KIND] == "custom_model_development"
    assert c.get_experiment(chosen).tags[TAG_EXPERIMENT_KIND] == "genai_development"
