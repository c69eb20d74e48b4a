"""Data-parallel training (train.processes) over gloo on 127.0.0.1: two real CPU processes under torchrun."""

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, clone_prepared, fresh_store, write_params
from goodfit.errors import GoodfitError
from goodfit.params import parse_params

TRAIN = [sys.executable, str(ROOT / "stages" / "train.py")]
OUTPUTS = ("models/model.pt", "reports/train/history.csv", "reports/train/summary.json")
SMALL = dict(train={"max_epochs": 3, "hidden": [16], "channels": [4, 8], "batch_size": 64, "processes": 2},
             early_stopping={"patience": 5, "verbose": False})


def _train(folder, mlflow_template, timeout=300, **params):
    write_params(folder / "params.yaml", **{**SMALL, **params})
    env = {**os.environ, **fresh_store(mlflow_template, folder / "mlflow.db")}
    return subprocess.run(TRAIN, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


def _outputs(folder):
    return {p: (folder / p).read_bytes() for p in OUTPUTS}


def _history(folder):
    return list(csv.DictReader(io.StringIO((folder / "reports/train/history.csv").read_text())))


def _runs(folder):
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name("goodfit")
    return client.search_runs([exp.experiment_id])


def test_two_processes_write_the_same_bits_twice_and_log_one_mlflow_run(prepared, tmp_path, mlflow_template):
    first, second = (clone_prepared(prepared, tmp_path / name) for name in ("first", "second"))
    for folder in (first, second):
        result = _train(folder, mlflow_template)
        assert result.returncode == 0, result.stderr
        assert "starting 2 processes under torchrun (torch.distributed, gloo)" in result.stdout
        assert result.stdout.count("epoch   1/3") == 1  # rank 0 alone prints
    assert _outputs(first) == _outputs(second)
    runs = _runs(first)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert [r.info.run_name for r in children] == ["train"]  # one run, not one per rank
    train = children[0]
    assert train.info.status == "FINISHED" and train.data.params["train.processes"] == "2"
    history = _history(first)
    client = MlflowClient(f"sqlite:///{first / 'mlflow.db'}")
    logged = client.get_metric_history(train.info.run_id, "val_loss")
    assert [m.value for m in logged] == [float(r["val_loss"]) for r in history]
    assert not (first / "checkpoints").exists()


def test_two_processes_follow_the_curve_of_one(prepared, tmp_path, mlflow_template):
    """Without dropout the global batch's gradient is the same sum, split over two ranks: the
    curves agree to float rounding (with dropout, to seed noise: benchmarks/README)."""
    curves = {}
    for n in (1, 2):
        folder = clone_prepared(prepared, tmp_path / f"n{n}")
        result = _train(folder, mlflow_template, dropout=0.0,
                        train={**SMALL["train"], "processes": n, "batch_size": 63})  # a last batch of another size
        assert result.returncode == 0, result.stderr
        curves[n] = _history(folder)
    assert len(curves[1]) == len(curves[2]) == 3
    for one, two in zip(curves[1], curves[2]):
        for key in ("train_loss", "val_loss", "train_eval_loss", "weight_l2"):
            assert float(two[key]) == pytest.approx(float(one[key]), rel=1e-4, abs=1e-5), key
    # the one-process run is not the same bits: the sum is cut in two (a real second rank trained)
    assert curves[1] != curves[2]


def _worker_pids(launcher_pid):
    """The worker processes below the launcher, by their RANK."""
    found = {}
    for status in Path("/proc").glob("[0-9]*/environ"):
        try:
            env = dict(item.split("=", 1) for item in status.read_bytes().decode(errors="replace").split("\0")
                       if "=" in item)
            stat = (status.parent / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if "RANK" in env and "TORCHELASTIC_RUN_ID" in env and _descends(ppid, launcher_pid):
            found[int(env["RANK"])] = int(status.parent.name)
    return found


def _descends(pid, ancestor):
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
    return False


def test_a_killed_rank_fails_the_stage_soon_naming_the_rank(prepared, tmp_path, mlflow_template):
    folder = clone_prepared(prepared, tmp_path / "killed")
    write_params(folder / "params.yaml", **{**SMALL, "train": {**SMALL["train"], "max_epochs": 200},
                                            "early_stopping": {"patience": 200, "verbose": False}})
    env = {**os.environ, **fresh_store(mlflow_template, folder / "mlflow.db")}
    proc = subprocess.Popen(TRAIN, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("epoch   2/"):
            break
    pids = _worker_pids(proc.pid)
    assert sorted(pids) == [0, 1]
    os.kill(pids[1], signal.SIGKILL)  # no handler, no clean-up: as a rank lost with its machine
    killed = time.monotonic()
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - killed
    assert proc.returncode == 2, err
    assert f"rank 1 of 2 (pid {pids[1]}) was killed by SIGKILL" in err
    assert took < 60  # bounded: the agent notices within its monitor interval and stops rank 0
    assert not (folder / "models" / "model.pt").exists() and not (folder / "reports" / "train").exists()
    train = [r for r in _runs(folder) if r.info.run_name == "train"]
    assert len(train) == 1 and train[0].info.status in ("FAILED", "KILLED")
    assert not any(Path("/proc", str(pid)).exists() and "zombie" not in _state(pid) for pid in pids.values())


def test_stopping_the_stage_stops_every_rank_and_writes_nothing(prepared, tmp_path, mlflow_template):
    """SIGTERM to the process DVC started (as `dvc exp` or a scheduler stops a job): exit 130, no rank left."""
    folder = clone_prepared(prepared, tmp_path / "stopped")
    write_params(folder / "params.yaml", **{**SMALL, "train": {**SMALL["train"], "max_epochs": 200},
                                            "early_stopping": {"patience": 200, "verbose": False}})
    env = {**os.environ, **fresh_store(mlflow_template, folder / "mlflow.db")}
    proc = subprocess.Popen(TRAIN, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("epoch   2/"):
            break
    pids = _worker_pids(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "train: interrupted by SIGTERM; its outputs were left as they were" in err and "Traceback" not in err
    assert not (folder / "models").exists() and not (folder / "reports").exists()
    train = [r for r in _runs(folder) if r.info.run_name == "train"]
    assert len(train) == 1 and train[0].info.status == "KILLED"
    assert sorted(pids) == [0, 1] and not any(Path("/proc", str(p)).exists() and "zombie" not in _state(p)
                                              for p in pids.values())


def _state(pid):
    try:
        return Path("/proc", str(pid), "status").read_text().lower()
    except OSError:
        return "zombie"


@pytest.mark.parametrize("train, message", [
    ({"processes": 2, "folds": 3}, "train.processes is 2 and train.folds is 3"),
    ({"processes": 4, "batch_size": 3}, "train.batch_size (3) is the global batch"),
    ({"processes": 0}, "train.processes"),
])
def test_impossible_process_settings_are_clear_errors(train, message):
    with pytest.raises(GoodfitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_params({"train": train})


def test_a_torchrun_world_that_params_do_not_say_is_refused(prepared, tmp_path, mlflow_template):
    """Under the user's own torchrun (several machines), train.processes must give the world size."""
    folder = clone_prepared(prepared, tmp_path / "mismatch")
    write_params(folder / "params.yaml", **{**SMALL, "train": {**SMALL["train"], "processes": 1}})
    env = {**os.environ, **fresh_store(mlflow_template, folder / "mlflow.db")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *TRAIN[1:]]
    result = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "train.processes is 1, but torchrun started 2 processes in all" in result.stderr
    assert not (folder / "models").exists()


def test_bad_input_in_the_ranks_is_one_clear_error_without_a_traceback(prepared, tmp_path, mlflow_template):
    folder = clone_prepared(prepared, tmp_path / "broken")
    (folder / "data/augmented/train.npz").write_bytes(b"not an npz")
    result = _train(folder, mlflow_template)
    assert result.returncode == 2
    assert "error: " in result.stderr and "data/augmented/train.npz" in result.stderr
    assert "Traceback" not in result.stderr and "ChildFailedError" not in result.stderr
    assert not (folder / "models").exists()


def test_a_search_trains_each_candidate_data_parallel_with_one_run_each(prepared, tmp_path, mlflow_template):
    folder = clone_prepared(prepared, tmp_path / "search")
    result = _train(folder, mlflow_template, train={**SMALL["train"], "max_epochs": 2,
                                                    "search": {"weight_decay": [0.0, 1.0e-3]}})
    assert result.returncode == 0, result.stderr
    import json

    summary = json.loads((folder / "reports/train/summary.json").read_text())
    assert [c["candidate"] for c in summary["search_candidates"]] == [1, 2]
    names = sorted(r.info.run_name for r in _runs(folder) if "mlflow.parentRunId" in r.data.tags)
    assert names == ["train", "train candidate 1/2: weight_decay=0", "train candidate 2/2: weight_decay=0.001"]
