"""Exact resume: a training stopped at epoch k goes on at k + 1 and ends bit-identical."""

import io
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, clone_prepared, fresh_store, write_params
from goodfit.errors import GoodfitError
from goodfit.io import all_or_nothing
from goodfit.resume import Checkpoints, fingerprint
from goodfit.training import fit
from test_training import blobs, mlp


def roundtrip(state):
    """A state as the stage reads it back: through torch.save and a weights-only load."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def run_fit(resume=None, states=None, **kw):
    x, y = blobs()
    xv, yv = blobs(100, seed=1)
    model = mlp(dropout=0.3)  # dropout: the global RNG must be restored too
    args = dict(x_train=x, y_train=y, x_val=xv, y_val=yv, lr=0.01, max_epochs=12, patience=4, batch_size=32,
                verbose=False, seed=3, checkpoint=None if states is None else states.append, resume=resume)
    return model, fit(model, **{**args, **kw})


def same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("kw", [{}, {"lr_schedule": "plateau", "l1_lambda": 1e-3}, {"optimizer": "sgd"},
                                {"monitor": "val_auc"}, {"ema_decay": 0.9, "restore_best": False}, {"ema_decay": 0.8},
                                {"lr_schedule": "cosine", "warmup_epochs": 3}, {"warmup_epochs": 2}])
def test_a_fit_resumed_after_any_epoch_ends_bit_identical(kw):
    states = []
    model, result = run_fit(states=states, **kw)
    assert [s["epoch"] for s in states] == list(range(1, result.stopped_epoch + 1))
    for k in (1, len(states) // 2, len(states)):  # after the first, a middle and the last epoch
        again, resumed = run_fit(resume=roundtrip(states[k - 1]), **kw)
        assert same_weights(model, again)
        assert resumed.history == result.history
        assert (resumed.best_epoch, resumed.stopped_epoch, resumed.stop_reason) == \
            (result.best_epoch, result.stopped_epoch, result.stop_reason)


@pytest.mark.parametrize("part", ["generator", "torch_rng", "optimizer"])
def test_each_part_of_the_state_matters(part):
    # the comparison above can fail: resumed with one part of the state from another run, training ends elsewhere
    states, others = [], []
    model, _ = run_fit(states=states)
    run_fit(states=others, seed=4, lr=0.02)
    state = {**roundtrip(states[2]), part: roundtrip(others[2])[part]}
    again, _ = run_fit(resume=state)
    assert not same_weights(model, again)


def test_the_weight_average_is_part_of_the_state():
    states, others = [], []
    model, _ = run_fit(states=states, ema_decay=0.9, restore_best=False)
    run_fit(states=others, seed=4, lr=0.02, ema_decay=0.9)
    again, _ = run_fit(resume=roundtrip(states[2]), ema_decay=0.9, restore_best=False)
    assert same_weights(model, again)
    swapped, _ = run_fit(resume={**roundtrip(states[2]), "ema": roundtrip(others[2])["ema"]}, ema_decay=0.9,
                         restore_best=False)
    assert not same_weights(model, swapped)


def test_a_state_without_a_weight_average_is_not_resumed_with_one():
    states = []
    run_fit(states=states)
    with pytest.raises(GoodfitError, match="has no weight average, but train.ema_decay is on.*train.ema_decay: 0"):
        run_fit(resume=roundtrip(states[1]), ema_decay=0.9)


def test_checkpoints_discard_a_stale_or_broken_state_and_say_so(tmp_path):
    lines = []
    old = Checkpoints("old", folder=tmp_path / "ck", log=lines.append)
    old.save({"epoch": 3, "history": []})
    (tmp_path / "ck" / "fold2.pt").write_bytes(b"not a state")
    assert Checkpoints("old", folder=tmp_path / "ck", log=lines.append).load()["epoch"] == 3
    assert "discarded the resume checkpoint" in lines[0] and "fold2.pt" in lines[0]  # broken: never resumed
    assert lines[1:] == [f"train: resuming after epoch 3 from {tmp_path / 'ck' / 'state.pt'}"]
    lines.clear()
    new = Checkpoints("new", folder=tmp_path / "ck", log=lines.append)
    assert new.load() is None and new.load(2) is None
    assert len(lines) == 1 and "discarded the resume checkpoint" in lines[0] and "state.pt" in lines[0]
    assert "training starts at epoch 1" in lines[0]
    assert not list((tmp_path / "ck").glob("*.pt"))


def test_a_state_survives_the_stage_failing_and_clear_removes_it(tmp_path):
    ck = Checkpoints("f", folder=tmp_path / "checkpoints" / "train", log=lambda _: None)
    with pytest.raises(KeyboardInterrupt), all_or_nothing():
        ck.save({"epoch": 1, "history": []})
        raise KeyboardInterrupt  # Ctrl-C: the stage's outputs roll back, the resume state stays
    assert ck.load()["epoch"] == 1
    ck.clear()
    assert not (tmp_path / "checkpoints").exists()


def test_the_fingerprint_changes_with_params_data_and_code(tmp_path):
    data, code = tmp_path / "data.npz", tmp_path / "code.py"
    data.write_bytes(b"a")
    code.write_bytes(b"x = 1")
    base = fingerprint({"seed": 0}, [data], [code])
    assert fingerprint({"seed": 0}, [data], [code]) == base
    assert fingerprint({"seed": 1}, [data], [code]) != base
    data.write_bytes(b"b")
    assert fingerprint({"seed": 0}, [data], [code]) != base
    data.write_bytes(b"a")
    code.write_bytes(b"x = 2")
    assert fingerprint({"seed": 0}, [data], [code]) != base


def test_a_cross_validation_ensemble_resumes_inside_its_second_member(tmp_path):
    from goodfit.crossval import fit_cross_validated
    from goodfit.models import model_spec

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.normal(size=120) > 0).astype(np.int64)
    spec = model_spec(kind="mlp", modality="tabular", input_shape=[4], n_classes=2, hidden=[8], channels=[4],
                      dropout=0.2, batch_norm=False, mean=[0.0] * 4, std=[1.0] * 4)
    fit_kwargs = dict(lr=0.01, max_epochs=6, patience=6, batch_size=16, verbose=False)

    def ensemble(ck, on_epoch=None):
        return fit_cross_validated(spec, x_train=x[:90], y_train=y[:90], x_val=x[90:], y_val=y[90:], copies=0,
                                   folds=3, seed=1, fit_kwargs=fit_kwargs, on_epoch=on_epoch, checkpoints=ck)

    whole = ensemble(None)

    def stop(fold, row):
        if fold == 2 and row["epoch"] == 3:
            raise KeyboardInterrupt

    lines = []
    ck = Checkpoints("f", folder=tmp_path / "ck", log=lines.append)
    with pytest.raises(KeyboardInterrupt):
        ensemble(ck, on_epoch=stop)
    seen = []
    resumed = ensemble(Checkpoints("f", folder=tmp_path / "ck", log=lines.append),
                       on_epoch=lambda fold, row: seen.append((fold, row["epoch"])))
    assert any("resuming (fold 1) after epoch 6" in s for s in lines)  # finished: restored, not retrained
    assert any("resuming (fold 2) after epoch 2" in s for s in lines)  # the stop came before epoch 3's state
    assert seen[0] == (2, 3) and seen[-1] == (3, 6)
    assert same_weights(whole.model, resumed.model)
    np.testing.assert_array_equal(whole.oof_proba, resumed.oof_proba)
    assert [r.history for r in whole.results] == [r.history for r in resumed.results]


# ------------------------------------------------------------------ a real training process, killed
def _outputs(folder):
    return {p: (folder / p).read_bytes() for p in ("models/model.pt", "reports/train/history.csv",
                                                     "reports/train/summary.json")}


def test_the_train_stage_killed_with_sigkill_resumes_and_ends_bit_identical(prepared, tmp_path, mlflow_template):
    params = dict(train={"max_epochs": 10, "hidden": [16], "channels": [4, 8], "batch_size": 64},
                  early_stopping={"patience": 10, "verbose": False})
    whole, killed = clone_prepared(prepared, tmp_path / "whole"), clone_prepared(prepared, tmp_path / "killed")
    for folder in (whole, killed):
        write_params(folder / "params.yaml", **params)
    cmd = [sys.executable, str(ROOT / "stages" / "train.py")]
    env = {**os.environ, **fresh_store(mlflow_template, whole / "mlflow.db")}
    subprocess.run(cmd, cwd=whole, env=env, check=True, capture_output=True, timeout=300)
    assert not (whole / "checkpoints").exists()  # removed once the outputs are written

    env = {**os.environ, **fresh_store(mlflow_template, killed / "mlflow.db")}
    proc = subprocess.Popen(cmd, cwd=killed, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("epoch   4/"):
            proc.send_signal(signal.SIGKILL)  # no handler, no clean-up: as a lost machine
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "models" / "model.pt").exists()
    state = torch.load(killed / "checkpoints" / "train" / "state.pt", weights_only=True)
    assert 3 <= state["epoch"] < 10  # the line of epoch 4 is printed just before its state is written

    again = subprocess.run(cmd, cwd=killed, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"train: resuming after epoch {state['epoch']} from checkpoints/train/state.pt" in again.stdout
    assert f"epoch {state['epoch'] + 1:3d}/10" in again.stdout and "epoch   1/10" not in again.stdout
    assert _outputs(killed) == _outputs(whole)
    assert not (killed / "checkpoints").exists()


def test_a_changed_param_discards_the_state_and_starts_at_epoch_1(prepared, tmp_path, mlflow_template):
    folder = clone_prepared(prepared, tmp_path / "p")
    write_params(folder / "params.yaml", train={"max_epochs": 4, "hidden": [16], "channels": [4, 8]})
    env = {**os.environ, **fresh_store(mlflow_template, folder / "mlflow.db")}
    cmd = [sys.executable, str(ROOT / "stages" / "train.py")]
    Checkpoints("written by another run", folder=folder / "checkpoints" / "train").save(
        {"epoch": 2, "history": []})
    result = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "train: discarded the resume checkpoint checkpoints/train/state.pt" in result.stdout
    assert "epoch   1/4" in result.stdout and "resuming" not in result.stdout
