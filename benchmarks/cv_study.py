"""Validation-only study: one model vs a k-fold cross-validation ensemble, on a preset's training data.

Choosing between ``train.folds: 1`` and ``train.folds: k`` must not look at the test
split. This study reads only the source's official *training* split (and its validation split, if it has one) and runs nested
cross-validation on it: the training series are cut into 5 stratified outer folds;
for each, the rest is carved into train / validation in the split stage's proportion
(stratified, seeded), augmented as the
augment stage does, and

* **single**: one model, early-stopped on the validation carve;
* **ensemble**: ``--folds`` members over train + validation
  (:func:`goodfit.crossval.fit_cross_validated`);

both then predict the held-out outer fold. Every training series is predicted once
per seed. Prints, per seed and as means, the accuracy at 0.5 and at the cut
``train.threshold: val_accuracy`` would choose (two classes: on the validation carve
for the single model, on the out-of-fold predictions for the ensemble), ROC AUC and
log loss. The preset's other settings (model, augmentation, regularization, early
stopping) are used as they are.

    python benchmarks/cv_study.py ecg200 --data-path path/to/ECG200 --folds 5 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from goodfit.augment import Augmenter, val_seed  # noqa: E402
from goodfit.crossval import fit_cross_validated  # noqa: E402
from goodfit.evaluation import DEFAULT_THRESHOLD, choose_threshold, classification_metrics, predict_proba  # noqa: E402
from goodfit.models import build_model, model_spec  # noqa: E402
from goodfit.params import load_params  # noqa: E402
from goodfit.preset import apply_preset  # noqa: E402
from goodfit.sources import load_dataset  # noqa: E402
from goodfit.splitting import normalization_stats  # noqa: E402
from goodfit.training import configure_torch, fit, fit_options  # noqa: E402


def preset_params(name: str, data_path: str, seed: int, work: Path):
    path = work / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    apply_preset(name, params_path=path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["seed"], raw["data"]["path"] = seed, data_path
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_params(path)


def augmented(x, y, modality, params, seed, stats, clip):
    aug = Augmenter(modality=modality, cfg=params.augment, seed=seed, train_std=stats["std"], clip=clip)
    return np.concatenate(list(aug.iter_chunks(x, params.augment.copies, 4096))), np.tile(y, params.augment.copies + 1)


def study(params, x, y, modality, n_classes, seed, folds, val_share):
    from sklearn.model_selection import StratifiedKFold, train_test_split

    t = params.train
    fit_kwargs = {**fit_options(params), "device": "cpu", "amp": False, "verbose": False}
    proba = {"single": np.zeros((len(y), n_classes)), "ensemble": np.zeros((len(y), n_classes))}
    cut = {"single": np.full(len(y), DEFAULT_THRESHOLD), "ensemble": np.full(len(y), DEFAULT_THRESHOLD)}  # chosen
    for rest, held in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y):
        tr, va = train_test_split(rest, test_size=val_share, stratify=y[rest], random_state=seed)
        stats = normalization_stats(x[tr], modality)
        clip = (float(x[tr].min()), float(x[tr].max()))
        spec = model_spec(kind=t.model, modality=modality, input_shape=list(x.shape[1:]), n_classes=n_classes,
                          hidden=t.hidden, channels=t.channels, dropout=params.dropout, batch_norm=t.batch_norm,
                          kernel_size=t.kernel_size, global_pool=t.global_pool, **stats)
        x_tr, y_tr = augmented(x[tr], y[tr], modality, params, seed, stats, clip)
        model = build_model(spec, seed=seed)
        fit(model, x_train=x_tr, y_train=y_tr, x_val=x[va], y_val=y[va], seed=seed, **fit_kwargs)
        proba["single"][held] = predict_proba(model, x[held])
        if n_classes == 2:
            cut["single"][held] = choose_threshold(y[va], predict_proba(model, x[va]))
        x_va, y_va = augmented(x[va], y[va], modality, params, val_seed(seed), stats, clip)
        cv = fit_cross_validated(spec, x_train=x_tr, y_train=y_tr, x_val=x_va, y_val=y_va,
                                 copies=params.augment.copies, folds=folds, seed=seed, fit_kwargs=fit_kwargs)
        proba["ensemble"][held] = predict_proba(cv.model, x[held])
        if n_classes == 2:
            cut["ensemble"][held] = choose_threshold(cv.y_pool, cv.oof_proba)
    out = {}
    for name, p in proba.items():
        m = classification_metrics(y, p)
        rule = (p[:, 1] > cut[name]).astype(int) if n_classes == 2 else p.argmax(1)
        out[name] = {"accuracy at the validation-chosen cut": float((rule == y).mean()), "accuracy at 0.5": m["accuracy"],
                     "roc_auc": m.get("roc_auc", float("nan")), "log_loss": m["log_loss"]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="preset name (presets/NAME.yaml)")
    ap.add_argument("--data-path", required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args(argv)
    configure_torch(threads=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            params = preset_params(args.name, args.data_path, seed, Path(tmp))
            ds = load_dataset(params.data)
            if not ds.official or "train" not in ds.official:
                print(f"error: {args.name}'s source has no official training split to study", file=sys.stderr)
                return 2
            x, y = ds.official["train"]
            if "val" in ds.official:  # the training data are train + val; the carve keeps val's share
                x, y = np.concatenate([x, ds.official["val"][0]]), np.concatenate([y, ds.official["val"][1]])
                val_share = len(ds.official["val"][1]) / len(y)
            else:  # as the split stage carves it: data.val_fraction of all samples, taken from train
                n_total = len(y) + sum(len(v[1]) for k, v in ds.official.items() if k != "train")
                val_share = params.data.val_fraction * n_total / len(y)
            result = study(params, x, y, ds.modality, len(ds.class_names), seed, args.folds, val_share)
            for name, metrics in result.items():
                rows.append((seed, name, metrics))
                print(f"seed {seed} {name:8s} " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()), flush=True)
    for name in ("single", "ensemble"):
        values = [m for _, n, m in rows if n == name]
        print(f"mean {name:8s} " + "  ".join(f"{k} {np.mean([v[k] for v in values]):.4f}" for k in values[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
