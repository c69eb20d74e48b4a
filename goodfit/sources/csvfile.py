"""CSV tables: one row per sample, numeric feature columns and a label column (``data.target``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from goodfit.errors import GoodfitError
from goodfit.sources.base import Dataset, encode_labels, existing_path


def quote_columns(names) -> str:
    """``'a', 'b', 'c'`` for the first five names, then ``and N more``."""
    names = [str(n) for n in names]
    return ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def load_csv(data_params) -> Dataset:
    """The table at ``data.path``: every column but ``data.target`` is a numeric feature.

    The label column may hold numbers or text; its sorted distinct values become
    the classes.

    Raises:
        GoodfitError: missing or unparsable file, no such label column, no feature
            columns, a missing value or a non-numeric feature (each names the column).
    """
    path = existing_path(data_params.path, "a CSV file with a header row", "Fix data.path in params.yaml.")
    if path.is_dir():
        raise GoodfitError(f"params.yaml: data.path {str(path)!r} is a folder; for data.source 'csv' it must be a CSV file.")
    frame = read_frame(path)
    target = data_params.target
    if target not in frame.columns:
        raise GoodfitError(
            f"params.yaml: data.target {target!r} is not a column of {path}; its columns are "
            f"{quote_columns(frame.columns)}. Set data.target to the label column."
        )
    features = [c for c in frame.columns if c != target]
    if not features:
        raise GoodfitError(f"{path} has no feature columns besides the label column {target!r}.")
    _check_missing(frame, path, "before training")
    x = feature_matrix(frame, features, path, f"only the label column ({target!r}) may hold text")
    y, class_names = encode_labels(frame[target].to_numpy(), f"{path} column {target!r}")
    return Dataset(
        x=x,
        y=y,
        modality="tabular",
        class_names=class_names,
        source=f"csv:{Path(path).name}",
        feature_names=[str(c) for c in features],
    )


def read_frame(path: Path):
    """The CSV at ``path`` as a DataFrame (header row first).

    Raises:
        GoodfitError: the file cannot be parsed as CSV.
    """
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise GoodfitError(f"{path} cannot be read as CSV ({str(exc).strip()}); check the file's format.") from exc


def _check_missing(frame, path: Path, when: str) -> None:
    missing = frame.columns[frame.isna().any()].tolist()
    if missing:
        col = missing[0]
        rows = np.flatnonzero(frame[col].isna().to_numpy())
        raise GoodfitError(
            f"{path}: column {col!r} has {len(rows)} missing value(s) (first in data row {rows[0] + 1})"
            + (f"; columns {quote_columns(missing)} have missing values" if len(missing) > 1 else "")
            + f". Impute them or drop those rows {when}."
        )


def feature_matrix(frame, features: list, path: Path, text_hint: str, when: str = "before training") -> np.ndarray:
    """The ``features`` columns of ``frame`` as float32 ``(N, F)``, checked: no missing value, text or
    infinity (each message names the column and, for a missing value, the data row).

    Raises:
        GoodfitError: naming the first bad column.
    """
    import pandas as pd

    _check_missing(frame[features], path, when)
    text = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        col = text[0]
        bad = frame[col][pd.to_numeric(frame[col], errors="coerce").isna()].iloc[0]
        raise GoodfitError(
            f"{path}: feature column {col!r} is not numeric (e.g. {bad!r})"
            + (f"; non-numeric columns: {quote_columns(text)}" if len(text) > 1 else "")
            + f". Encode it as numbers (e.g. one-hot) or drop it; {text_hint}."
        )
    x = frame[features].to_numpy(dtype=np.float64)  # (N, F)
    infinite = [c for c, bad in zip(features, np.isinf(x).any(axis=0)) if bad]
    if infinite:
        raise GoodfitError(f"{path}: column {infinite[0]!r} holds infinite values; replace them with finite numbers.")
    return x.astype(np.float32)
