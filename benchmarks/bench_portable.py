"""The cost of portable numerics (``repro.portable``): training and augmentation with it on and off.

Portable numerics are chosen through environment variables that torch and numpy
read when they load (goodfit.numerics), so each setting runs in a fresh worker
process: ``on`` calls ``goodfit.numerics.pin(True)`` before importing torch, as a
stage does; ``off`` starts without any of those variables. Workers alternate
(on, off, off, on, ...) and each round times, after a warm-up:

- augmentation: goodfit's ``Augmenter`` (the default params' transforms), 2,000
  images x 4 copies at 28 px and 500 x 2 copies at 128 px, images per second;
- training: ``goodfit.training.fit`` on bench_train.py's two workloads, the MLP
  (20-64-2, 10,000 rows, 10 epochs) and the image CNN (28 px, 4 epochs), samples
  per second, 1 torch thread (``train.threads``).

It prints the median of the rounds for each setting and the cost of ``on``
(off's speed / on's speed - 1).

    python benchmarks/bench_portable.py              # 3 rounds (~3 min)
    python benchmarks/bench_portable.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

TASKS = ("augment 28 px", "augment 128 px", "train MLP", "train CNN")


def worker(portable: bool) -> dict[str, float]:
    """One round in this process: the speed of every task, after pinning as a stage would."""
    from goodfit.numerics import describe, pin

    pin(portable)
    import numpy as np

    import bench_train
    from goodfit.augment import Augmenter
    from goodfit.models import build_model
    from goodfit.params import AugmentParams
    from goodfit.training import configure_torch

    configure_torch(threads=1)
    out: dict[str, float] = {"capability": describe(portable)["goodfit.numerics.aten_capability"]}
    rng = np.random.default_rng(0)
    for size, n, copies in ((28, 2000, 4), (128, 500, 2)):
        x = rng.random((n, 1, size, size), dtype=np.float32)
        aug = Augmenter(modality="image", cfg=AugmentParams(), seed=0, train_std=[1.0], clip=(0.0, 1.0))
        list(aug.iter_chunks(x[:64], 1, 2048))  # warm-up
        start = time.perf_counter()
        for _ in aug.iter_chunks(x, copies, 2048):
            pass
        out[f"augment {size} px"] = n * copies / (time.perf_counter() - start)
    for name, (spec, train, val), lr, epochs in (
            ("train MLP", bench_train.mlp_workload(), bench_train.LR["mlp"], 10),
            ("train CNN", bench_train.cnn_workload(), bench_train.LR["cnn"], 4)):
        few = (train[0][:256], train[1][:256])
        bench_train.goodfit_fit(build_model(spec, seed=0), few, val, lr=lr, epochs=1, seed=0, amp=False)
        start = time.perf_counter()
        curve = bench_train.goodfit_fit(build_model(spec, seed=0), train, val, lr=lr, epochs=epochs, seed=0,
                                        amp=False)
        out[name] = epochs * len(train[1]) / (time.perf_counter() - start)
        out[f"{name} final val loss"] = curve[-1]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="worker processes per setting (>= 1)")
    ap.add_argument("--worker", choices=["on", "off"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker == "on")))
        return 0
    from goodfit.numerics import PORTABLE_ENV, cpu_model

    clean = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}
    results: dict[str, list[dict]] = {"on": [], "off": []}
    print(f"conditions: {os.cpu_count()} CPU cores ({cpu_model()}), load average {os.getloadavg()[0]:.1f} at start, "
          f"1 torch thread, {args.rounds} rounds")
    for r in range(args.rounds):
        for setting in (("on", "off") if r % 2 == 0 else ("off", "on")):
            done = subprocess.run([sys.executable, __file__, "--worker", setting], env=clean, capture_output=True,
                                  text=True, check=True)
            results[setting].append(json.loads(done.stdout.strip().splitlines()[-1]))

    def med(setting, key):
        values = sorted(res[key] for res in results[setting])
        return values[len(values) // 2]

    print(f"ATen capability: portable on {results['on'][0]['capability']}, "
          f"off {results['off'][0]['capability']}")
    print(f"{'task':<16}{'unit':<12}{'portable on':>14}{'portable off':>14}{'cost of on':>12}")
    for task in TASKS:
        on, off = med("on", task), med("off", task)
        unit = "images/s" if task.startswith("augment") else "samples/s"
        print(f"{task:<16}{unit:<12}{on:>14,.0f}{off:>14,.0f}{off / on - 1:>+12.0%}")
    for task in ("train MLP", "train CNN"):
        print(f"{task}: final validation loss on {med('on', task + ' final val loss'):.4f}, "
              f"off {med('off', task + ' final val loss'):.4f} (same seed; the low-order bits differ)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
