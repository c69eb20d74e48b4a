"""Regularization: the L1 penalty, weight-decay parameter groups, weight statistics.

"Weights" are the parameters with two or more dimensions (linear and conv
kernels); biases and normalisation parameters are left out of L1, of weight
decay and of the statistics, as is standard practice.
"""

from __future__ import annotations

import torch
from torch import nn

NEAR_ZERO = 1e-3


def weight_parameters(model: nn.Module) -> list[torch.Tensor]:
    """The regularised parameters: kernels of linear and conv layers."""
    return [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """``sum |w|`` over the weights (not biases); multiply by lambda in the loss."""
    weights = weight_parameters(model)
    return torch.stack([w.abs().sum() for w in weights]).sum()


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer groups: weight decay on weights, none on biases and norms."""
    decay = {id(p) for p in weight_parameters(model)}
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) in decay], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0},
    ]


@torch.no_grad()
def weight_stats(model: nn.Module, near_zero: float = NEAR_ZERO) -> dict[str, float]:
    """L1 norm, L2 norm and the fraction of weights with ``|w| < near_zero``."""
    flat = torch.cat([w.detach().reshape(-1).float() for w in weight_parameters(model)])
    return {
        "weight_l1": float(flat.abs().sum()),
        "weight_l2": float(flat.norm()),
        "sparsity": float((flat.abs() < near_zero).float().mean()),
    }
