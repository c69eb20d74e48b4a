"""How fast can a training step of the image CNN get with PyTorch's CPU kernels?

``bench_train.py`` measures goodfit's CNN at 1.7x the lesson's loop (2.0x with
``train.amp``), short of 3x. This benchmark measures the floor that PyTorch's own
kernels set: it times, for each convolution and max-pool layer of the same
network (the one ``bench_train.py`` trains, batch 32, 1 thread), the layer's
forward and backward alone, on random inputs of the shapes the layer sees, in
both memory layouts (contiguous and channels-last) and both precisions (float32,
bfloat16). Summing, per precision, the faster layout of every layer gives a time
no training step can beat while it runs those kernels (activations, the head, the
loss, the optimizer and batching all come on top, and layout changes between
layers are not charged). It also times the lesson's loop and goodfit's fit loop
on the same workload, alternately, as ``bench_train.py`` does, and prints the
largest ratio that floor allows.

    python benchmarks/bench_cnn_floor.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from _common import conditions, interleaved, median  # noqa: E402
from bench_train import BATCH, LR, cnn_workload, goodfit_fit, lesson_fit, stock_layers  # noqa: E402
from goodfit.models import build_model  # noqa: E402
from goodfit.storage import inference_rows  # noqa: E402
from goodfit.training import configure_torch  # noqa: E402

LAYOUTS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def layer_inputs(model: nn.Module, shape) -> list[tuple[nn.Module, torch.Size, bool]]:
    """(layer, input shape, input needs a gradient) for each conv and max-pool layer, in order."""
    found: list[tuple[nn.Module, torch.Size, bool]] = []
    hooks = [m.register_forward_hook(lambda m, args, out: found.append((m, args[0].shape, len(found) > 0)))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    with torch.no_grad():
        model.eval()(torch.zeros(shape))
    for hook in hooks:
        hook.remove()
    return found


def time_layer(layer: nn.Module, shape, needs_grad: bool, *, layout, dtype, reps: int, rounds: int,
               backward: bool = True) -> float:
    """Median over ``rounds`` of the mean seconds of one forward + backward of ``layer``
    (``backward=False``: one forward in eval mode without autograd, as inference runs it)."""
    layer = layer.to(dtype=dtype, memory_format=layout).train(backward)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).to(dtype).contiguous(memory_format=layout)
    if backward:
        x.requires_grad_(needs_grad)
        grad = torch.randn_like(layer(x)).contiguous(memory_format=layout)

        def once():
            layer(x).backward(grad)
    else:
        def once():
            with torch.no_grad():
                layer(x)

    for _ in range(10):
        once()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            once()
        times.append((time.perf_counter() - start) / reps)
    return median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per kernel and of the lesson's loop")
    ap.add_argument("--reps", type=int, default=200, help="forward + backward calls per timed round")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the lesson's loop per round")
    args = ap.parse_args(argv)
    configure_torch(threads=1)  # as bench_train.py's default
    print(conditions(1))
    spec, train, val = cnn_workload()
    steps = -(-len(train[1]) // BATCH)

    def reference(seed):
        lesson_fit(stock_layers(build_model(spec, seed=seed)), train, val, lr=LR["cnn"], epochs=args.epochs,
                   seed=seed)

    def goodfit(seed):
        goodfit_fit(build_model(spec, seed=seed), train, val, lr=LR["cnn"], epochs=args.epochs, seed=seed,
                    amp=False)

    times = interleaved({"reference": reference, "goodfit": goodfit}, args.rounds)
    ref, ours = (median(times[k]) / (args.epochs * steps) for k in ("reference", "goodfit"))
    print(f"CNN 28x28, batch {BATCH}, a training step (validation included; median of {args.rounds}): reference "
          f"(lesson DataLoader loop) {ref * 1e3:.2f} ms, goodfit {ours * 1e3:.2f} ms ({ref / ours:.1f}x); "
          f"3x needs <= {ref / 3 * 1e3:.2f} ms")

    layers = layer_inputs(build_model(spec, seed=0), (BATCH, *spec["input_shape"]))
    floors = {}
    for dname, dtype in DTYPES.items():
        total = 0.0
        for layer, shape, needs_grad in layers:
            times = {lname: time_layer(layer, shape, needs_grad, layout=layout, dtype=dtype, reps=args.reps,
                                       rounds=args.rounds) for lname, layout in LAYOUTS.items()}
            best = min(times, key=times.get)
            total += times[best]
            name = type(layer).__name__ + (f" {layer.in_channels}->{layer.out_channels}"
                                           if isinstance(layer, nn.Conv2d) else "")
            print(f"  {dname} {name:<16} input {tuple(shape)}: forward + backward "
                  + ", ".join(f"{k} {v * 1e6:,.0f} µs" for k, v in times.items()) + f" (best: {best})")
        floors[dname] = total
        print(f"  {dname}: convolutions + max-pools alone, best layout each: {total * 1e3:.2f} ms a step")
    print("cnn floor: with PyTorch's CPU convolution and max-pool kernels a step takes at least "
          + ", ".join(f"{v * 1e3:.2f} ms ({k}, at most {ref / v:.1f}x the lesson's loop)" for k, v in floors.items())
          + f" (median of {args.rounds})")
    print(f"goodfit's step against the float32 floor: {ours * 1e3:.2f} ms against {floors['float32'] * 1e3:.2f} ms, "
          f"{ours / floors['float32']:.2f}x")

    # Each epoch goodfit also measures, without gradients, the validation split and the
    # training originals (train_eval_loss); the lesson's loop measures validation only.
    # Those forward passes, at inference's batch size, are the rest of what an epoch must do.
    rows = inference_rows(train[0])
    measured = len(val[1]) + getattr(train, "originals", len(train[1]))
    forward = 0.0
    for layer, shape, _ in layer_inputs(build_model(spec, seed=0), (rows, *spec["input_shape"])):
        forward += min(time_layer(layer, shape, False, layout=layout, dtype=torch.float32, reps=max(1, args.reps // 10),
                                  rounds=args.rounds, backward=False) for layout in LAYOUTS.values())
    per_step = forward / rows * measured / steps
    epoch_floor = floors["float32"] + per_step
    print(f"  float32 forward of the convolutions + max-pools alone for the {measured} rows each epoch measures "
          f"({len(val[1])} validation, {measured - len(val[1])} training originals; batches of {rows}): "
          f"{forward * 1e3:.2f} ms per {rows} rows, {per_step * 1e3:.2f} ms per training step")
    print(f"cnn epoch floor: the training steps and the measuring passes take at least {epoch_floor * 1e3:.2f} ms a "
          f"step (float32); goodfit's step {ours * 1e3:.2f} ms is {ours / epoch_floor:.2f}x that")
    return 0


if __name__ == "__main__":
    sys.exit(main())
