"""A real tracking server on 127.0.0.1: `mlflow server` with a PostgreSQL backend store, a server that is
unreachable or hung, and a server that goes away in the middle of training."""

import contextlib
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, clone_prepared, run_stage_script, write_params

pytestmark = pytest.mark.slow

STAGES = ("split", "augment", "train", "evaluate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_tool(name: str) -> str | None:
    """Debian keeps the server binaries off PATH, under /usr/lib/postgresql/<version>/bin."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL cluster on 127.0.0.1 (trust auth, no fsync); yields its SQLAlchemy URI."""
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL is not installed (.ci/run installs it with apt-get install postgresql)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="goodfit-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root: use the postgres account the package creates
        try:
            uid = pwd.getpwnam("postgres").pw_uid
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        os.chown(folder, uid, -1)
        # runuser lives in sbin, which a minimal PATH (e.g. PATH=/usr/bin:/bin) leaves out
        runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
        if runuser is None:
            pytest.skip("running as root and util-linux's runuser is not installed to run PostgreSQL as 'postgres'")
        as_user = [runuser, "-u", "postgres", "--"]
    port = free_port()
    data, log = folder / "data", folder / "server.log"
    init = subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                           "--no-sync"], capture_output=True, text=True, timeout=120)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    start = init.returncode == 0 and subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
        capture_output=True, text=True, timeout=120)
    if not start or start.returncode != 0:
        reason = (init.stderr or (start and start.stderr) or "") + (log.read_text() if log.exists() else "")
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"PostgreSQL could not be started: {reason.strip()[-500:]}")
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=10)
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE mlflow")
        conn.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend: str, folder: Path):
    """`mlflow server` on a free loopback port, serving artifacts from ``folder``; yields (url, process)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no background job workers: a leaner server
    env["PYTHONUNBUFFERED"] = "1"  # a complete log even when the server is killed
    log = open(folder / "mlflow-server.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend,
         "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, proc, folder / "mlflow-server.log")
        yield url, proc
    finally:
        stop(proc)
        log.close()


def wait_for_health(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Wait until the MLflow server (or UI) at ``url`` answers /health; fail with its log if it exits or hangs."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        assert proc.poll() is None and time.monotonic() < deadline, \
            f"{proc.args[:3]} did not start:\n" + log.read_text()[-3000:]
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """Kill the server and its workers (one process group) at once, as a crash would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.integration
def test_pipeline_logs_to_a_postgresql_backed_server(postgres, tmp_path):
    cwd = tmp_path / "project"
    cwd.mkdir()
    write_params(cwd / "params.yaml")
    with mlflow_server(postgres, tmp_path) as (url, _):
        for stage in STAGES:
            result = run_stage_script(stage, cwd, env={"MLFLOW_TRACKING_URI": url})
            assert result.returncode == 0, result.stderr
            assert "warning: " not in result.stderr, result.stderr

        c = MlflowClient(url)  # read everything back through the server's REST API
        exp = c.get_experiment_by_name("goodfit")
        runs = c.search_runs([exp.experiment_id])
        parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        children = {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}
        assert len(parent) == 1 and sorted(children) == sorted(STAGES)
        assert all(r.data.tags["mlflow.parentRunId"] == parent[0].info.run_id for r in children.values())
        assert {r.info.status for r in runs} == {"FINISHED"}
        assert parent[0].data.params["weight_decay"] == "0.0001" and parent[0].data.params["train.max_epochs"] == "3"

        import pandas as pd

        history = pd.read_csv(cwd / "reports/train/history.csv")
        train_id = children["train"].info.run_id
        for column in ("train_loss", "val_loss", "val_accuracy", "weight_l2", "sparsity"):
            logged = sorted((m.step, m.value) for m in c.get_metric_history(train_id, column))
            assert [s for s, _ in logged] == list(history["epoch"])
            assert [v for _, v in logged] == pytest.approx(list(history[column]))
        metrics = json.loads((cwd / "reports/metrics.json").read_text())
        assert parent[0].data.metrics["test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
        assert parent[0].data.tags["goodfit.fit_diagnosis"] == metrics["fit"]["verdict"]

        assert [a.path for a in c.list_artifacts(train_id)] == ["history.csv"]
        assert sorted(a.path for a in c.list_artifacts(children["evaluate"].info.run_id)) == \
            ["confusion_matrix.png", "learning_curve.png", "metrics.json", "reliability_diagram.png"]
        fetched = c.download_artifacts(train_id, "history.csv", str(tmp_path / "download"))
        assert Path(fetched).read_bytes() == (cwd / "reports/train/history.csv").read_bytes()
        assert (tmp_path / "artifacts").is_dir()  # served from the server's store, not the project

    import psycopg2  # the runs really live in PostgreSQL

    dsn = postgres.replace("postgresql+psycopg2://", "postgresql://")
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] == 5
        cur.execute("SELECT count(*) FROM metrics WHERE key = 'val_loss' AND run_uuid = %s", (train_id,))
        assert cur.fetchone()[0] == len(history)


@pytest.mark.parametrize("server", ["nothing listening", "listening but never answering"])
def test_unreachable_server_stops_the_first_stage_within_30_s(tmp_path, server):
    write_params(tmp_path / "params.yaml")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        if server == "listening but never answering":
            sock.listen(16)  # the kernel accepts connections; no one ever reads or replies
        else:
            sock.close()
        url = f"http://127.0.0.1:{port}"
        start = time.monotonic()
        result = run_stage_script("split", tmp_path, env={"MLFLOW_TRACKING_URI": url})
        elapsed = time.monotonic() - start
    assert result.returncode == 2
    assert f"error: Cannot use the MLflow tracking store {url}: " in result.stderr, result.stderr
    assert ("[Errno 111] Connection refused" if server == "nothing listening" else "timed out") in result.stderr
    assert "Start the server or fix MLFLOW_TRACKING_URI" in result.stderr and "Nothing was run." in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 30, f"took {elapsed:.1f} s"
    assert not (tmp_path / "data").exists()  # before any work


def test_training_finishes_when_the_server_goes_away(prepared, mlflow_template, tmp_path):
    """Kill the real server after epoch 3: training goes on at full speed and lists what was not logged."""
    cwd = clone_prepared(prepared, tmp_path / "project")
    epochs = 25
    write_params(cwd / "params.yaml", train={"max_epochs": epochs}, early_stopping={"patience": epochs,
                                                                                     "verbose": False})
    db = tmp_path / "server.db"
    shutil.copyfile(mlflow_template, db)
    with mlflow_server(f"sqlite:///{db}", tmp_path) as (url, server):
        env = {**os.environ, "MLFLOW_TRACKING_URI": url}
        train = subprocess.Popen([sys.executable, str(ROOT / "stages/train.py")], cwd=cwd, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = []
        for line in train.stdout:
            seen.append(line)
            if line.startswith(f"epoch   3/{epochs}"):
                break
        else:
            raise AssertionError("training never reached epoch 3:\n" + "".join(seen) + train.stderr.read())
        stop(server)
        killed = time.monotonic()
        out, err = train.communicate(timeout=300)
        after_kill = time.monotonic() - killed
    assert train.returncode == 0, err
    summary = json.loads((cwd / "reports/train/summary.json").read_text())
    assert summary["stopped_epoch"] == epochs and (cwd / "models/model.pt").is_file()
    assert len((cwd / "reports/train/history.csv").read_text().splitlines()) == epochs + 1
    assert err.count("warning: could not log") == 1, err
    missed = re.search(r"did not receive: metrics best_epoch, best_val_loss, stopped_epoch; metrics lr, sparsity, "
                       r"train_eval_accuracy, train_eval_loss, "
                       rf"train_loss, val_accuracy, val_loss, weight_l1, weight_l2 at step\(s\) (\d+)-{epochs}; ", err)
    assert missed, err
    assert "[Errno 111] Connection refused" in err or "Connection reset" in err or "Remote end closed" in err, err
    assert "artifact reports/train/history.csv" in err and "The stage's outputs are complete" in err
    assert "the MLflow model of models/model.pt" in err
    first_missed = int(missed.group(1))
    assert first_missed <= 5, err  # the server died after epoch 3 was printed (earlier only if a call failed)
    # Every epoch is either in the server's store or in the list: nothing is lost silently.
    c = MlflowClient(f"sqlite:///{db}")
    run = [r for r in c.search_runs([c.get_experiment_by_name("goodfit").experiment_id])
           if r.info.run_name == "train"][0]
    assert sorted(m.step for m in c.get_metric_history(run.info.run_id, "val_loss")) == \
        list(range(1, first_missed))
    # One slow failure (the HTTP client's retries), then no more waiting: far less than a retry per epoch.
    assert after_kill < 40, f"training took {after_kill:.1f} s after the server went away"


@pytest.mark.integration
def test_model_registry_on_a_postgresql_backed_server(postgres, prepared, tmp_path, monkeypatch):
    """The model is logged through the server (its artifacts proxied), registered with the alias candidate in
    PostgreSQL, promoted to champion and loaded by alias: test_tracking_model.check_registry."""
    from test_tracking_model import check_registry

    cwd = clone_prepared(prepared, tmp_path / "project")
    with mlflow_server(postgres, tmp_path) as (url, _):
        check_registry(cwd, url, monkeypatch, experiment="registry")
        assert any((tmp_path / "artifacts").rglob("model.pt"))  # the model's files live with the server
    import psycopg2

    dsn = postgres.replace("postgresql+psycopg2://", "postgresql://")
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("SELECT version FROM model_versions WHERE name = 'goodfit-digits' ORDER BY version")
        assert [v for (v,) in cur.fetchall()] == [1, 2]
        cur.execute("SELECT alias, version FROM registered_model_aliases WHERE name = 'goodfit-digits' ORDER BY alias")
        assert cur.fetchall() == [("candidate", 2), ("champion", 1)]
