"""DVC stage 'augment': train split -> originals + augmented copies in data/augmented/train.npz, gallery figure
(with train.folds > 1 also the validation split -> data/augmented/val.npz)."""

import sys
from pathlib import Path

import _goodfit  # noqa: F401  (first: a clear error when goodfit is not installed)
from goodfit.cli import run_stage

SPLIT = Path("data/split")
OUT = Path("data/augmented/train.npz")
OUT_VAL = Path("data/augmented/val.npz")  # train.folds > 1 only
FIGURE = Path("reports/figures/augmentation.png")


def body(params, run):
    from goodfit import plots
    from goodfit.augment import Augmenter, gallery_indices, gallery_variants, val_seed, write_augmented
    from goodfit.splitting import load_meta, open_split
    from goodfit.storage import to_float32

    chunk = params.augment.chunk_size
    meta = load_meta(SPLIT / "meta.json")
    x, y, value_range = open_split(SPLIT / "train.npz", meta, chunk)  # rows stay on disk, read per chunk
    augmenter = Augmenter(modality=meta["modality"], cfg=params.augment, seed=params.seed,
                          train_std=meta["normalization"]["std"], clip=value_range)
    rows = write_augmented(OUT, x, y, augmenter, copies=params.augment.copies, chunk_size=chunk)
    if params.train.folds > 1:  # cross-validation trains on validation samples too: they get copies as well
        xv, yv, _ = open_split(SPLIT / "val.npz", meta, chunk)
        val_augmenter = Augmenter(modality=meta["modality"], cfg=params.augment, seed=val_seed(params.seed),
                                  train_std=meta["normalization"]["std"], clip=value_range)
        write_augmented(OUT_VAL, xv, yv, val_augmenter, copies=params.augment.copies, chunk_size=chunk)
    idx = gallery_indices(y, rows=4)
    variants = gallery_variants(x, idx, augmenter, params.augment.gallery_variants)
    labels = [meta["class_names"][int(c)] for c in y[idx]]
    plots.augmentation_gallery(meta["modality"], to_float32(x[idx]), variants, FIGURE, labels=labels,
                               mean=meta["normalization"]["mean"], std=meta["normalization"]["std"],
                               language=params.report.language)
    run.log_metrics({"n_rows": rows, "n_original": len(x)})
    run.log_artifact(FIGURE)
    print(f"augment: {len(x)} originals + {params.augment.copies} copies each -> {rows} rows in {OUT}")


def data_files(params):
    return [SPLIT / "train.npz"] + ([SPLIT / "val.npz"] if params.train.folds > 1 else [])


if __name__ == "__main__":
    sys.exit(run_stage("augment", body, data_files=data_files))
