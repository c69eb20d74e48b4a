"""DVC stage 'split': dataset -> stratified, seeded data/split/{train,val,test}.npz + meta.json."""

import sys
from pathlib import Path

import _goodfit  # noqa: F401  (first: a clear error when goodfit is not installed)
from goodfit.cli import run_stage

OUT = Path("data/split")


def body(params, run):
    from goodfit import storage
    from goodfit.io import write_json, write_npz
    from goodfit.rawdata import dvc_hash, tracking_warning
    from goodfit.sources import load_dataset
    from goodfit.splitting import SPLITS, build_meta, make_splits

    warning = tracking_warning(params.data.path)  # a dataset DVC does not track: say so once, go on
    if warning:
        print(warning, file=sys.stderr)
    dataset = load_dataset(params.data)
    splits = make_splits(dataset, val_fraction=params.data.val_fraction, test_fraction=params.data.test_fraction,
                         seed=params.seed, keep_official=params.data.keep_official_split)
    dtype = storage.choose(params.data.storage, dataset.x)  # 8-bit images stay uint8 (goodfit.storage)
    meta = build_meta(dataset, splits, seed=params.seed, storage_dtype=dtype)
    for name in SPLITS:
        x, y = splits.arrays[name]
        write_npz(OUT / f"{name}.npz", x=storage.encode(x, dtype), y=y)
    write_json(OUT / "meta.json", meta)
    run.log_metrics({f"n_{name}": meta["counts"][name]["total"] for name in SPLITS})
    run.log_artifact(OUT / "meta.json")
    data_md5 = (dvc_hash(params.data.path) or "untracked") if params.data.path else "built-in"
    run.set_tags({"goodfit.data_dvc_md5": data_md5}, parent=True)
    sizes = ", ".join(f"{name} {meta['counts'][name]['total']}" for name in SPLITS)
    print(f"split: {dataset.source} ({meta['modality']}, {meta['n_classes']} classes, {splits.strategy}): {sizes}"
          f" ({dtype})")


if __name__ == "__main__":
    sys.exit(run_stage("split", body))
