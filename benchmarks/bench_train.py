"""Training throughput: goodfit's fit loop vs the lesson's DataLoader loop, same model, batch size and epochs.

Reference (the lesson): ``DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)``,
AdamW, ``loss.item()`` every batch, validation through a DataLoader under
``no_grad`` each epoch. goodfit: ``goodfit.training.fit`` with early stopping
switched off (patience > epochs) so both run the same epochs, measuring each epoch,
as the train stage does, the validation loss and the training originals' loss
(``train_eval_loss``: a forward pass over the rows that are not augmented copies).
Both train the same
network from the same initial weights, alternately in this process, one run per
seed, on the same torch thread count (``train.threads``, default 1); the reference
builds it from stock ``torch.nn`` layers (``nn.Dropout`` where goodfit has its own
faster-on-the-CPU ``goodfit.models.Dropout``, the same function).

Workloads: the lesson's MLP (20 -> 64 -> 2) on 10,000 rows of a scikit-learn
``make_classification`` table, and goodfit's image CNN on 28x28 images
(scikit-learn's digits upscaled to 28x28, plus goodfit-augmented copies).
Speed: training samples per second (epochs x rows / wall time, validation
included), median over seeds. Learning curves: the final validation loss of
each seed, compared with Welch's t-test.

    python benchmarks/bench_train.py
    python benchmarks/bench_train.py --workloads cnn --seeds 7 --amp
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _common import conditions, fmt_times, interleaved, median  # noqa: E402
from goodfit.models import build_model, model_spec  # noqa: E402
from goodfit.training import configure_torch, fit  # noqa: E402

WEIGHT_DECAY, DROPOUT, BATCH = 1e-4, 0.3, 32
LR = {"mlp": 1e-3, "cnn": 3e-3}


class Rows(NamedTuple):
    """A workload's training rows; the first ``originals`` are not augmented copies."""

    x: np.ndarray
    y: np.ndarray
    originals: int


def mlp_workload():
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=12_000, n_features=20, n_informative=8, flip_y=0.05, random_state=0)
    x, y = x.astype(np.float32), y.astype(np.int64)
    spec = model_spec(kind="mlp", modality="tabular", input_shape=[20], n_classes=2, hidden=[64], channels=[16],
                      dropout=DROPOUT, batch_norm=False, mean=x[:10_000].mean(0).tolist(),
                      std=x[:10_000].std(0).tolist())
    return spec, Rows(x[:10_000], y[:10_000], 10_000), (x[10_000:], y[10_000:])


def cnn_workload(copies: int = 1):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from goodfit.augment import Augmenter
    from goodfit.params import AugmentParams

    digits = load_digits()
    x8 = torch.from_numpy((digits.images / 16.0).astype(np.float32)[:, None])  # (N, 1, 8, 8)
    x = F.interpolate(x8, size=(28, 28), mode="bilinear", align_corners=False).numpy()  # (N, 1, 28, 28)
    y = digits.target.astype(np.int64)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.15, stratify=y, random_state=0)
    aug = Augmenter(modality="image", cfg=AugmentParams(copies=copies), seed=0, train_std=[1.0], clip=(0.0, 1.0))
    originals = len(x_tr)
    x_tr = np.concatenate(list(aug.iter_chunks(x_tr, copies, 2048)))
    y_tr = np.tile(y_tr, copies + 1)
    spec = model_spec(kind="cnn", modality="image", input_shape=[1, 28, 28], n_classes=10, hidden=[64],
                      channels=[16, 32], dropout=DROPOUT, batch_norm=False, mean=[float(x_tr.mean())],
                      std=[float(x_tr.std())])
    return spec, Rows(x_tr, y_tr, originals), (x_va, y_va)


def stock_layers(model):
    """``model`` with goodfit's Dropout layers replaced by ``nn.Dropout`` (same p), as the lesson writes it."""
    from torch import nn

    from goodfit.models import Dropout

    for name, child in model.named_children():
        if isinstance(child, Dropout):
            setattr(model, name, nn.Dropout(child.p))
        else:
            stock_layers(child)
    return model


def lesson_fit(model, train, val, *, lr: float, epochs: int, seed: int) -> list[float]:
    """The lesson's loop; returns the validation loss of every epoch."""
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    train_loader = DataLoader(TensorDataset(torch.from_numpy(train[0]), torch.from_numpy(train[1])),
                              batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(seed))
    val_loader = DataLoader(TensorDataset(torch.from_numpy(val[0]), torch.from_numpy(val[1])), batch_size=BATCH)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    curve = []
    torch.manual_seed(seed)
    for _ in range(epochs):
        model.train()
        train_loss = 0.0
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            train_loss += loss.item() * len(xb)
        model.eval()
        val_loss = 0.0
        with torch.no_grad():
            for xb, yb in val_loader:
                val_loss += criterion(model(xb), yb).item() * len(xb)
        curve.append(val_loss / len(val[1]))
    return curve


def goodfit_fit(model, train, val, *, lr: float, epochs: int, seed: int, amp: bool) -> list[float]:
    # As the train stage does, each epoch's train_eval_loss is measured on the training
    # originals (all rows of a plain (x, y) pair), besides the validation loss.
    n = getattr(train, "originals", len(train[1]))
    result = fit(model, x_train=train[0], y_train=train[1], x_val=val[0], y_val=val[1], optimizer="adamw", lr=lr,
                 weight_decay=WEIGHT_DECAY, batch_size=BATCH, max_epochs=epochs, patience=epochs + 1, seed=seed,
                 amp=amp, verbose=False, x_train_eval=train[0][:n], y_train_eval=train[1][:n])
    return [row["val_loss"] for row in result.history]


def welch_p(a, b) -> float:
    from scipy import stats

    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def run_workload(name: str, spec, train, val, *, lr: float, epochs: int, seeds: int, amp: bool) -> str:
    curves: dict[str, list[list[float]]] = {"reference": [], "goodfit": []}

    def reference(seed):
        curves["reference"].append(lesson_fit(stock_layers(build_model(spec, seed=seed)), train, val, lr=lr, epochs=epochs,
                                                seed=seed))

    def goodfit(seed):
        curves["goodfit"].append(goodfit_fit(build_model(spec, seed=seed), train, val, lr=lr, epochs=epochs,
                                             seed=seed, amp=amp))

    few = (train[0][:256], train[1][:256])  # warm-up: first calls pay one-off set-up costs
    lesson_fit(stock_layers(build_model(spec, seed=0)), few, val, lr=lr, epochs=1, seed=0)
    goodfit_fit(build_model(spec, seed=0), few, val, lr=lr, epochs=1, seed=0, amp=amp)
    times = interleaved({"reference": reference, "goodfit": goodfit}, seeds)
    samples = epochs * len(train[1])
    label = "goodfit fit loop" + (" (train.amp: bfloat16)" if amp else "")
    print(f"{name}: {len(train[1])} training rows x {epochs} epochs, batch {BATCH}, {seeds} seeds")
    for key, title in (("reference", "reference (lesson DataLoader loop)"), ("goodfit", label)):
        final = [c[-1] for c in curves[key]]
        print(f"  {title}: {fmt_times(times[key])} -> {samples / median(times[key]):,.0f} samples/s; "
              f"final val loss {np.mean(final):.4f} +- {np.std(final, ddof=1):.4f} (mean +- sd over seeds)")
    mean_ref, mean_gf = np.mean(curves["reference"], axis=0), np.mean(curves["goodfit"], axis=0)
    print("  mean val loss per epoch, reference: " + " ".join(f"{v:.3f}" for v in mean_ref))
    print("  mean val loss per epoch, goodfit:   " + " ".join(f"{v:.3f}" for v in mean_gf))
    p = welch_p([c[-1] for c in curves["reference"]], [c[-1] for c in curves["goodfit"]])
    print(f"  final val loss, goodfit vs reference: Welch t-test p = {p:.2f} "
          f"({'no significant difference' if p > 0.05 else 'DIFFERENT'} at 5%)")
    ratio = median(times["reference"]) / median(times["goodfit"])
    return f"train {name}: {ratio:.1f}x the samples/s of the lesson's DataLoader loop (median of {seeds})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", choices=["mlp", "cnn"], default=["mlp", "cnn"])
    ap.add_argument("--seeds", type=int, default=5, help="runs per contender, one seed each (>= 2)")
    ap.add_argument("--mlp-epochs", type=int, default=10)
    ap.add_argument("--cnn-epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both (train.threads)")
    ap.add_argument("--amp", action="store_true", help="goodfit with train.amp (bfloat16 autocast)")
    args = ap.parse_args(argv)
    configure_torch(threads=args.threads)  # as the train stage does, for both contenders
    print(conditions(args.threads))
    lines = []
    if "mlp" in args.workloads:
        spec, train, val = mlp_workload()
        lines.append(run_workload("MLP 20-64-2", spec, train, val, lr=LR["mlp"], epochs=args.mlp_epochs,
                                  seeds=args.seeds, amp=args.amp))
    if "cnn" in args.workloads:
        spec, train, val = cnn_workload()
        lines.append(run_workload("CNN 28x28", spec, train, val, lr=LR["cnn"], epochs=args.cnn_epochs,
                                  seeds=args.seeds, amp=args.amp))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
