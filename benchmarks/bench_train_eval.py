"""What the like-for-like training curve costs: an epoch with and without ``train_eval_loss``.

Each epoch of ``goodfit.training.fit`` measures the training originals in eval mode
(``train_eval_loss`` / ``train_eval_accuracy``, one forward pass over them, no
gradient) besides the validation split. This times ``fit`` with that measurement on
(``measure_train=True``, what the train stage does: the originals, not the augmented
copies) and off, alternately in this process, and prints the seconds per epoch and the
difference. Workloads: the default pipeline's (scikit-learn digits at 8x8, its CNN,
4 augmented copies, batch 64) and the same at 28x28.

    python benchmarks/bench_train_eval.py
    python benchmarks/bench_train_eval.py --rounds 7 --epochs 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _common import conditions, interleaved, median  # noqa: E402
from goodfit.models import build_model, model_spec  # noqa: E402
from goodfit.training import configure_torch, fit  # noqa: E402

COPIES = 4


def workload(size: int):
    """Train (originals + copies), the originals alone, validation, and the model spec."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from goodfit.augment import Augmenter
    from goodfit.params import AugmentParams

    digits = load_digits()
    x = torch.from_numpy((digits.images / 16.0).astype(np.float32)[:, None])
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x, y = x.numpy(), digits.target.astype(np.int64)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.15, stratify=y, random_state=0)
    aug = Augmenter(modality="image", cfg=AugmentParams(copies=COPIES), seed=0, train_std=[float(x_tr.std())],
                    clip=(0.0, 1.0))
    x_aug = np.concatenate(list(aug.iter_chunks(x_tr, COPIES, 2048)))
    y_aug = np.tile(y_tr, COPIES + 1)
    spec = model_spec(kind="cnn", modality="image", input_shape=[1, size, size], n_classes=10, hidden=[64],
                      channels=[16, 32], dropout=0.3, batch_norm=False, mean=[float(x_tr.mean())],
                      std=[float(x_tr.std())])
    return spec, (x_aug, y_aug), (x_tr, y_tr), (x_va, y_va)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 28])
    args = parser.parse_args(argv)
    configure_torch(threads=1)
    print(conditions())
    for size in args.sizes:
        spec, train, originals, val = workload(size)

        def run(measure):
            def go(seed):
                fit(build_model(spec, seed=seed), x_train=train[0], y_train=train[1], x_val=val[0], y_val=val[1],
                    x_train_eval=originals[0], y_train_eval=originals[1], measure_train=measure,
                    max_epochs=args.epochs, patience=args.epochs + 1, batch_size=64, verbose=False, seed=seed)
            return go

        times = interleaved({"with train_eval": run(True), "without": run(False)}, args.rounds)
        on, off = (median(times[k]) / args.epochs for k in ("with train_eval", "without"))
        print(f"{size}x{size} digits, {len(train[1])} training rows ({len(originals[1])} originals measured), "
              f"{len(val[1])} validation: {on * 1e3:.1f} ms/epoch with train_eval, {off * 1e3:.1f} without: "
              f"+{(on - off) * 1e3:.1f} ms ({(on / off - 1):+.1%}); median of {args.rounds} rounds x "
              f"{args.epochs} epochs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
