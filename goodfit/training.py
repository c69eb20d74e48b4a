"""The fit loop: train / eval modes, history, early stopping, regularization.

Speed (see benchmarks/): tensors stay in memory on the device and batches are
taken by index permutation (no DataLoader), gathered and standardized a chunk of
batches at a time; batch losses stay on the device until the epoch ends (no
per-batch host sync); the optimizer step is PyTorch's fused kernel called without
``torch.optim``'s per-call bookkeeping (:class:`OptimizerStep`) and the backward
pass is the autograd engine's call without ``Tensor.backward``'s Python preamble
(:func:`_backward`); images train in channels-last layout, and validation runs
under ``inference_mode`` in large batches. ``amp`` adds bfloat16 autocast.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from goodfit.early_stopping import STOP_NON_FINITE, EarlyStopping
from goodfit.errors import GoodfitError
from goodfit.regularization import l1_penalty, param_groups, weight_stats
from goodfit.storage import inference_rows, to_float32_tensor

try:  # the autograd engine's entry point behind Tensor.backward(); see _backward()
    from torch.autograd.graph import _engine_run_backward
except ImportError:  # pragma: no cover - another torch version
    _engine_run_backward = None

STOP_MAX_EPOCHS = "max_epochs"
GATHER_BYTES = 32 * 2**20  # shuffled training rows gathered at once


@dataclass
class FitResult:
    """What training did: one history row per epoch and how it ended."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_loss: float | None = None
    stopped_epoch: int = 0
    stop_reason: str = STOP_MAX_EPOCHS


def configure_torch(*, threads: int, deterministic: bool = True) -> None:
    """Fix the thread count and ask for deterministic kernels (reproducible outputs)."""
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=False)


def check_cpu_amp() -> None:
    """Refuse ``train.amp`` on a CPU where bfloat16 would train several times slower than float32.

    Raises:
        GoodfitError: naming the reason (:func:`goodfit.numerics.bfloat16_cpu_problem`) and the fixes.
    """
    from goodfit import numerics

    problem = numerics.bfloat16_cpu_problem()
    if problem:
        capped = "oneDNN is capped" in problem
        raise GoodfitError(
            f"params.yaml: train.amp is true, which trains in bfloat16, but {problem}: bfloat16 would run several "
            "times slower than float32 here. Set train.amp: false"
            + (" (or repro.portable: false, to use this CPU's own bfloat16 kernels, at the cost of bits that differ "
               "between CPUs)" if capped else "")
            + ", or train on a GPU (train.device: cuda).")


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU.

    Raises:
        GoodfitError: ``cuda`` was asked for and none is available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise GoodfitError("params.yaml: train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'.")
    return torch.device(device)


def make_optimizer(model: nn.Module, *, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam (L2 added to the gradient), AdamW (decoupled decay) or SGD with momentum 0.9.

    The fused implementations (one kernel per parameter group instead of a dozen
    small ops per tensor) where PyTorch has them for the model's device: the
    step of a small model costs about half as much on the CPU.
    """
    groups = param_groups(model, weight_decay)
    device = next(model.parameters()).device.type
    fused = {"fused": True} if device in ("cpu", "cuda") else {}
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, **fused)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, **fused)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, **fused)
    raise GoodfitError(f"The 'optimizer' parameter must be 'adam', 'adamw' or 'sgd', got {name!r}.")


class OptimizerStep:
    """``zero_grad()`` and ``step()`` of an optimizer for the fit loop, lean where that is exact.

    ``torch.optim``'s ``step`` re-collects each group's tensors, regroups them by device
    and dtype and runs its hooks on every call. For a small model on the CPU that
    bookkeeping costs more than the arithmetic: about 140 of the 365 µs of a step of
    the 20-64-2 MLP at batch 32 on one core. For fused Adam / AdamW with every parameter
    on one device and dtype, once the first real ``step`` has created the optimizer
    state, this calls the same fused kernel directly on cached tensor lists, as
    ``torch.optim`` would: the same arithmetic, bit for bit (tests/test_training.py),
    and the state and ``param_groups`` (so the learning-rate schedulers) stay the
    optimizer's own. Anything else (SGD, step hooks, a parameter without a gradient)
    goes through ``optimizer.step()``.
    """

    def __init__(self, opt: torch.optim.Optimizer):
        self.opt = opt
        self.after_step: Callable[[], None] | None = None  # called after every step (the weight average)
        self.params = [p for g in opt.param_groups for p in g["params"]]
        self._groups: list[tuple] | None = None
        self._lean = self._can_be_lean()

    def _can_be_lean(self) -> bool:
        from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

        groups = self.opt.param_groups
        return (type(self.opt) in (torch.optim.Adam, torch.optim.AdamW)
                and all(g["fused"] and not (g["amsgrad"] or g["maximize"] or g["differentiable"]
                                            or g["capturable"]) for g in groups)
                and len({(p.device, p.dtype) for p in self.params}) == 1
                and not (self.opt._optimizer_step_pre_hooks or self.opt._optimizer_step_post_hooks
                         or _global_optimizer_pre_hooks or _global_optimizer_post_hooks))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self._step()
        if self.after_step is not None:
            self.after_step()

    def _step(self) -> None:
        if self._groups is None or any(p.grad is None for p in self.params):
            self.opt.step()  # the first step creates the state the lean path uses
            if self._lean and self._groups is None and all("step" in self.opt.state[p] for p in self.params):
                state = self.opt.state
                # Every parameter's step count becomes a view into one tensor, so one add_
                # counts a step for all of them (torch.optim's own step still sees one count each).
                self._steps = torch.stack([state[p]["step"] for p in self.params])
                for i, p in enumerate(self.params):
                    state[p]["step"] = self._steps[i]
                self._groups = [(g, g["params"], [state[p]["exp_avg"] for p in g["params"]],
                                 [state[p]["exp_avg_sq"] for p in g["params"]],
                                 [state[p]["step"] for p in g["params"]]) for g in self.opt.param_groups]
            return
        self._steps.add_(1.0)
        for group, params, exp_avgs, exp_avg_sqs, steps in self._groups:
            if not params:
                continue
            kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
            beta1, beta2 = group["betas"]
            kernel(params, [p.grad for p in params], exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                   lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                   eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)


def make_scheduler(opt: torch.optim.Optimizer, *, name: str, max_epochs: int, factor: float = 0.5,
                   patience: int = 3, mode: str = "min", warmup_epochs: int = 0):
    """The learning-rate schedule, stepped once per epoch (``None`` for a constant rate).

    ``plateau`` multiplies the rate by ``factor`` after ``patience`` epochs without a
    better monitored validation value; ``cosine`` anneals it to 0 over ``max_epochs``.
    ``warmup_epochs`` W > 0 (constant and cosine): epoch k <= W trains at k / (W + 1) of the
    rate (``LinearLR``), then the schedule runs over the remaining epochs (``SequentialLR``).
    """
    lr_scheduler = torch.optim.lr_scheduler
    if name not in ("constant", "plateau", "cosine"):
        raise GoodfitError(f"The 'lr_schedule' parameter must be 'constant', 'plateau' or 'cosine', got {name!r}.")
    if warmup_epochs:
        if name == "plateau":
            raise GoodfitError("params.yaml: train.warmup_epochs works with train.lr_schedule constant or cosine, "
                               "not plateau (which lowers the rate when validation stalls, as a warm-up would "
                               "make it look): set train.warmup_epochs: 0, or train.lr_schedule: cosine.")
        if warmup_epochs >= max_epochs:
            raise GoodfitError(f"params.yaml: train.warmup_epochs ({warmup_epochs}) must be smaller than "
                               f"train.max_epochs ({max_epochs}): lower it, or raise train.max_epochs.")
        warmup = lr_scheduler.LinearLR(opt, start_factor=1 / (warmup_epochs + 1), end_factor=1.0,
                                       total_iters=warmup_epochs)
        if name == "constant":
            return warmup
        return lr_scheduler.SequentialLR(opt, [warmup, lr_scheduler.CosineAnnealingLR(
            opt, T_max=max_epochs - warmup_epochs)], milestones=[warmup_epochs])
    if name == "constant":
        return None
    if name == "plateau":
        return lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=factor, patience=patience)
    return lr_scheduler.CosineAnnealingLR(opt, T_max=max_epochs)


@torch.inference_mode()
def evaluate_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, amp_dtype=None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy with the model in eval mode (dropout off)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    rows = inference_rows(x)
    for start in range(0, len(x), rows):
        xb, yb = x[start:start + rows], y[start:start + rows]
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(to_float32_tensor(xb))
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum").double()
        correct += (logits.argmax(dim=1) == yb).sum()
    model.train(was_training)
    n = len(x)
    return float(loss_sum) / n, float(correct) / n


def fit_options(params) -> dict:
    """:func:`fit`'s keyword arguments from ``params.yaml`` (all but the data, ``seed`` and ``on_epoch``)."""
    t, es = params.train, params.early_stopping
    return dict(optimizer=t.optimizer, lr=t.lr, weight_decay=params.weight_decay, l1_lambda=params.l1_lambda,
                batch_size=t.batch_size, max_epochs=t.max_epochs, patience=es.patience, delta=es.delta,
                restore_best=es.restore_best, device=t.device, amp=t.amp, verbose=es.verbose,
                language=params.report.language, label_smoothing=t.label_smoothing, lr_schedule=t.lr_schedule,
                lr_factor=t.lr_factor, lr_patience=t.lr_patience, monitor=es.monitor, ema_decay=t.ema_decay,
                warmup_epochs=t.warmup_epochs)


def fit(model: nn.Module, *, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        optimizer: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.0, l1_lambda: float = 0.0,
        batch_size: int = 64, max_epochs: int = 100, patience: int = 7, delta: float = 0.0,
        restore_best: bool = True, seed: int = 0, device: str = "cpu", amp: bool = False,
        verbose: bool = True, language: str = "ja", trace_func: Callable[[str], object] = print,
        on_epoch: Callable[[dict], None] | None = None, label_smoothing: float = 0.0,
        monitor: str = "val_loss", lr_schedule: str = "constant", lr_factor: float = 0.5,
        lr_patience: int = 3, x_train_eval: np.ndarray | None = None, y_train_eval: np.ndarray | None = None,
        measure_train: bool = True, checkpoint: Callable[[dict], None] | None = None,
        resume: dict | None = None, ema_decay: float = 0.0, warmup_epochs: int = 0) -> FitResult:
    """Train ``model`` with early stopping and L1 / L2 regularization.

    Args:
        model: the network (moved to ``device``).
        x_train, y_train, x_val, y_val: features as stored (float32, float16 or uint8 levels,
            :mod:`goodfit.storage`; they stay so in memory and are decoded to float32 a
            chunk of rows at a time) and int64 labels. ``x_train`` (and ``x_train_eval``) may
            be an :class:`~goodfit.io.NpzArray`: its rows stay on disk and each gathered chunk
            is read from there (:mod:`goodfit.streaming`), with the same result bit for bit.
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        lr: learning rate.
        weight_decay: L2 strength (on weights, not biases).
        l1_lambda: L1 penalty strength, ``loss + l1_lambda * sum|w|``.
        batch_size: mini-batch size.
        max_epochs: upper bound on epochs.
        patience, delta: early stopping on the validation loss.
        restore_best: load the best epoch's weights at the end.
        seed: seeds the shuffling and dropout.
        device: ``cpu``, ``cuda`` or ``auto``.
        amp: bfloat16 autocast (mixed precision) on CUDA and the CPU; fast on GPUs
            and on CPUs with bfloat16 units (AMX, AVX512-BF16) that oneDNN may use,
            refused on other CPUs (:func:`check_cpu_amp`), where it is several times slower.
        verbose: print early-stopping messages and a line per epoch.
        language: ``ja`` or ``en`` for messages.
        trace_func: print-like function for messages.
        on_epoch: called with each history row (e.g. to log metrics).
        label_smoothing: share of the target probability spread over all classes in the
            training loss (the logged ``train_loss`` stays the plain cross-entropy).
        monitor: what early stopping (and the plateau schedule) watches: ``val_loss``
            (lower is better), ``val_accuracy`` or ``val_auc`` (higher is better).
        lr_schedule, lr_factor, lr_patience, warmup_epochs: see :func:`make_scheduler`.
        x_train_eval, y_train_eval: the rows whose loss and accuracy each epoch records as
            ``train_eval_loss`` / ``train_eval_accuracy``, in eval mode at the epoch's end,
            measured exactly as the validation split is (default: ``x_train``, ``y_train``;
            the train stage passes the training originals, without their augmented copies).
            ``train_loss`` stays the running mean of the epoch's batch losses as trained.
        measure_train: ``False`` skips that measurement (no ``train_eval_*`` columns).
        checkpoint: called after every epoch with the loop's whole state (weights, optimizer,
            scheduler, early stopping, RNGs, history; :mod:`goodfit.resume` writes it).
        resume: such a state: training goes on after its epoch, bit-identical to a run that
            was never stopped (the same arguments otherwise).
        ema_decay: 0 (off), or the decay ``d`` of an exponential moving average of the weights
            (and buffers) kept after every optimizer step, ``avg = d * avg + (1 - d) * w``
            (``torch.optim.swa_utils.AveragedModel``): each epoch is measured, early stopping
            judges and the best epoch's weights are kept on the average, not on the last
            step's weights; training itself follows the same steps either way.

    Returns:
        :class:`FitResult`; ``model`` holds the best weights when ``restore_best``.

    Raises:
        GoodfitError: no epoch produced a finite loss; ``amp`` on a CPU without fast bfloat16
            (:func:`check_cpu_amp`).
    """
    from goodfit import distributed

    rank, world = distributed.world()
    if rank != 0:  # rank 0 alone prints (and measures each epoch, below)
        verbose, trace_func = False, (lambda *a, **k: None)
    dev = resolve_device(device)
    if amp and dev.type == "cpu":
        check_cpu_amp()
    amp_dtype = torch.bfloat16 if amp else None
    # Images in channels-last layout: the CPU's convolution and max-pool kernels run
    # faster on it (same model, same values up to float rounding).
    layout = torch.channels_last if np.ndim(x_train) == 4 else torch.contiguous_format
    model.to(dev, memory_format=layout)
    # data-parallel (goodfit.distributed): the forward pass through DDP, which averages the ranks' gradients
    net = model if world == 1 else distributed.data_parallel(model, dev)
    xt = _rows(x_train, dev, layout)  # in memory on the device, or on disk (an NpzArray; goodfit.streaming)
    yt = torch.from_numpy(np.ascontiguousarray(y_train)).to(dev)
    xv = torch.from_numpy(np.ascontiguousarray(x_val)).to(dev, memory_format=layout)
    yv = torch.from_numpy(np.ascontiguousarray(y_val)).to(dev)
    if x_train_eval is None:
        xe, ye = xt, yt
    else:
        xe = _rows(x_train_eval, dev, layout)
        ye = torch.from_numpy(np.ascontiguousarray(y_train_eval)).to(dev)
    opt = make_optimizer(model, name=optimizer, lr=lr, weight_decay=weight_decay)
    stepper = OptimizerStep(opt)
    ema = _weight_average(model, ema_decay)
    if ema is not None:
        stepper.after_step = lambda: ema.update_parameters(model)
    judged = model if ema is None else ema.module  # the weights each epoch measures and keeps
    scheduler = make_scheduler(opt, name=lr_schedule, max_epochs=max_epochs, factor=lr_factor,
                               patience=lr_patience, mode="min" if monitor == "val_loss" else "max",
                               warmup_epochs=warmup_epochs)
    stopper = EarlyStopping(patience=patience, delta=delta, verbose=verbose, path=None, trace_func=trace_func,
                            language=language, mode="min" if monitor == "val_loss" else "max", monitor=monitor)
    gen = torch.Generator().manual_seed(seed)
    result = FitResult()
    n = len(xt)
    standardize = getattr(model, "input_standardize", None)
    cuda = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed + rank)  # dropout masks, each rank its own; the global state is restored on exit
        first = 1
        if resume is not None:
            first = _restore(resume, model=model, opt=opt, scheduler=scheduler, stopper=stopper, gen=gen,
                             result=result, cuda=bool(cuda), ema=ema)
        for epoch in range(first, max_epochs + 1):
            if stopper.early_stop:  # the resumed state had stopped already
                break
            model.train()
            perm = _shuffled(n, gen, dev)
            with standardize.applied_outside() if standardize is not None else \
                    contextlib.nullcontext(lambda rows: rows) as scale:
                prepare = lambda rows: scale(to_float32_tensor(rows))  # noqa: E731
                if world == 1:
                    train_loss = _train_epoch(model, stepper, xt, yt, perm, batch_size=batch_size,
                                              l1_lambda=l1_lambda, amp_dtype=amp_dtype,
                                              label_smoothing=label_smoothing, prepare=prepare)
                else:
                    train_loss = _train_epoch_shard(net, model, stepper, xt, yt, perm, batch_size=batch_size,
                                                    rank=rank, world=world, l1_lambda=l1_lambda,
                                                    amp_dtype=amp_dtype, label_smoothing=label_smoothing,
                                                    prepare=prepare)
            finite = math.isfinite(train_loss)
            row = None
            if rank == 0:  # with several processes, rank 0 measures the epoch and every rank gets its row
                val_loss, val_acc = evaluate_loss(judged, xv, yv, amp_dtype=amp_dtype) if finite else (math.nan,) * 2
                row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_acc,
                       "lr": opt.param_groups[0]["lr"], **weight_stats(judged)}
                if measure_train:  # the training originals measured as the validation split is (like for like)
                    row["train_eval_loss"], row["train_eval_accuracy"] = (
                        evaluate_loss(judged, xe, ye, amp_dtype=amp_dtype) if finite else (math.nan,) * 2)
                if finite and monitor == "val_auc":
                    row["val_auc"] = _auc(judged, xv, y_val)
            if world > 1:
                row = distributed.broadcast(row)
            result.history.append(row)
            if not math.isfinite(train_loss):
                stopper.early_stop, stopper.stop_reason = True, STOP_NON_FINITE
                trace_func(_non_finite_message(language, epoch))
            else:
                stopper(row[monitor], judged)
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(row[monitor])
                elif scheduler is not None:
                    scheduler.step()
            if on_epoch is not None:
                on_epoch(row)
            result.stopped_epoch = epoch
            if stopper.early_stop:
                result.stop_reason = stopper.stop_reason
            if checkpoint is not None:
                checkpoint(_state(epoch, model=model, opt=opt, scheduler=scheduler, stopper=stopper, gen=gen,
                                  result=result, cuda=bool(cuda), ema=ema))
            if stopper.early_stop:
                break
    if stopper.best_state is None:
        raise GoodfitError(
            f"Training diverged: no epoch produced a finite validation loss (stop reason: {result.stop_reason}). "
            "Lower train.lr or check the data for extreme values."
        )
    result.best_epoch = stopper.best_epoch
    result.best_val_loss = result.history[stopper.best_epoch - 1]["val_loss"]
    if restore_best:
        stopper.restore_best(model)
    elif ema is not None:  # the average is the model training made
        model.load_state_dict(ema.module.state_dict())
    model.to("cpu", memory_format=torch.contiguous_format)
    return result


def _weight_average(model: nn.Module, decay: float):
    """An exponential moving average of ``model``'s weights and buffers (``None`` when ``decay`` is 0)."""
    if not decay:
        return None
    if not 0.0 < decay < 1.0:
        raise GoodfitError(f"The 'ema_decay' parameter must be 0 (off) or in (0, 1), e.g. 0.99, got {decay!r}.")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _rows(x, dev: torch.device, layout):
    """Features for the fit loop: a tensor on ``dev``, or :class:`~goodfit.streaming.DiskRows` for an
    :class:`~goodfit.io.NpzArray` (rows stay on disk and are read a gathered chunk at a time)."""
    from goodfit.io import NpzArray

    if isinstance(x, NpzArray):
        from goodfit.streaming import DiskRows

        return DiskRows(x, dev, layout)
    return torch.from_numpy(np.ascontiguousarray(x)).to(dev, memory_format=layout)


def _shuffled(n: int, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
    """The order of one epoch's batches: a seeded permutation of all ``n`` training rows (each once)."""
    return torch.randperm(n, generator=gen).to(dev)


def _gathered(x, perm: torch.Tensor, size: int):
    """``(indices, rows)`` for consecutive chunks of ``size`` indices of ``perm``, from memory or disk."""
    if not isinstance(x, torch.Tensor):
        yield from x.chunks(perm, size)
        return
    for start in range(0, len(perm), size):
        idx = perm[start:start + size]
        yield idx, x[idx]


def _state(epoch: int, *, model, opt, scheduler, stopper, gen, result, cuda: bool, ema=None) -> dict:
    """The fit loop's whole state at the end of ``epoch`` (copied to the CPU)."""
    return {"epoch": epoch, "model": _snapshot(model.state_dict()), "optimizer": _snapshot(opt.state_dict()),
            "ema": None if ema is None else _snapshot(ema.state_dict()),
            "scheduler": None if scheduler is None else _snapshot(scheduler.state_dict()),
            "stopper": stopper.state_dict(), "best_state": _snapshot(stopper.best_state),
            "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if cuda else None,
            "history": [dict(r) for r in result.history], "stopped_epoch": result.stopped_epoch,
            "stop_reason": result.stop_reason}


def _snapshot(obj):
    """A copy on the CPU of a state dict's tensors (``state_dict()`` returns the live ones), nested."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_snapshot(v) for v in obj)
    return obj


def _restore(state: dict, *, model, opt, scheduler, stopper, gen, result, cuda: bool, ema=None) -> int:
    """Load what :func:`_state` saved; returns the first epoch still to train."""
    from goodfit.resume import check_resumable

    check_resumable(state)
    device = next(model.parameters()).device
    model.load_state_dict(state["model"])
    if ema is not None:
        if state.get("ema") is None:
            raise GoodfitError("The saved training state has no weight average, but train.ema_decay is on: it was "
                               "saved with train.ema_decay: 0. Set that value again to resume, or train afresh "
                               "(`dvc repro -f train`).")
        ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    stopper.load_state_dict(state["stopper"])
    stopper.best_state = None if state["best_state"] is None else \
        {k: v.to(device) for k, v in state["best_state"].items()}
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if cuda and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"])
    result.history = [dict(r) for r in state["history"]]
    result.stopped_epoch, result.stop_reason = state["stopped_epoch"], state["stop_reason"]
    return int(state["epoch"]) + 1


def _train_epoch(model: nn.Module, opt: OptimizerStep, x: torch.Tensor, y: torch.Tensor,
                 perm: torch.Tensor, *, batch_size: int, l1_lambda: float, amp_dtype,
                 label_smoothing: float, prepare: Callable = lambda x: x) -> float:
    """One pass over ``x[perm]`` in mini-batches; returns the mean training loss.

    ``prepare`` is applied to each gathered chunk of rows (the model's input
    standardization, see :meth:`goodfit.models.Standardize.applied_outside`).

    The batch losses stay on the device until the epoch ends (one host sync per
    epoch, not one per batch), then are summed in float64 in batch order, exactly
    as a running ``loss_sum += loss * batch_len`` would.
    """
    losses, sizes = [], []
    autocast = (lambda: torch.autocast(x.device.type, dtype=amp_dtype)) if amp_dtype is not None \
        else contextlib.nullcontext
    # Gather the shuffled rows many batches at a time (at most GATHER_BYTES), then slice the
    # batches out as views: one indexing call per chunk instead of two per batch.
    numel = x[:1].numel() if isinstance(x, torch.Tensor) else x.numel_per_row()
    row_bytes = max(1, numel * 4)  # as float32, the dtype the rows are decoded to
    chunk = max(batch_size, GATHER_BYTES // row_bytes // batch_size * batch_size)
    for idx, rows in _gathered(x, perm, chunk):
        with torch.no_grad():
            x_chunk, y_chunk = prepare(rows), y[idx]
        for start in range(0, len(idx), batch_size):
            xb, yb = x_chunk[start:start + batch_size], y_chunk[start:start + batch_size]
            losses.append(_train_step(model, opt, xb, yb, l1_lambda=l1_lambda, autocast=autocast,
                                      label_smoothing=label_smoothing))
            sizes.append(len(yb))
    total = 0.0
    for value, size in zip(torch.stack(losses).tolist(), sizes):
        total += value * size
    return total / len(perm)


def _train_epoch_shard(net: nn.Module, model: nn.Module, opt: OptimizerStep, x, y: torch.Tensor, perm: torch.Tensor,
                       *, batch_size: int, rank: int, world: int, l1_lambda: float, amp_dtype, label_smoothing: float,
                       prepare: Callable) -> float:
    """One epoch of this rank's share of data-parallel training; returns the mean training loss over all ranks.

    Every rank holds the same ``perm``. Each global batch ``perm[i*B:(i+1)*B]`` is cut into
    ``world`` consecutive pieces (``torch.tensor_split``: sizes differ by at most one) and this
    rank trains on piece ``rank``. Its loss is the sum of its rows' cross-entropies times
    ``world / len(global batch)``: DDP divides the summed gradients by ``world``, so every step
    follows the gradient of the global batch's mean loss, as one process would (the L1 term,
    the same on every rank, is added whole and so counted once). A piece left empty (a last
    batch with fewer rows than ranks) trains on one row of its batch with weight 0, so every
    rank still takes part in each step's gradient averaging. One all-reduce per epoch sums the
    ranks' loss totals.
    """
    autocast = (lambda: torch.autocast(x.device.type, dtype=amp_dtype)) if amp_dtype is not None \
        else contextlib.nullcontext
    starts = range(0, len(perm), batch_size)
    pieces = [torch.tensor_split(perm[s:s + batch_size], world)[rank] for s in starts]
    weights = [world / min(batch_size, len(perm) - s) if len(p) else 0.0 for s, p in zip(starts, pieces)]
    pieces = [p if len(p) else perm[s:s + 1] for s, p in zip(starts, pieces)]
    numel = x[:1].numel() if isinstance(x, torch.Tensor) else x.numel_per_row()
    per_chunk = max(1, GATHER_BYTES // max(1, numel * 4) // batch_size)  # batches gathered at once
    losses = []
    for first in range(0, len(pieces), per_chunk):
        group = pieces[first:first + per_chunk]
        idx = torch.cat(group)
        _, rows = next(_gathered(x, idx, len(idx)))
        with torch.no_grad():
            x_chunk, y_chunk = prepare(rows), y[idx]
        start = 0
        for piece, weight in zip(group, weights[first:first + per_chunk]):
            xb, yb = x_chunk[start:start + len(piece)], y_chunk[start:start + len(piece)]
            start += len(piece)
            with autocast():
                logits = net(xb)
            summed = F.cross_entropy(logits.float(), yb, label_smoothing=label_smoothing, reduction="sum")
            objective = summed * weight
            if l1_lambda > 0:
                objective = objective + l1_lambda * l1_penalty(model)
            opt.zero_grad()
            _backward(objective)
            opt.step()
            plain = F.cross_entropy(logits.detach().float(), yb, reduction="sum") if label_smoothing > 0 \
                else summed.detach()
            losses.append(plain.double() * (weight != 0.0))
    from goodfit import distributed

    total = distributed.all_sum(torch.stack(losses).sum().reshape(1))
    return float(total[0]) / len(perm)


def _train_step(model: nn.Module, opt: OptimizerStep, xb: torch.Tensor, yb: torch.Tensor, *, l1_lambda: float,
                autocast, label_smoothing: float) -> torch.Tensor:
    """One optimizer step on one batch; returns the batch's mean cross-entropy (on the device)."""
    with autocast():
        logits = model(xb)
    loss = F.cross_entropy(logits.float(), yb, label_smoothing=label_smoothing)
    objective = loss + l1_lambda * l1_penalty(model) if l1_lambda > 0 else loss
    opt.zero_grad()
    _backward(objective)
    opt.step()
    if label_smoothing > 0:  # log the plain cross-entropy, comparable with val_loss
        loss = F.cross_entropy(logits.detach().float(), yb)
    return loss.detach()


def _backward(loss: torch.Tensor) -> None:
    """``loss.backward()`` for a scalar loss, without its Python preamble.

    ``Tensor.backward`` spends about 20 µs of a ~190 µs step of the 20-64-2 MLP in
    Python (argument normalisation, ``__torch_function__`` checks, making the unit
    gradient) before it calls the autograd engine. This makes the call
    ``torch.autograd.backward`` ends with, with the same arguments: the same
    gradients, bit for bit (tests/test_training.py). Where that private entry point
    is missing (another torch version) it is ``loss.backward()``.
    """
    if _engine_run_backward is None:
        loss.backward()
        return
    _engine_run_backward((loss,), (torch.ones_like(loss, memory_format=torch.preserve_format),), False, False, (),
                         allow_unreachable=True, accumulate_grad=True)


def _auc(model, xv, y_val) -> float:
    from goodfit.evaluation import classification_metrics, predict_proba

    return classification_metrics(y_val, predict_proba(model, xv.cpu().numpy())).get("roc_auc", float("nan"))


def _non_finite_message(language: str, epoch: int) -> str:
    if language == "ja":
        return f"エポック {epoch}: 訓練損失が有限ではありません。最良のモデルを残して終了します。"
    return f"Epoch {epoch}: training loss is not finite; stopping and keeping the best model."


def format_epoch(row: dict, max_epochs: int, language: str = "ja") -> str:
    """One console line per epoch (the training loss as trained and, when measured, in eval mode)."""
    ja = language == "ja"
    train = f"{row['train_loss']:.4f}"
    if "train_eval_loss" in row:
        train += f" ({'評価モード' if ja else 'eval'} {row['train_eval_loss']:.4f})"
    if ja:
        return (f"エポック {row['epoch']:3d}/{max_epochs}  訓練損失 {train}  "
                f"検証損失 {row['val_loss']:.4f}  検証正解率 {row['val_accuracy']:.3f}  "
                f"L2ノルム {row['weight_l2']:.2f}  疎性 {row['sparsity']:.3f}")
    return (f"epoch {row['epoch']:3d}/{max_epochs}  train_loss {train}  "
            f"val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.3f}  "
            f"weight_l2 {row['weight_l2']:.2f}  sparsity {row['sparsity']:.3f}")
