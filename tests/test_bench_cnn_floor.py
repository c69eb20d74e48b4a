"""benchmarks/bench_cnn_floor.py: which layers it times, and that it runs end to end (tiny settings)."""

import math

import pytest
import torch
from torch import nn

from conftest import load_benchmark


@pytest.fixture(scope="module")
def floor():
    return load_benchmark("bench_cnn_floor")


def test_it_finds_every_conv_and_max_pool_with_the_shape_it_sees(floor):
    from goodfit.models import build_model, model_spec

    spec = model_spec(kind="cnn", modality="image", input_shape=[1, 28, 28], n_classes=10, hidden=[64],
                      channels=[16, 32], dropout=0.3, batch_norm=False, mean=[0.0], std=[1.0])
    found = floor.layer_inputs(build_model(spec, seed=0), (32, 1, 28, 28))
    assert [(type(m).__name__, tuple(shape), grad) for m, shape, grad in found] == [
        ("Conv2d", (32, 1, 28, 28), False),  # the images need no gradient, as in training
        ("MaxPool2d", (32, 16, 28, 28), True),
        ("Conv2d", (32, 16, 14, 14), True),
        ("MaxPool2d", (32, 32, 14, 14), True),
    ]


def test_a_timed_layer_runs_its_backward_in_the_requested_layout_and_precision(floor):
    layer = nn.Conv2d(4, 8, 3, padding=1)
    seconds = floor.time_layer(layer, (2, 4, 6, 6), True, layout=torch.channels_last, dtype=torch.bfloat16,
                               reps=2, rounds=1)
    assert seconds > 0 and math.isfinite(seconds)
    assert layer.weight.dtype == torch.bfloat16 and layer.weight.grad is not None
    assert layer.weight.is_contiguous(memory_format=torch.channels_last)


def test_it_prints_the_floor_and_the_ratio_it_allows(floor, capsys):
    assert floor.main(["--rounds", "1", "--reps", "1", "--epochs", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("cnn floor: with PyTorch's CPU convolution and max-pool kernels a step takes at least")
    assert "float32, at most" in out[-1] and "bfloat16, at most" in out[-1]
    assert sum("convolutions + max-pools alone" in line for line in out) == 2
