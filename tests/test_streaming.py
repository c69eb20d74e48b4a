"""Training on more data than memory: rows read from disk per chunk, with the model trained from memory."""

import numpy as np
import pytest
import torch

from goodfit import streaming, training
from goodfit.errors import GoodfitError
from goodfit.io import open_npz_array, write_npz
from goodfit.models import build_model, model_spec
from goodfit.params import parse_params
from goodfit.splitting import normalization_stats

from conftest import clone_prepared, fresh_store, run_stage_script, write_params


def test_rows_are_taken_from_disk_in_the_order_asked(tmp_path, rng):
    x = rng.integers(0, 256, (50, 1, 3, 3), dtype=np.uint8)
    write_npz(tmp_path / "a.npz", x=x, y=np.zeros(50, np.int64))
    disk = open_npz_array(tmp_path / "a.npz", "x")
    for idx in (rng.permutation(50), np.array([7, 7, 3, 4, 5, 49, 0]), np.arange(10, 20), np.array([], np.int64)):
        np.testing.assert_array_equal(disk.take(idx), x[idx])
    np.testing.assert_array_equal(np.asarray(disk.head(5)), x[:5])
    assert disk.nbytes == x.nbytes
    with pytest.raises(IndexError, match=r"row indices must lie in 0\.\.49"):
        disk.take(np.array([3, 50]))


def _fit(x, y, xv, yv, spec, x_eval):
    model = build_model(spec, seed=0)
    result = training.fit(model, x_train=x, y_train=y, x_val=xv, y_val=yv, batch_size=16, max_epochs=3, seed=0,
                          verbose=False, x_train_eval=x_eval, y_train_eval=y[:40])
    return model.state_dict(), result.history


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_training_from_disk_is_training_from_memory_bit_for_bit(tmp_path, rng, monkeypatch, kind):
    """Neither where the rows live nor how many are gathered at once changes the trained model."""
    if kind == "cnn":
        x = rng.integers(0, 256, (120, 1, 8, 8), dtype=np.uint8)
        y = (x.reshape(120, -1).mean(axis=1) > 127).astype(np.int64)
        stats = normalization_stats(x, "image")
        spec = model_spec(kind="cnn", modality="image", input_shape=[1, 8, 8], n_classes=2, hidden=[8],
                          channels=[4], dropout=0.2, batch_norm=True, kernel_size=3, global_pool=True, **stats)
    else:
        x = rng.normal(size=(120, 6)).astype(np.float32)
        y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
        stats = normalization_stats(x, "tabular")
        spec = model_spec(kind="mlp", modality="tabular", input_shape=[6], n_classes=2, hidden=[8], channels=[4],
                          dropout=0.2, batch_norm=False, kernel_size=3, global_pool=True, **stats)
    write_npz(tmp_path / "train.npz", x=x, y=y)
    disk = open_npz_array(tmp_path / "train.npz", "x")
    xv, yv = x[:30], y[:30]
    memory = _fit(x, y, xv, yv, spec, x[:40])
    runs = [_fit(disk, y, xv, yv, spec, disk.head(40))]
    monkeypatch.setattr(training, "GATHER_BYTES", 16 * 4 * x[0].size)  # one batch per chunk: many disk reads
    runs.append(_fit(disk, y, xv, yv, spec, disk.head(40)))
    for state, history in runs:
        assert history == memory[1]
        for key in state:
            assert torch.equal(state[key], memory[0][key]), key


def test_memory_budget_setting():
    assert streaming.memory_budget(2) == 2 * 2**30
    assert 0 < streaming.memory_budget("auto") <= streaming.available_memory()
    assert parse_params({"train": {"memory_budget": 0.5}}).train.memory_budget == 0.5
    with pytest.raises(GoodfitError, match=r"train\.memory_budget must be a number > 0 .*or one of 'auto', got -1"):
        parse_params({"train": {"memory_budget": -1}})


def test_train_stage_on_a_small_budget_reads_from_disk_with_the_same_outputs(prepared, tmp_path, mlflow_template):
    outs = {}
    for budget in ("auto", 1e-5):  # 1e-5 GiB: about 10 kB, far less than the augmented set
        cwd = clone_prepared(prepared, tmp_path / str(budget))
        write_params(cwd / "params.yaml", train={"max_epochs": 3, "hidden": [16], "channels": [4, 8],
                                                 "batch_size": 128, "memory_budget": budget})
        result = run_stage_script("train", cwd, env=fresh_store(mlflow_template, cwd / "mlflow.db"))
        assert result.returncode == 0, result.stderr
        outs[budget] = cwd, result.stdout
    assert "rows stay on disk" in outs[1e-5][1] and "rows stay on disk" not in outs["auto"][1]
    for rel in ("models/model.pt", "reports/train/history.csv", "reports/train/summary.json"):
        assert (outs["auto"][0] / rel).read_bytes() == (outs[1e-5][0] / rel).read_bytes(), rel


def test_a_cross_validation_ensemble_that_does_not_fit_is_refused(prepared, tmp_path, mlflow_template):
    cwd = clone_prepared(prepared, tmp_path / "cv")
    write_params(cwd / "params.yaml", train={"max_epochs": 2, "folds": 3, "memory_budget": 1e-5})
    result = run_stage_script("train", cwd, env=fresh_store(mlflow_template, cwd / "mlflow.db"))
    assert result.returncode != 0
    assert "cross-validation ensemble (train.folds: 3) needs its rows in memory" in result.stderr
    assert "Raise train.memory_budget" in result.stderr
    assert not (cwd / "models/model.pt").exists()
