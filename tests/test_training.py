import math

import numpy as np
import pytest
import torch

from goodfit.early_stopping import STOP_NON_FINITE, STOP_PATIENCE
from goodfit.errors import GoodfitError
from goodfit.models import build_model, model_spec
from goodfit.history import read as read_history, to_csv as history_csv
from goodfit.training import STOP_MAX_EPOCHS, fit, resolve_device


def blobs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = (rng.normal(size=(n, 4)) + y[:, None] * 2.0).astype(np.float32)
    return x, y.astype(np.int64)


def mlp(seed=0, dropout=0.0):
    spec = model_spec(kind="mlp", modality="tabular", input_shape=[4], n_classes=2, hidden=[8], channels=[4],
                      dropout=dropout, batch_norm=False, mean=[1.0] * 4, std=[1.0] * 4)
    return build_model(spec, seed=seed)


def train(**kw):
    x, y = blobs()
    xv, yv = blobs(100, seed=1)
    args = dict(x_train=x, y_train=y, x_val=xv, y_val=yv, lr=0.01, max_epochs=30, patience=3, batch_size=32,
                verbose=False, seed=0)
    args.update(kw)
    model = args.pop("model", None) or mlp()
    return model, fit(model, **args)


def test_learns_and_records_history():
    _, result = train()
    h = result.history
    assert h[-1]["val_accuracy"] > 0.9
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert set(h[0]) == {"epoch", "train_loss", "val_loss", "val_accuracy", "lr", "weight_l1", "weight_l2",
                         "sparsity", "train_eval_loss", "train_eval_accuracy"}
    assert result.stop_reason in (STOP_PATIENCE, STOP_MAX_EPOCHS)


def test_train_eval_measures_the_given_rows_in_eval_mode():
    # The last epoch's train_eval numbers are the final weights' loss and accuracy on x_train_eval in
    # eval mode (dropout off), computed independently here with a plain forward pass.
    x, y = blobs()
    originals = slice(0, 50)
    model, result = train(model=mlp(dropout=0.5), max_epochs=4, patience=10, restore_best=False,
                          x_train_eval=x[originals], y_train_eval=y[originals])
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x[originals])).double()
    last = result.history[-1]
    assert last["train_eval_loss"] == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[originals]))), rel=1e-5)
    assert last["train_eval_accuracy"] == pytest.approx(float((logits.argmax(1).numpy() == y[originals]).mean()))
    # as trained (dropout 0.5, weights moving) is not the same number
    assert abs(last["train_loss"] - last["train_eval_loss"]) > 1e-3


def test_train_eval_defaults_to_the_training_rows_and_can_be_switched_off():
    x, y = blobs()
    _, default = train(max_epochs=2)
    _, given = train(max_epochs=2, x_train_eval=x, y_train_eval=y)
    assert [r["train_eval_loss"] for r in default.history] == [r["train_eval_loss"] for r in given.history]
    _, off = train(max_epochs=2, measure_train=False)
    assert "train_eval_loss" not in off.history[0]
    # measuring changes no training number
    assert [r["val_loss"] for r in off.history] == [r["val_loss"] for r in default.history]


def test_same_seed_same_result():
    a, ra = train()
    b, rb = train()
    assert ra.history == rb.history
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_restores_best_weights():
    model, result = train(max_epochs=40, patience=2, lr=0.05)
    from goodfit.training import evaluate_loss

    xv, yv = blobs(100, seed=1)
    loss, _ = evaluate_loss(model, torch.from_numpy(xv), torch.from_numpy(yv))
    assert loss == pytest.approx(result.best_val_loss, rel=1e-6)
    assert result.best_epoch == min(result.history, key=lambda r: r["val_loss"])["epoch"]


def test_stops_on_patience():
    # A learning rate of 0 never improves after the first epoch.
    _, result = train(lr=1e-12, patience=2, optimizer="sgd")
    assert result.stop_reason == STOP_PATIENCE and result.stopped_epoch <= 4


def test_diverging_run_stops_and_keeps_best():
    def blow_up(row):  # weights turn non-finite after epoch 3, as in a diverging run
        if row["epoch"] == 3:
            with torch.no_grad():
                model.net[1].weight.fill_(math.inf)

    model = mlp()
    _, result = train(model=model, max_epochs=20, patience=10, on_epoch=blow_up)
    assert result.stop_reason == STOP_NON_FINITE
    assert result.stopped_epoch == 4
    assert result.best_epoch <= 3 and math.isfinite(result.best_val_loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_no_finite_epoch_is_an_error():
    x, y = blobs()
    x[0, 0] = 1e38  # overflows in the first epoch
    with pytest.raises(GoodfitError, match="no epoch produced a finite validation loss"):
        fit(mlp(), x_train=x * 1e5, y_train=y, x_val=x * 1e5, y_val=y, lr=1e6, optimizer="sgd", verbose=False)


def test_l1_increases_sparsity_and_weight_decay_shrinks_norm():
    _, plain = train(max_epochs=15, patience=20)
    _, l1 = train(max_epochs=15, patience=20, l1_lambda=0.01)
    _, l2 = train(max_epochs=15, patience=20, weight_decay=0.5, optimizer="adamw")
    assert l1.history[-1]["sparsity"] > plain.history[-1]["sparsity"]
    assert l2.history[-1]["weight_l2"] < plain.history[-1]["weight_l2"]


def test_history_csv_round_trip(tmp_path):
    _, result = train(max_epochs=3)
    path = tmp_path / "history.csv"
    path.write_text(history_csv(result.history))
    assert read_history(path) == result.history
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(GoodfitError, match="lacks columns"):
        read_history(tmp_path / "bad.csv")


def test_auto_device_picks_cuda_when_present(monkeypatch):
    # No GPU on the test machines: stand in for the driver's answer.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(GoodfitError, match="train.device is 'cuda' but no CUDA device is available"):
        resolve_device("cuda")


def test_amp_runs_the_forward_pass_in_bfloat16_and_still_learns(monkeypatch):
    from goodfit import numerics

    monkeypatch.setattr(numerics, "bfloat16_cpu_problem", lambda: None)  # as on a CPU with bfloat16 units
    model = mlp()
    dtypes = []
    model.net[1].register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    _, result = train(model=model, amp=True)
    assert set(dtypes) == {torch.bfloat16}  # training and validation under autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert result.history[-1]["val_accuracy"] > 0.9


@pytest.mark.parametrize("problem, fixes", [
    ("this CPU has no bfloat16 units (its flags have neither avx512_bf16 nor amx_bf16)", ["train.amp: false"]),
    ("oneDNN is capped at AVX2 (ONEDNN_MAX_CPU_ISA; repro.portable: true sets it), whose kernels have no bfloat16 "
     "units", ["train.amp: false", "repro.portable: false"]),
])
def test_amp_on_a_cpu_without_fast_bfloat16_is_refused_before_training(monkeypatch, problem, fixes):
    from goodfit import numerics

    monkeypatch.setattr(numerics, "bfloat16_cpu_problem", lambda: problem)
    epochs = []
    with pytest.raises(GoodfitError) as err:
        train(amp=True, on_epoch=epochs.append)
    assert problem in str(err.value) and all(f in str(err.value) for f in fixes)
    assert epochs == []  # refused before the first epoch
    train(amp=False, max_epochs=1)  # float32 is never refused


def test_cnn_trains_channels_last_and_comes_back_contiguous():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 96)
    x = (rng.random((96, 1, 8, 8)) + y[:, None, None, None] * 0.5).astype(np.float32)
    spec = model_spec(kind="cnn", modality="image", input_shape=[1, 8, 8], n_classes=2, hidden=[8], channels=[4, 8],
                      dropout=0.0, batch_norm=False, mean=[0.5], std=[0.3])
    model = build_model(spec, seed=0)
    result = fit(model, x_train=x, y_train=y, x_val=x, y_val=y, lr=0.01, max_epochs=3, batch_size=16,
                 verbose=False)
    assert all(p.is_contiguous() for p in model.parameters())
    from goodfit.training import evaluate_loss

    loss, _ = evaluate_loss(model, torch.from_numpy(x), torch.from_numpy(y))
    assert loss == pytest.approx(result.best_val_loss, rel=1e-5)


def test_label_smoothing_lowers_confidence_and_logs_plain_cross_entropy():
    smooth_model, smooth = train(max_epochs=8, patience=20, label_smoothing=0.3)
    plain_model, _ = train(max_epochs=8, patience=20)
    x = torch.from_numpy(blobs()[0])

    def confidence(model):
        with torch.no_grad():
            return float(model.eval()(x).softmax(dim=1).max(dim=1).values.mean())

    assert confidence(smooth_model) < confidence(plain_model) - 0.02
    # The smoothed objective cannot fall below the entropy of the targets (0.85, 0.15), 0.4227;
    # the logged loss is the plain cross-entropy, comparable with val_loss, and can.
    assert smooth.history[-1]["train_loss"] < 0.4227


def test_cosine_schedule_anneals_towards_zero():
    _, result = train(lr=0.01, max_epochs=12, patience=20, lr_schedule="cosine")
    lrs = [r["lr"] for r in result.history]  # the rate each epoch trained with
    assert lrs[0] == pytest.approx(0.01) and all(b < a for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(0.01 * (1 + math.cos(math.pi * 11 / 12)) / 2)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_warm_up_ramps_the_rate_then_the_schedule_runs_over_the_rest(schedule):
    _, result = train(lr=0.01, max_epochs=10, patience=20, lr_schedule=schedule, warmup_epochs=3)
    lrs = [r["lr"] for r in result.history]
    assert lrs[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])
    # epochs 4 to 10 at the full rate, or its cosine over those 7 epochs
    rest = [0.01] * 7 if schedule == "constant" else [0.01 * (1 + math.cos(math.pi * k / 7)) / 2 for k in range(7)]
    assert lrs[3:] == pytest.approx(rest)


def test_a_warm_up_with_the_plateau_schedule_is_refused():
    with pytest.raises(GoodfitError, match="train.warmup_epochs works with train.lr_schedule constant or cosine"):
        train(lr_schedule="plateau", warmup_epochs=2)


def test_plateau_schedule_lowers_the_rate_when_validation_stalls():
    # A vanishing rate never improves the validation loss after epoch 1: the rate drops each epoch.
    _, result = train(lr=1e-12, optimizer="sgd", max_epochs=4, patience=20, lr_schedule="plateau",
                      lr_factor=0.1, lr_patience=0)
    assert [r["lr"] for r in result.history] == pytest.approx([1e-12, 1e-12, 1e-13, 1e-14])


def test_unknown_schedule():
    with pytest.raises(GoodfitError, match="'lr_schedule' parameter must be 'constant', 'plateau' or 'cosine'"):
        train(lr_schedule="step")


@pytest.mark.parametrize("monitor", ["val_accuracy", "val_auc"])
def test_early_stopping_can_watch_a_score(monitor):
    _, result = train(monitor=monitor, max_epochs=15, patience=3)
    if monitor == "val_auc":
        assert all(0.5 < r["val_auc"] <= 1.0 for r in result.history)
    scores = [r[monitor] for r in result.history]
    assert result.best_epoch == int(np.argmax(scores)) + 1  # the first epoch with the highest score
    assert result.best_val_loss == result.history[result.best_epoch - 1]["val_loss"]
    header = history_csv(result.history).splitlines()[0]
    tail = ",sparsity,train_eval_loss,train_eval_accuracy"
    assert header.endswith(tail + ",val_auc") if monitor == "val_auc" else header.endswith(tail)


def _steps(opt_name, lean, n=25, schedule="cosine"):
    from goodfit.training import OptimizerStep, make_optimizer, make_scheduler

    model = mlp(seed=3, dropout=0.0)
    opt = make_optimizer(model, name=opt_name, lr=0.05, weight_decay=0.01)
    scheduler = make_scheduler(opt, name=schedule, max_epochs=n)
    step = OptimizerStep(opt)
    x, y = blobs(64)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for i in range(n):
        loss = torch.nn.functional.cross_entropy(model(xt[i % 2::2]), yt[i % 2::2])
        step.zero_grad()
        loss.backward()
        step.step() if lean else opt.step()
        if scheduler is not None:
            scheduler.step()
    return model, opt, step


@pytest.mark.parametrize("opt_name", ["adamw", "adam"])
def test_lean_optimizer_step_is_torch_optims_step_bit_for_bit(opt_name):
    lean_model, lean_opt, step = _steps(opt_name, lean=True)
    assert step._groups is not None  # the lean path ran
    ref_model, ref_opt, _ = _steps(opt_name, lean=False)
    assert all(torch.equal(p, q) for p, q in zip(lean_model.parameters(), ref_model.parameters()))
    for p, q in zip(lean_model.parameters(), ref_model.parameters()):
        a, b = lean_opt.state[p], ref_opt.state[q]
        assert all(torch.equal(a[k], b[k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    assert float(lean_opt.state[next(lean_model.parameters())]["step"]) == 25


def test_optimizer_step_falls_back_to_torch_optim_where_it_cannot_be_lean():
    lean_model, _, step = _steps("sgd", lean=True)
    ref_model, _, _ = _steps("sgd", lean=False)
    assert step._groups is None
    assert all(torch.equal(p, q) for p, q in zip(lean_model.parameters(), ref_model.parameters()))


def test_parameter_without_gradient_goes_through_torch_optim():
    from goodfit.training import OptimizerStep, make_optimizer

    model = mlp(seed=0)
    opt = make_optimizer(model, name="adamw", lr=0.1, weight_decay=0.0)
    step = OptimizerStep(opt)
    x = torch.randn(8, 4)
    for frozen_bias in (True, False, False, True):  # first step without a gradient: no state for it yet
        loss = model(x).sum()
        step.zero_grad()
        loss.backward()
        if frozen_bias:
            model.net[-1].bias.grad = None
        before = model.net[-1].bias.detach().clone()
        step.step()
    assert torch.equal(model.net[-1].bias, before)  # torch.optim skips a parameter without a gradient
    assert step._groups is not None  # lean from the second step on
    assert float(opt.state[model.net[-1].bias]["step"]) == 2
    assert float(opt.state[model.net[-1].weight]["step"]) == 4


def test_gathering_rows_in_chunks_does_not_change_training(monkeypatch):
    import goodfit.training as training

    _, whole = train(model=mlp(dropout=0.3), max_epochs=4)
    monkeypatch.setattr(training, "GATHER_BYTES", 3 * 4 * 4 * 32)  # 3 batches of 4 float32 features per gather
    _, chunked = train(model=mlp(dropout=0.3), max_epochs=4)
    assert chunked.history == whole.history


@pytest.mark.parametrize("engine", [True, False])
def test_backward_gives_the_gradients_of_tensor_backward(monkeypatch, engine):
    import goodfit.training as training

    if not engine:
        monkeypatch.setattr(training, "_engine_run_backward", None)  # the fallback for other torch versions
    assert engine == (training._engine_run_backward is not None)
    x, y = blobs(32)
    grads = []
    for run in (training._backward, torch.Tensor.backward):
        model = mlp(seed=1)
        torch.manual_seed(0)
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss = loss + 1e-3 * torch.stack([p.abs().sum() for p in model.parameters()]).sum()
        run(loss)
        grads.append([p.grad for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    with pytest.raises(RuntimeError, match="does not require grad"):
        training._backward(torch.zeros(()))


class SampleRecorder(torch.nn.Module):
    """A linear classifier that notes which samples each training batch holds (feature 0 is the sample's index)."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.batches = []

    def forward(self, x):
        if self.training:
            self.batches.append(x[:, 0].round().long().tolist())
        return self.linear(x)


def indexed(n, seed=0):
    """``n`` two-feature samples whose first feature is their index, with labels from the second."""
    rng = np.random.default_rng(seed)
    second = rng.normal(size=n)
    return np.stack([np.arange(n), second], axis=1).astype(np.float32), (second > 0).astype(np.int64)


def epochs_seen(model, n, batch_size):
    """The samples of each epoch, in training order, from the recorded batches."""
    per_epoch = math.ceil(n / batch_size)
    return [sum(model.batches[i:i + per_epoch], []) for i in range(0, len(model.batches), per_epoch)]


def test_each_epoch_trains_on_every_sample_once_in_a_fresh_shuffled_order():
    """A shuffled epoch differs from the unshuffled order and from the epoch before, but covers every
    training sample exactly once, in mini-batches of ``batch_size`` (the last one holding the rest)."""
    n, batch_size = 50, 8
    x, y = indexed(n)
    model = SampleRecorder()
    fit(model, x_train=x, y_train=y, x_val=x[:10], y_val=y[:10], batch_size=batch_size, max_epochs=3, patience=10,
        lr=1e-3, verbose=False, seed=0)
    assert [len(b) for b in model.batches] == ([batch_size] * (n // batch_size) + [n % batch_size]) * 3
    epochs = epochs_seen(model, n, batch_size)
    assert len(epochs) == 3
    for order in epochs:
        assert sorted(order) == list(range(n))  # every sample once
        assert order != list(range(n))  # shuffled
    assert epochs[0] != epochs[1] != epochs[2]


def test_the_seed_decides_the_shuffled_order():
    """The same seed gives the same order of training samples; another seed another order."""
    n, batch_size = 40, 16
    x, y = indexed(n)
    orders = []
    for seed in (0, 0, 1):
        model = SampleRecorder()
        fit(model, x_train=x, y_train=y, x_val=x[:10], y_val=y[:10], batch_size=batch_size, max_epochs=1,
            lr=1e-3, verbose=False, seed=seed)
        orders.append(epochs_seen(model, n, batch_size)[0])
    assert orders[0] == orders[1] != orders[2]


def test_train_loss_is_the_mean_over_every_training_sample():
    """With a learning rate of 0 the weights never move, so an epoch's train_loss is the plain mean
    cross-entropy over all training samples, whatever the batch size and a smaller last batch."""
    n = 45
    x, y = indexed(n)
    x[:, 0] /= n  # keep the logits small
    for batch_size in (7, 45, 64):
        model = SampleRecorder()
        with torch.no_grad():
            expected = float(torch.nn.functional.cross_entropy(model(torch.from_numpy(x)).double(),
                                                               torch.from_numpy(y)))
        result = fit(model, x_train=x, y_train=y, x_val=x, y_val=y, batch_size=batch_size, max_epochs=2, lr=0.0,
                     optimizer="sgd", verbose=False, seed=3)
        assert [r["train_loss"] for r in result.history] == pytest.approx([expected] * 2, rel=1e-6)


class DroppingSampleRecorder(SampleRecorder):
    """The same recorder with a dropout layer, which draws from torch's global generator every batch."""

    def __init__(self):
        super().__init__()
        self.dropout = torch.nn.Dropout(0.5)

    def forward(self, x):
        return super().forward(self.dropout(x) * 0 + x)  # the mask is drawn; the recorded indices stay exact


def test_the_shuffled_order_depends_on_the_seed_alone_not_on_dropout_draws():
    """The shuffle has its own seeded generator: a model that draws dropout masks between batches sees
    the very same order of samples, epoch after epoch, as one that draws nothing."""
    n, batch_size = 40, 8
    x, y = indexed(n)
    orders = []
    for model in (SampleRecorder(), DroppingSampleRecorder()):
        fit(model, x_train=x, y_train=y, x_val=x[:10], y_val=y[:10], batch_size=batch_size, max_epochs=3,
            patience=10, lr=1e-3, verbose=False, seed=0)
        orders.append(epochs_seen(model, n, batch_size))
    assert len(orders[0]) == 3 and orders[0] == orders[1]


def test_ema_keeps_the_moving_average_of_every_step(monkeypatch):
    # A plain fit, its weights recorded after every optimizer step, then the same fit with
    # ema_decay: training takes the same steps (dropout included), and the model it returns
    # (restore_best off) is the average avg = d avg + (1 - d) w over those steps, computed here.
    import goodfit.training as training

    steps = []
    step = training.OptimizerStep.step

    def recording(self):
        step(self)
        steps.append({id(p): p.detach().clone() for p in self.params})

    monkeypatch.setattr(training.OptimizerStep, "step", recording)
    plain, plain_result = train(model=mlp(dropout=0.3), max_epochs=3, patience=10, restore_best=False)
    monkeypatch.undo()
    names = {id(p): name for name, p in plain.named_parameters()}
    decay = 0.9
    average = {names[k]: v for k, v in steps[0].items()}
    for weights in steps[1:]:
        for k, w in weights.items():
            average[names[k]] = average[names[k]] + (w - average[names[k]]) * (1 - decay)
    averaged, result = train(model=mlp(dropout=0.3), max_epochs=3, patience=10, restore_best=False,
                             ema_decay=decay)
    assert len(steps) == 3 * 7  # 200 rows in batches of 32
    for name, p in averaged.named_parameters():
        torch.testing.assert_close(p, average[name], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(p, dict(plain.named_parameters())[name])  # the average, not the last step
    assert [r["train_loss"] for r in result.history] == [r["train_loss"] for r in plain_result.history]
    assert [r["val_loss"] for r in result.history] != [r["val_loss"] for r in plain_result.history]


def test_ema_early_stopping_keeps_the_best_average():
    model, result = train(max_epochs=30, patience=3, ema_decay=0.9)
    xv, yv = blobs(100, seed=1)
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model.eval()(torch.from_numpy(xv)), torch.from_numpy(yv))
    assert result.best_val_loss == pytest.approx(float(loss), rel=1e-5)
    assert result.best_val_loss == min(r["val_loss"] for r in result.history)


@pytest.mark.parametrize("decay", [1.0, -0.1, 2])
def test_ema_decay_outside_0_1_is_refused(decay):
    with pytest.raises(GoodfitError, match=r"'ema_decay' parameter must be 0 \(off\) or in \(0, 1\), e\.g\. 0\.99"):
        train(ema_decay=decay)
