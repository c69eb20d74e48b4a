"""Time to a better model: goodfit's BreastMNIST preset against the MedMNIST v2 ResNet-18 (28) recipe.

Both recipes run on the same machine, the same ``breastmnist.npz`` (official split
546 / 78 / 156) and the same thread count, one after the other, and the script prints
each one's test ROC AUC and accuracy, its wall time and the ratio of the wall times.

**goodfit** is the pipeline itself: ``presets/breastmnist.yaml`` through the four stage
scripts, exactly as ``benchmarks/presets.py`` runs it (its ``run_once``: a scratch folder,
the project's params.yaml + the preset + the seed and data path, ``split``, ``augment``,
``train``, ``evaluate``). Its wall time covers all four stages, start-up and MLflow
logging included. Its accuracy is read at the threshold the train stage chose on the
validation split (``train.threshold: val_accuracy``); the accuracy at 0.5 is printed too.

**The baseline** follows these facts of the MedMNIST v2 reference training script for
28 px images (``MedMNIST2D/train_and_eval_pytorch.py`` and ``models.py`` of the
MedMNIST experiments repository):

* ResNet-18 from scratch: torchvision's ``resnet18`` (random weights) with its first
  convolution replaced by a 3x3, stride 1, padding 1 one (no bias) taking 1 channel
  for BreastMNIST, and no max-pool, so the 28 px image reaches the four residual stages
  at full size (28 -> 28 -> 14 -> 7 -> 4) before global average pooling and a linear
  layer with one output per class. Weights start from torchvision's initialisation
  (the reference's own ResNet class keeps PyTorch's default layer initialisation);
* inputs scaled as ``ToTensor()`` then ``Normalize(mean=[.5], std=[.5])``: uint8 / 255,
  then (x - 0.5) / 0.5, in [-1, 1]; no augmentation;
* cross-entropy loss; Adam, learning rate 1e-3 (no weight decay); batch size 128,
  reshuffled every epoch, the last, smaller batch kept; 100 epochs; the learning rate
  multiplied by 0.1 after half and three quarters of the epochs (epochs 50 and 75 of 100);
* after every epoch the model is scored on the validation split, and the epoch with the
  highest validation ROC AUC (scikit-learn's ``roc_auc_score`` on the softmax probability
  of class 1; the first such epoch on ties) is kept;
* that model is scored once on the test split: ROC AUC as above, accuracy as the
  MedMNIST evaluator counts it for binary tasks (probability of class 1 > 0.5).

Where it departs from the reference script, to measure the recipe rather than its
loop: batches are slices of tensors held in memory (the reference's DataLoader converts
every image through PIL transforms, which would only slow the baseline down), and the
training and test splits are not scored after every epoch (the reference logs them; they
do not choose the model). Seeds are explicit: the initial weights come from the seed,
the shuffling from a ``torch.Generator`` seeded with it; deterministic kernels and a
fixed thread count (``goodfit.training.configure_torch``). The baseline runs in this
process with the CPU's own kernels, as the reference would; goodfit's stages run with
their portable numerics (``repro.portable: true``, the default).

    python benchmarks/bench_quality_time.py --data-path path/to/breastmnist.npz
    python benchmarks/bench_quality_time.py --data-path path/to/breastmnist.npz --seeds 0 1 2 \\
        --output docs/results/quality_time.json
    python benchmarks/bench_quality_time.py --data-path path/to/breastmnist.npz --epochs 2   # smoke run only

With one thread the baseline's 100 epochs take about an hour. ``--epochs`` shortens both
recipes (the baseline's epochs and the preset's ``train.max_epochs``) for a smoke run;
the figures use 100. Nothing is written unless ``--output`` names a file (JSON, written
atomically).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import presets as pipeline  # noqa: E402  (benchmarks/presets.py; it puts the project root on sys.path)
from goodfit.errors import GoodfitError  # noqa: E402
from goodfit.io import write_json  # noqa: E402
from goodfit.sources.medmnist import read_npz  # noqa: E402

PRESET = "breastmnist"
EPOCHS = 100
BATCH = 128
LR = 1e-3
GAMMA = 0.1
EVAL_BATCH = 128
DOWNLOAD_URL = "https://zenodo.org/records/10519652/files/breastmnist.npz?download=1"


def resnet18_28(in_channels: int = 1, n_classes: int = 2):
    """torchvision's ResNet-18, adapted for 28 px inputs as in the MedMNIST v2 experiments.

    Args:
        in_channels: image channels (1 for BreastMNIST).
        n_classes: outputs of the final linear layer.

    Returns:
        The model (random initial weights: seed the global torch RNG around the call).
    """
    from torch import nn
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=n_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def to_inputs(images: np.ndarray):
    """MedMNIST uint8 images ``(N, H, W)`` or ``(N, H, W, C)`` -> float32 ``(N, C, H, W)`` in [-1, 1].

    The same numbers as torchvision's ``ToTensor()`` then ``Normalize(mean=.5, std=.5)``.
    """
    import torch

    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise GoodfitError(f"MedMNIST images must be uint8 (N, H, W) or (N, H, W, C), got {images.dtype} "
                           f"{images.shape}.")
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.to(torch.float32).div(255).sub(0.5).div(0.5).contiguous()


def lr_milestones(epochs: int) -> list[int]:
    """The epochs after which the learning rate is multiplied by 0.1: half and three quarters of ``epochs``."""
    return [epochs // 2, (3 * epochs) // 4]


def predict_proba(model, x, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Softmax probabilities ``(N, n_classes)`` of ``model`` in eval mode."""
    import torch

    model.eval()
    with torch.inference_mode():
        out = [torch.softmax(model(x[i:i + batch_size]), dim=1) for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy().astype(np.float64)


def auc_accuracy(y: np.ndarray, proba: np.ndarray) -> tuple[float, float]:
    """ROC AUC and accuracy as the MedMNIST evaluator scores them.

    Two classes: the AUC of the probability of class 1 and the accuracy of ``p1 > 0.5``;
    more: the mean one-vs-rest AUC and the accuracy of the likeliest class.
    """
    from sklearn.metrics import roc_auc_score

    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1])), float(np.mean((proba[:, 1] > 0.5) == y))
    auc = np.mean([roc_auc_score(y == k, proba[:, k]) for k in range(proba.shape[1])])
    return float(auc), float(np.mean(proba.argmax(1) == y))


def fit_baseline(x_train, y_train, x_val, y_val, *, epochs: int = EPOCHS, seed: int = 0, batch_size: int = BATCH,
                 lr: float = LR, n_classes: int = 2, progress=None) -> dict:
    """Train the baseline ResNet-18 and keep the epoch with the best validation ROC AUC.

    Args:
        x_train, x_val: float32 tensors ``(N, C, 28, 28)`` (:func:`to_inputs`).
        y_train, y_val: int64 arrays ``(N,)``.
        epochs: training epochs (100 in the recipe).
        seed: seeds the initial weights and the shuffling.
        progress: called with each epoch's history row (e.g. to print how far an hour-long run is).

    Returns:
        ``model`` (the best epoch's weights loaded), ``best_epoch`` (1-based), ``best_val_auc`` and
        ``history`` (one dict per epoch: epoch, lr, train_loss, val_auc, val_accuracy).
    """
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = resnet18_28(in_channels=x_train.shape[1], n_classes=n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=lr_milestones(epochs), gamma=GAMMA)
    criterion = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    targets = torch.as_tensor(y_train, dtype=torch.int64)
    best = {"best_epoch": 0, "best_val_auc": 0.0, "state": None}
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        lr_now = optimizer.param_groups[0]["lr"]
        order = torch.randperm(len(targets), generator=gen)
        losses = []
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            optimizer.zero_grad()
            loss = criterion(model(x_train[idx]), targets[idx])
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        scheduler.step()
        val_auc, val_acc = auc_accuracy(y_val, predict_proba(model, x_val))
        history.append({"epoch": epoch, "lr": lr_now, "train_loss": float(torch.stack(losses).mean()),
                        "val_auc": val_auc, "val_accuracy": val_acc})
        if progress is not None:
            progress(history[-1])
        if val_auc > best["best_val_auc"]:
            best = {"best_epoch": epoch, "best_val_auc": val_auc,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return {"model": model, "best_epoch": best["best_epoch"], "best_val_auc": best["best_val_auc"],
            "history": history}


def load_breastmnist(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The official splits of a MedMNIST ``.npz`` (uint8 images, int64 labels ``(N,)``), by split.

    Raises:
        GoodfitError: the file is missing (with where to get it), unreadable, or not MedMNIST.
    """
    if not path.is_file():
        raise GoodfitError(
            f"{path} does not exist: this benchmark needs MedMNIST v2's BreastMNIST file, breastmnist.npz "
            f"(28 x 28, official split 546 / 78 / 156). Download it from {DOWNLOAD_URL} (MD5 "
            "750601b1f35ba3300ea97c75c52ff8f6), or let the medmnist package fetch it "
            "(python -c \"import medmnist; medmnist.BreastMNIST(split='train', download=True, root='.')\"), "
            "and pass its path with --data-path.")
    return {s: (images, labels.reshape(len(labels), -1)[:, 0].astype(np.int64))
            for s, (images, labels) in read_npz(path).items()}


def run_baseline(data_path: Path, *, seed: int, epochs: int) -> dict:
    """Load, train and test the baseline once; the wall time covers all three."""
    start = time.perf_counter()
    splits = load_breastmnist(data_path)
    x = {s: to_inputs(images) for s, (images, _) in splits.items()}
    y = {s: labels for s, (_, labels) in splits.items()}
    n_classes = int(max(labels.max() for labels in y.values())) + 1

    def progress(row):
        if row["epoch"] % 10 == 0:
            print(f"baseline seed {seed}: epoch {row['epoch']} / {epochs}, validation ROC AUC {row['val_auc']:.4f}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)

    result = fit_baseline(x["train"], y["train"], x["val"], y["val"], epochs=epochs, seed=seed,
                          n_classes=n_classes, progress=progress)
    auc, acc = auc_accuracy(y["test"], predict_proba(result["model"], x["test"]))
    return {"recipe": "baseline", "seed": seed, "test_roc_auc": auc, "test_accuracy": acc,
            "test_accuracy_at_0.5": acc, "wall_s": time.perf_counter() - start,
            "best_epoch": result["best_epoch"], "best_val_auc": result["best_val_auc"], "epochs": epochs}


def run_preset(data_path: Path, *, seed: int, epochs: int | None, threads: int, work: Path) -> dict:
    """goodfit's preset through the four stage scripts (``benchmarks/presets.py``'s ``run_once``), timed."""
    train = {"threads": threads, **({"max_epochs": epochs} if epochs is not None else {})}
    if seed not in pipeline.SEEDS_DRAWN:
        pipeline.SEEDS_DRAWN.append(seed)
    start = time.perf_counter()
    run = pipeline.run_once(PRESET, "preset", seed, str(data_path), work, {"train": train})
    wall = time.perf_counter() - start
    test = run["test"]
    return {"recipe": "goodfit", "seed": seed, "test_roc_auc": test["roc_auc"], "test_accuracy": test["accuracy"],
            "test_accuracy_at_0.5": test.get("accuracy_at_default_threshold", test["accuracy"]), "wall_s": wall,
            "best_epoch": run["best_epoch"], "stopped_epoch": run["stopped_epoch"], "threshold": run["threshold"]}


def machine() -> dict:
    """The CPU, its core count and the load average now (machine facts go to the result, never to DVC outputs)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": list(os.getloadavg())}


def table(runs: list[dict]) -> str:
    """The Markdown table: per recipe and seed, test ROC AUC / accuracy and wall time, then the ratio."""
    lines = ["| recipe | seed | test ROC AUC | test accuracy | wall time | best epoch |", "|---|---|---|---|---|---|"]
    for r in runs:
        at_half = "" if r["recipe"] == "baseline" else f" ({r['test_accuracy_at_0.5']:.4f} at 0.5)"
        lines.append(f"| {r['recipe']} | {r['seed']} | {r['test_roc_auc']:.4f} | {r['test_accuracy']:.4f}{at_half} "
                     f"| {r['wall_s']:,.0f} s | {r['best_epoch']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-path", required=True, type=Path, help="MedMNIST v2 breastmnist.npz")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both recipes (default 1)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"smoke runs only: epochs of both recipes (the figures use {EPOCHS})")
    parser.add_argument("--output", type=Path, default=None, help="write the results here as JSON (atomically)")
    args = parser.parse_args(argv)
    if args.threads < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--threads and --epochs must be integers >= 1")
    data_path = args.data_path.expanduser().resolve()
    try:
        load_breastmnist(data_path)
    except GoodfitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # The stage processes (augment's thread pool, numpy's BLAS) take their thread count from here.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    from goodfit.training import configure_torch

    configure_torch(threads=args.threads)
    import torch

    at_start = machine()
    print(f"{at_start['cpu']}, {at_start['cores']} cores, load average {at_start['load_average'][0]:.2f} at start, "
          f"torch {torch.__version__}, {args.threads} thread(s)", flush=True)
    if args.epochs is not None and args.epochs != EPOCHS:
        print(f"smoke run: {args.epochs} epochs instead of {EPOCHS}; not the benchmark's figures", flush=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="goodfit-quality-time-") as tmp:
        for i, seed in enumerate(args.seeds):
            order = ("goodfit", "baseline") if i % 2 == 0 else ("baseline", "goodfit")
            for recipe in order:
                if recipe == "goodfit":
                    r = run_preset(data_path, seed=seed, epochs=args.epochs, threads=args.threads, work=Path(tmp))
                else:
                    r = run_baseline(data_path, seed=seed, epochs=args.epochs or EPOCHS)
                print(f"{recipe} seed {seed}: test ROC AUC {r['test_roc_auc']:.4f}, accuracy "
                      f"{r['test_accuracy']:.4f}, {r['wall_s']:.0f} s (best epoch {r['best_epoch']})", flush=True)
                runs.append(r)
    at_end = machine()
    wall = {name: sum(r["wall_s"] for r in runs if r["recipe"] == name) for name in ("goodfit", "baseline")}
    ratio = wall["baseline"] / wall["goodfit"]
    print(table(runs))
    print(f"load average {at_end['load_average'][0]:.2f} at the end")
    print(f"wall time, baseline / goodfit: {wall['baseline']:,.0f} s / {wall['goodfit']:,.0f} s = {ratio:.1f}x")
    if args.output is not None:
        write_json(args.output, {
            "data": data_path.name, "preset": PRESET, "seeds": args.seeds, "threads": args.threads,
            "epochs": args.epochs or EPOCHS, "torch": torch.__version__,
            "machine": {"cpu": at_start["cpu"], "cores": at_start["cores"],
                        "load_average_start": at_start["load_average"], "load_average_end": at_end["load_average"]},
            "runs": runs, "wall_s": wall, "ratio_baseline_to_goodfit": ratio})
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
