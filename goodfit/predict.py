"""``python -m goodfit.predict``: apply a trained model to new data and write one CSV row per sample.

```
python -m goodfit.predict data/split/test.npz --out predictions.csv
python -m goodfit.predict new_scans/ --model models:/goodfit-digits@champion --out predictions.csv
```

The model is ``models/model.pt`` (default) or an MLflow model URI (``models:/<name>@<alias>``,
``models:/<name>/<version>``, ``models:/<model id>``, ``runs:/<run id>/model``) in the store
goodfit logs to. The input is read with the readers of :mod:`goodfit.sources`, labels never
required:

- ``.npz``: a goodfit split file (``x``, e.g. ``data/split/test.npz``; ids are row numbers
  from 0) or a MedMNIST-style file (``<split>_images``; ids ``test/0``, ...; ``--split``);
- image files or folders (PNG / JPEG, any depth; ids are the paths), converted to the
  model's channels as the split stage converts them;
- a ``.csv`` table with a header row holding exactly the model's feature columns (plus
  the ``--id-column``; ids are data row numbers from 1 otherwise);
- a UCR-style ``.tsv`` file: one series per row, with or without the class in the first
  column (ids are row numbers from 1).

The CSV has ``id``, ``prob_<class name>`` for each class and ``predicted`` (the class at
the model's saved decision threshold, after its calibration temperature): the numbers
the evaluate stage computes. Input that does not fit the model stops the command with
a message naming the sample or column and what the model takes; nothing is written then.
Numeric kernels are pinned as in the stages (``repro.portable`` of ``--params``, portable
when that file is absent), so the probabilities are the same bits on every CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from goodfit.errors import GoodfitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = "a .npz, .csv or .tsv file, PNG/JPEG images or a folder of them"


def is_model_uri(model: str) -> bool:
    """``models:/...``, ``runs:/...`` or another ``scheme:/...`` URI rather than a checkpoint path."""
    return "://" in model or model.startswith(("models:/", "runs:/"))


def load_predictor(model: str):
    """A :class:`goodfit.inference.Predictor` for ``models/model.pt``-style paths or MLflow model URIs.

    Raises:
        GoodfitError: the checkpoint or MLflow model cannot be loaded.
    """
    if is_model_uri(model):
        from goodfit.tracking import load_predictor as load_logged

        return load_logged(model)
    from goodfit.inference import Predictor

    return Predictor.from_checkpoint(model)


def _refuse_modality(predictor, given: str) -> GoodfitError:
    hint = {"image": "a .npz file, PNG/JPEG images or a folder of them", "tabular": "a .csv file",
            "timeseries": "a UCR-style .tsv file or a .npz file"}[predictor.modality]
    return GoodfitError(f"The model ({predictor.source}) takes {predictor.expects}, not {given}; give it {hint}.")


def read_images(paths: list[Path], predictor, *, resize: bool):
    """Image files (and the images under folders): ``(ids, x)``.

    Raises:
        GoodfitError: a folder without images, an unreadable file, an image of another size
            (unless ``resize``), or a model that does not take images.
    """
    import numpy as np

    from goodfit.sources.imagefolder import list_images, read_image, to_array

    if predictor.modality != "image":
        raise _refuse_modality(predictor, "images")
    c, h, w = predictor.input_shape
    if c not in (1, 3):
        raise GoodfitError(f"The model ({predictor.source}) takes images with {c} channels; image files have 1 "
                           "(grayscale) or 3 (RGB). Give it a .npz file of such images.")
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise GoodfitError(f"{path} holds no PNG/JPEG images ({', '.join(IMAGE_SUFFIXES)}).")
            files += found
        else:
            files.append(path)
    x = np.empty((len(files), c, h, w), dtype=np.float32)
    for i, f in enumerate(files):
        img = read_image(f, "grayscale" if c == 1 else "rgb")
        if img.size != (w, h) and not (resize and h == w):
            raise GoodfitError(
                f"{f}: the image is {img.size[0]}x{img.size[1]}, but the model ({predictor.source}) takes "
                f"{predictor.expects}. Resize it to {w}x{h} first, or pass --resize to resize it as the split "
                "stage resized the training images (bilinear; right only for images of the training images' size)."
            )
        x[i] = to_array(img, h)
    return [str(f) for f in files], x


def read_npz(path: Path, predictor, *, split: str | None):
    """A goodfit split file (``x``) or a MedMNIST-style file (``<split>_images``): ``(ids, x)``.

    Raises:
        GoodfitError: an unreadable file, neither layout, or no such ``split``.
    """
    import zipfile

    import numpy as np

    from goodfit import io
    from goodfit.sources import medmnist
    from goodfit.storage import to_float32

    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise GoodfitError(f"{path} is not a readable .npz file ({exc}).") from exc
    if "x" in names:  # a goodfit split file: float32, or 8-bit levels k meaning k / 255 (goodfit.storage)
        x = to_float32(io.read_npz(path, ("x",))["x"])
        return [str(i) for i in range(len(x))], x
    if predictor.modality != "image":
        raise _refuse_modality(predictor, "MedMNIST images")
    images = medmnist.read_images(path)
    if split is not None:
        if split not in images:
            raise GoodfitError(f"{path} has no {split}_images; it holds {', '.join(f'{s}_images' for s in images)}.")
        images = {split: images[split]}
    ids = [f"{s}/{i}" for s, arr in images.items() for i in range(len(arr))]
    return ids, np.concatenate(list(images.values()))


def read_csv(path: Path, predictor, *, id_column: str | None):
    """A table with the model's feature columns (and an optional id column): ``(ids, x)``.

    Raises:
        GoodfitError: a missing or extra column, a missing value, text or infinity (naming the column).
    """
    from goodfit.sources.csvfile import feature_matrix, quote_columns, read_frame

    if predictor.modality != "tabular":
        raise _refuse_modality(predictor, "a table")
    frame = read_frame(path)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if id_column is not None and id_column not in columns:
        raise GoodfitError(f"--id-column {id_column!r} is not a column of {path}; its columns are "
                           f"{quote_columns(columns)}.")
    given = [c for c in columns if c != id_column]
    wanted = predictor.feature_names or given[:predictor.input_shape[0]]
    takes = f"the model ({predictor.source}) takes {len(wanted)} feature columns: {quote_columns(wanted)}"
    missing = [c for c in wanted if c not in given]
    if missing:
        raise GoodfitError(f"{path} lacks the feature column(s) {quote_columns(missing)}; {takes}.")
    extra = [c for c in given if c not in wanted]
    if extra:
        raise GoodfitError(
            f"{path} has column(s) {quote_columns(extra)} that the model does not take; {takes}. Drop them (a label "
            "column too), or name an id column with --id-column.")
    x = feature_matrix(frame, wanted, path, "the model takes numbers only", when="before predicting")
    ids = frame[id_column].astype(str).tolist() if id_column else [str(i + 1) for i in range(len(frame))]
    return ids, x


def read_tsv(path: Path, predictor):
    """A UCR-style file, one series per row, with or without the class first: ``(ids, x)`` as ``(N, 1, L)``.

    Raises:
        GoodfitError: rows of another length than the model's series, a missing value or text (naming the row).
    """
    import numpy as np

    from goodfit.sources.ucr import read_tsv as read_ucr

    if predictor.modality != "timeseries":
        raise _refuse_modality(predictor, "series")
    channels, length = predictor.input_shape
    takes = f"the model ({predictor.source}) takes series of length {length}"
    if channels != 1:
        raise GoodfitError(f"{path}: a TSV file holds one channel per row, but {takes} with {channels} channels; "
                           "give it a .npz file with x of shape (N, C, L).")
    try:
        first, rest = read_ucr(path)
    except GoodfitError as exc:
        raise GoodfitError(f"{exc} ({takes}.)") from exc
    values = np.column_stack([first, rest])  # (N, 1 + M): read_ucr splits off a first column that may be a series value
    if values.shape[1] == length + 1:
        values = values[:, 1:]  # the class in the first column, as in the UCR archive: not needed
    elif values.shape[1] != length:
        raise GoodfitError(f"{path}: each row holds {values.shape[1]} values, but {takes} ({length + 1} values "
                           "with the class in the first column, as UCR files have it).")
    return [str(i + 1) for i in range(len(values))], values[:, None, :].astype(np.float32)


def read_inputs(inputs: list[str], predictor, *, resize: bool = False, split: str | None = None,
                id_column: str | None = None):
    """The samples of ``inputs`` for ``predictor``: ``(ids, x, what)``, ``x`` checked against the model.

    Raises:
        GoodfitError: a missing path, an unknown format, several non-image inputs, or input that does
            not fit the model.
    """
    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.exists():
            raise GoodfitError(f"{p} does not exist; give {FORMATS}.")
    images = [p for p in paths if p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES]
    if images and len(images) == len(paths):
        ids, x = read_images(images, predictor, resize=resize)
    elif len(paths) > 1:
        raise GoodfitError(f"Give one .npz, .csv or .tsv file at a time (or several images and folders of them); "
                           f"got {', '.join(map(str, paths))}.")
    elif paths[0].suffix.lower() == ".npz":
        ids, x = read_npz(paths[0], predictor, split=split)
    elif paths[0].suffix.lower() == ".csv":
        ids, x = read_csv(paths[0], predictor, id_column=id_column)
    elif paths[0].suffix.lower() == ".tsv":
        ids, x = read_tsv(paths[0], predictor)
    else:
        raise GoodfitError(f"{paths[0]}: goodfit cannot tell its format from its name; give {FORMATS}.")
    what = str(paths[0]) if len(paths) == 1 else f"{len(paths)} inputs"
    return ids, predictor.check(x, ids, what), what


def to_csv(ids: list[str], table: dict[str, list]) -> str:
    """``id``, ``prob_<class>``..., ``predicted``; probabilities written so they read back as the same float64."""
    import csv
    import io

    from goodfit.inference import format_number

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    columns = list(table)
    writer.writerow(["id", *columns])
    for i, sample in enumerate(ids):
        writer.writerow([sample] + [format_number(table[c][i]) if c != "predicted" else table[c][i]
                                    for c in columns])
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goodfit.predict", description=(
        "Apply a trained model to new data; writes one CSV row per sample: id, each class's probability "
        "(prob_<class>) and the predicted class at the model's decision threshold."))
    parser.add_argument("inputs", nargs="+", help=FORMATS)
    parser.add_argument("--model", default="models/model.pt",
                        help="a checkpoint (default: models/model.pt) or an MLflow model URI, e.g. "
                             "models:/goodfit-digits@champion")
    parser.add_argument("--out", "-o", default="predictions.csv", help="the CSV to write (default: predictions.csv)")
    parser.add_argument("--split", help="for a MedMNIST-style .npz: only this split (train, val or test)")
    parser.add_argument("--id-column", help="for a .csv: the column that names each row (not a feature)")
    parser.add_argument("--resize", action="store_true",
                        help="resize images of another size to the model's, as the split stage does (bilinear)")
    parser.add_argument("--params", default="params.yaml",
                        help="read repro.portable from it (default: params.yaml; portable numerics when absent)")
    args = parser.parse_args(argv)

    from goodfit.numerics import pin_for_stage

    try:
        pin_for_stage(["--params", args.params])  # before torch and numpy load: they pick their kernels then
        predictor = load_predictor(args.model)
        ids, x, what = read_inputs(args.inputs, predictor, resize=args.resize, split=args.split,
                                   id_column=args.id_column)
        table = predictor.table(x)
        from goodfit.io import write_text

        write_text(args.out, to_csv(ids, table))
    except GoodfitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = {name: table["predicted"].count(name) for name in predictor.class_names}
    shown = ", ".join(f"{name}: {n}" for name, n in counts.items() if n)
    print(f"predict: {len(ids)} samples of {what} with {predictor.source} -> {args.out} (predicted: {shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
