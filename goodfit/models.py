"""Models: an MLP for tables, a small 2-D CNN for images, a 1-D CNN for series.

Each model starts with a fixed :class:`Standardize` layer holding the training
split's mean and standard deviation, so the saved model takes raw inputs.
Dropout is active in ``model.train()`` only; ``model.eval()`` switches it off.
"""

from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from goodfit.errors import GoodfitError


class Standardize(nn.Module):
    """``(x - mean) / std`` with per-channel (or per-feature) training statistics."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], ndim: int):
        super().__init__()
        shape = (1, len(mean)) + (1,) * (ndim - 2)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(shape))
        self.passthrough = False  # see applied_outside()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.passthrough else self.standardize(x)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    @contextlib.contextmanager
    def applied_outside(self):
        """Within the block the layer passes its input through; the caller standardizes instead.

        The fit loop standardizes each gathered chunk of shuffled training rows once
        (:meth:`standardize`), not every batch inside the forward pass: the same values
        bit for bit (the operation is elementwise), two fewer ops per training step.
        """
        self.passthrough = True
        try:
            yield self.standardize
        finally:
            self.passthrough = False


class Dropout(nn.Dropout):
    """``nn.Dropout`` (each value kept with probability ``1 - p`` and scaled by
    ``1 / (1 - p)`` in training, the identity in eval mode) with a faster mask on the CPU.

    PyTorch's CPU dropout draws its mask with ``bernoulli_``: about 20 µs for a 32 x 64
    batch on one core, three times a ``rand`` of the same size. Keeping a value when a
    uniform draw in [0, 1) is ``>= p`` has the same probability ``1 - p``; that saves
    about 10 µs of the ~250 µs training step of the 20-64-2 MLP
    (benchmarks/bench_train.py). The mask is drawn in float32 whatever the activations'
    dtype, so bfloat16 autocast does not coarsen ``p``. On CUDA, PyTorch's fused dropout
    kernel is used as it is.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return F.dropout(x, self.p, self.training, self.inplace)
        keep = torch.rand_like(x, dtype=torch.float32).ge_(self.p).div_(1.0 - self.p)
        return x * (keep if x.dtype == torch.float32 else keep.to(x.dtype))


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise GoodfitError(f"The 'dropout' parameter must be a float in [0, 1), got {dropout!r}.")


def _check_kernel(kernel_size: int) -> None:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise GoodfitError(f"The 'kernel_size' parameter must be an odd int >= 1, got {kernel_size!r}.")


class MLP(nn.Module):
    """Fully connected classifier: ``in -> hidden... -> n_classes`` with ReLU and dropout."""

    def __init__(self, *, in_features: int, n_classes: int, hidden: Sequence[int] = (64,),
                 dropout: float = 0.0, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        _check_dropout(dropout)
        mean = [0.0] * in_features if mean is None else mean
        std = [1.0] * in_features if std is None else std
        layers: list[nn.Module] = [Standardize(mean, std, 2)]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    @property
    def input_standardize(self) -> Standardize:
        return self.net[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, F) -> (N, K)
        return self.net(x)


def _conv_block(conv: type, bn: type, c_in: int, c_out: int, batch_norm: bool, pool: nn.Module | None,
                kernel_size: int = 3) -> list[nn.Module]:
    block: list[nn.Module] = [conv(c_in, c_out, kernel_size=kernel_size, padding=kernel_size // 2,
                                   bias=not batch_norm)]
    if batch_norm:
        block.append(bn(c_out))
    # Max-pool before ReLU: the same function (both are monotone, so max(relu(a), relu(b)) equals
    # relu(max(a, b)) exactly) and the same gradients, with ReLU and its backward on a quarter of
    # the values. Neither layer has parameters, so checkpoints keep their layer names.
    if pool is not None:
        block.append(pool)
    block.append(nn.ReLU())
    return block


class _ConvNet(nn.Module):
    """Conv blocks (2x max-pool while the map is >= 4 wide, ReLU), global average pooling
    (or, with ``global_pool=False``, the flattened feature map, which keeps where a
    pattern occurs), dropout, hidden layers with dropout, the classifier."""

    _LAYERS = {1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d),
               2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)}

    def __init__(self, *, spatial: Sequence[int], in_channels: int, n_classes: int, channels: Sequence[int],
                 hidden: Sequence[int], dropout: float, batch_norm: bool, mean: Sequence[float] | None,
                 std: Sequence[float] | None, kernel_size: int, global_pool: bool):
        super().__init__()
        _check_dropout(dropout)
        _check_kernel(kernel_size)
        conv, bn, max_pool, avg_pool = self._LAYERS[len(spatial)]
        mean = [0.0] * in_channels if mean is None else mean
        std = [1.0] * in_channels if std is None else std
        layers: list[nn.Module] = [Standardize(mean, std, len(spatial) + 2)]
        size, c = list(spatial), in_channels
        for out in channels:
            pool = max_pool(2) if min(size) >= 4 else None
            layers += _conv_block(conv, bn, c, out, batch_norm, pool, kernel_size)
            size = [s // 2 for s in size] if pool is not None else size
            c = out
        if global_pool:
            layers.append(avg_pool(1))
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [Dropout(dropout)]
        width = c if global_pool else c * math.prod(size)
        for h in hidden:
            head += [nn.Linear(width, h), nn.ReLU(), Dropout(dropout)]
            width = h
        head.append(nn.Linear(width, n_classes))
        self.head = nn.Sequential(*head)

    @property
    def input_standardize(self) -> Standardize:
        return self.features[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, *spatial) -> (N, K)
        return self.head(self.features(x))


class SmallCNN(_ConvNet):
    """Small 2-D CNN for images ``(N, C, H, W)``; see :class:`_ConvNet` for the layers."""

    def __init__(self, *, in_channels: int, image_hw: tuple[int, int], n_classes: int,
                 channels: Sequence[int] = (16, 32), hidden: Sequence[int] = (64,), dropout: float = 0.0,
                 batch_norm: bool = False, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, kernel_size: int = 3, global_pool: bool = True):
        super().__init__(spatial=tuple(image_hw), in_channels=in_channels, n_classes=n_classes, channels=channels,
                         hidden=hidden, dropout=dropout, batch_norm=batch_norm, mean=mean, std=std,
                         kernel_size=kernel_size, global_pool=global_pool)


class CNN1D(_ConvNet):
    """1-D CNN for series ``(N, C, L)``; see :class:`_ConvNet` for the layers."""

    def __init__(self, *, in_channels: int, length: int, n_classes: int, channels: Sequence[int] = (16, 32),
                 hidden: Sequence[int] = (64,), dropout: float = 0.0, batch_norm: bool = False,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, kernel_size: int = 3,
                 global_pool: bool = True):
        super().__init__(spatial=(length,), in_channels=in_channels, n_classes=n_classes, channels=channels,
                         hidden=hidden, dropout=dropout, batch_norm=batch_norm, mean=mean, std=std,
                         kernel_size=kernel_size, global_pool=global_pool)


class Ensemble(nn.Module):
    """The members' averaged class probabilities, returned as log-probabilities.

    ``softmax`` of the output is the mean of the members' ``softmax`` outputs, so the
    ensemble takes the place of a single model everywhere logits are expected
    (``predict_proba``, cross-entropy).
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(x).float(), dim=1) for m in self.members])
        return probs.mean(dim=0).clamp_min(torch.finfo(torch.float32).tiny).log()


_DEFAULT_KIND = {"tabular": "mlp", "image": "cnn", "timeseries": "cnn1d"}


def model_spec(*, kind: str, modality: str, input_shape: Sequence[int], n_classes: int,
               hidden: Sequence[int], channels: Sequence[int], dropout: float, batch_norm: bool,
               mean: Sequence[float], std: Sequence[float], kernel_size: int = 3, global_pool: bool = True,
               class_names: Sequence[str] | None = None, feature_names: Sequence[str] | None = None) -> dict:
    """A plain-value description of a model (stored beside its weights in model.pt).

    ``class_names`` and, for tables, ``feature_names`` (meta.json's) let the model be applied
    to new data without the split it was trained on (``python -m goodfit.predict``)."""
    if kind == "auto":
        kind = _DEFAULT_KIND[modality]
    expected = {"mlp": 1, "cnn": 3, "cnn1d": 2}[kind]
    if len(input_shape) != expected:
        raise GoodfitError(
            f"params.yaml: train.model {kind!r} expects inputs with {expected} dimension(s) per sample, "
            f"but the data ({modality}) has shape {list(input_shape)}; use train.model: auto."
        )
    return {
        "kind": kind, "input_shape": [int(v) for v in input_shape], "n_classes": int(n_classes),
        "hidden": [int(v) for v in hidden], "channels": [int(v) for v in channels],
        "dropout": float(dropout), "batch_norm": bool(batch_norm),
        "mean": [float(v) for v in mean], "std": [float(v) for v in std], "kernel_size": int(kernel_size),
        "global_pool": bool(global_pool),
        **({"class_names": [str(c) for c in class_names]} if class_names else {}),
        **({"feature_names": [str(f) for f in feature_names]} if feature_names else {}),
    }


def build_model(spec: dict, seed: int | None = None) -> nn.Module:
    """Instantiate the model that :func:`model_spec` describes.

    Args:
        spec: the description.
        seed: seeds the initial weights (the global torch RNG is restored afterwards).
    """
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_model(spec)
    if spec.get("folds", 1) > 1:  # a cross-validation ensemble (goodfit.crossval): one member per fold
        member = {k: v for k, v in spec.items() if k != "folds"}
        return Ensemble([build_model(member) for _ in range(int(spec["folds"]))])
    common = dict(n_classes=spec["n_classes"], hidden=spec["hidden"], dropout=spec["dropout"],
                  mean=spec["mean"], std=spec["std"])
    shape = spec["input_shape"]
    conv = dict(channels=spec["channels"], batch_norm=spec["batch_norm"], kernel_size=spec.get("kernel_size", 3),
                global_pool=spec.get("global_pool", True))
    if spec["kind"] == "mlp":
        return MLP(in_features=shape[0], **common)
    if spec["kind"] == "cnn":
        return SmallCNN(in_channels=shape[0], image_hw=(shape[1], shape[2]), **conv, **common)
    if spec["kind"] == "cnn1d":
        return CNN1D(in_channels=shape[0], length=shape[1], **conv, **common)
    raise GoodfitError(f"Unknown model kind {spec['kind']!r}; use mlp, cnn or cnn1d.")
