"""Early stopping with the lesson's API, plus what training libraries add.

The lesson's class::

    early_stopping = EarlyStopping(patience=7, verbose=True)
    for epoch in range(n_epochs):
        ...
        early_stopping(val_loss, model)
        if early_stopping.early_stop:
            break
    model.load_state_dict(torch.load("checkpoint.pt"))

Beyond it: ``mode`` ('min' / 'max'), an in-memory copy of the best weights and
:meth:`restore_best`, a non-finite value stopping with its own reason,
``state_dict()`` / ``load_state_dict()``, and an explicit :attr:`stop_reason`.
"""

from __future__ import annotations

import copy
import io
import math
from typing import Callable

import torch
from torch import nn

from goodfit.errors import GoodfitError

STOP_PATIENCE = "patience"
STOP_NON_FINITE = "non_finite_loss"

_MESSAGES = {
    "ja": {
        "improved": "{what}が改善しました ({old:.6f} --> {new:.6f})。モデルを保存します...",
        "counter": "アーリーストッピングカウンター: {counter} / {patience}",
        "stop": "早期終了します。",
        "non_finite": "{what}が有限ではありません ({value})。早期終了します。",
    },
    "en": {
        "improved": "{what} improved ({old:.6f} --> {new:.6f}). Saving model ...",
        "counter": "EarlyStopping counter: {counter} out of {patience}",
        "stop": "Early stopping.",
        "non_finite": "{what} is not finite ({value}). Stopping.",
    },
}
# What the messages call the monitored value (the lesson's default: the validation loss).
QUANTITY = {
    "ja": {"val_loss": "検証損失", "val_accuracy": "検証正解率", "val_auc": "検証AUC"},
    "en": {"val_loss": "Validation loss", "val_accuracy": "Validation accuracy", "val_auc": "Validation AUC"},
}


class EarlyStopping:
    """Stop training when the monitored value has not improved for ``patience`` calls.

    An improvement means beating the best value by more than ``delta`` (so a
    constant value never improves and eventually stops training).

    Args:
        patience: calls without improvement before stopping (>= 1).
        verbose: print a message on every call.
        delta: minimum improvement (>= 0).
        path: checkpoint file written on each improvement (``None``: keep the best
            weights in memory only).
        trace_func: print-like function for the messages.
        mode: ``'min'`` (losses) or ``'max'`` (accuracies).
        language: ``'ja'`` (the lesson's messages) or ``'en'``.
        monitor: what the value is, named in the messages: ``'val_loss'`` (the lesson's
            「検証損失」), ``'val_accuracy'`` or ``'val_auc'``.

    Raises:
        GoodfitError: an argument is out of range.
    """

    def __init__(self, patience: int = 7, verbose: bool = False, delta: float = 0, path: str | None = "checkpoint.pt",
                 trace_func: Callable[[str], object] = print, mode: str = "min", language: str = "ja",
                 monitor: str = "val_loss"):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise GoodfitError(f"The 'patience' parameter must be an int >= 1, got {patience!r}.")
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta) or delta < 0:
            raise GoodfitError(f"The 'delta' parameter must be a finite float >= 0, got {delta!r}.")
        if mode not in ("min", "max"):
            raise GoodfitError(f"The 'mode' parameter must be 'min' or 'max', got {mode!r}.")
        if language not in _MESSAGES:
            raise GoodfitError(f"The 'language' parameter must be 'ja' or 'en', got {language!r}.")
        if monitor not in QUANTITY[language]:
            raise GoodfitError(f"The 'monitor' parameter must be one of {', '.join(QUANTITY[language])}, got "
                               f"{monitor!r}.")
        self.patience = patience
        self.verbose = verbose
        self.delta = float(delta)
        self.path = path
        self.trace_func = trace_func
        self.mode = mode
        self.language = language
        self.monitor = monitor
        self.counter = 0
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.epoch = 0
        self.early_stop = False
        self.stop_reason: str | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    # The lesson's name for the best loss.
    @property
    def val_loss_min(self) -> float:
        if self.best_score is None:
            return math.inf if self.mode == "min" else -math.inf
        return self.best_score

    def _say(self, key: str, **kw) -> None:
        if self.verbose:
            self.trace_func(_MESSAGES[self.language][key].format(what=QUANTITY[self.language][self.monitor], **kw))

    def _improves(self, value: float) -> bool:
        if self.best_score is None:
            return True
        if self.mode == "min":
            return value < self.best_score - self.delta
        return value > self.best_score + self.delta

    def __call__(self, val_loss: float, model: nn.Module | None = None) -> bool:
        """Record one epoch's value; returns ``True`` when it was an improvement."""
        value = float(val_loss)
        self.epoch += 1
        if not math.isfinite(value):
            self._say("non_finite", value=value)
            self.early_stop = True
            self.stop_reason = STOP_NON_FINITE
            return False
        if self._improves(value):
            old = self.val_loss_min
            self._say("improved", old=old, new=value)
            self.best_score = value
            self.best_epoch = self.epoch
            self.counter = 0
            if model is not None:
                self.save_checkpoint(model)
            return True
        self.counter += 1
        self._say("counter", counter=self.counter, patience=self.patience)
        if self.counter >= self.patience:
            self.early_stop = True
            self.stop_reason = STOP_PATIENCE
            self._say("stop")
        return False

    def save_checkpoint(self, model: nn.Module) -> None:
        """Keep a copy of the best weights (and write ``path`` atomically when set)."""
        self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if self.path is not None:
            from goodfit.io import atomic_write_bytes

            buf = io.BytesIO()
            torch.save(self.best_state, buf)
            atomic_write_bytes(self.path, buf.getvalue())

    def restore_best(self, model: nn.Module) -> bool:
        """Load the best weights into ``model``; returns ``False`` when there were none."""
        if self.best_state is None:
            return False
        model.load_state_dict(self.best_state)
        return True

    def state_dict(self) -> dict:
        """Plain values that let training resume with the same stopping decisions."""
        return {
            "patience": self.patience, "delta": self.delta, "mode": self.mode, "counter": self.counter,
            "best_score": self.best_score, "best_epoch": self.best_epoch, "epoch": self.epoch,
            "early_stop": self.early_stop, "stop_reason": self.stop_reason,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the values :meth:`state_dict` returned (the best weights are not included)."""
        for key in ("patience", "delta", "mode", "counter", "best_score", "best_epoch", "epoch",
                    "early_stop", "stop_reason"):
            if key not in state:
                raise GoodfitError(f"EarlyStopping state is missing {key!r}; pass what state_dict() returned.")
        self.patience = state["patience"]
        self.delta = state["delta"]
        self.mode = state["mode"]
        self.counter = state["counter"]
        self.best_score = state["best_score"]
        self.best_epoch = state["best_epoch"]
        self.epoch = state["epoch"]
        self.early_stop = state["early_stop"]
        self.stop_reason = state["stop_reason"]
        self.best_state = copy.deepcopy(self.best_state)
