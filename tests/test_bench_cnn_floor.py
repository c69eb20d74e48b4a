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
    floor_line = out[-4]
    assert floor_line.startswith("cnn floor: with PyTorch's CPU convolution and max-pool kernels a step takes at least")
    assert "float32, at most" in floor_line and "bfloat16, at most" in floor_line
    assert sum("convolutions + max-pools alone, best layout each" in line for line in out) == 2
    assert out[-3].startswith("goodfit's step against the float32 floor: ")
    # the epoch floor adds the forward passes of the 1,797 rows each epoch measures (270 validation, 1,527 originals)
    assert "for the 1797 rows each epoch measures (270 validation, 1527 training originals; batches of 334)" in out[-2]
    assert out[-1].startswith("cnn epoch floor: the training steps and the measuring passes take at least")


def test_the_epoch_floor_is_the_training_floor_plus_the_measuring_passes(floor, capsys):
    floor.main(["--rounds", "1", "--reps", "10", "--epochs", "1"])
    out = capsys.readouterr().out.strip().splitlines()
    number = lambda line, after: float(line.rsplit(after, 1)[1].split(" ms")[0])  # noqa: E731
    train_floor = number(out[-3], " ms against ")
    per_step = number(out[-2], "rows, ")
    epoch_floor = number(out[-1], "take at least ")
    assert per_step > 0 and epoch_floor == pytest.approx(train_floor + per_step, abs=0.011)
