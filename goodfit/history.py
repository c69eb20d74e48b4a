"""The per-epoch record of training: its rows, ``reports/train/history.csv``, and its split by fold.

One row per epoch (a dict). The columns, in the CSV's order:

* ``epoch``: from 1;
* ``train_loss``: the running mean of the batch losses over the epoch, as trained: on the
  augmented copies, dropout on, the weights moving within the epoch (the lighter curve of
  the learning-curve figure);
* ``val_loss``, ``val_accuracy``: the validation split in eval mode at the epoch's end;
* ``lr``, ``weight_l1``, ``weight_l2``, ``sparsity``: the learning rate and the weights;
* ``train_eval_loss``, ``train_eval_accuracy``: the training ORIGINALS (no augmented copies)
  in eval mode at the epoch's end, measured exactly as the validation split is: the
  like-for-like partner of ``val_loss`` (the fit diagnosis and the data curve compare these two);
* ``val_auc`` (only when early stopping monitors it), and ``fold`` first when the model
  is a cross-validation ensemble (``train.folds > 1``; one block of rows per member).

Histories written before ``train_eval_*`` existed read back without those columns;
:func:`train_measure` says which training loss a history can offer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from goodfit.errors import GoodfitError

COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy", "lr", "weight_l1", "weight_l2", "sparsity",
           "train_eval_loss", "train_eval_accuracy")
REQUIRED = ("epoch", "train_loss", "val_loss")
TRAIN_EVAL = "train_eval_loss"


def to_csv(history: Sequence[dict]) -> str:
    """The history as CSV text: the :data:`COLUMNS` it has, in that order, then any others (``fold``,
    ``val_auc``) in the rows' order."""
    import pandas as pd

    first = history[0] if history else dict.fromkeys(COLUMNS)
    columns = [c for c in COLUMNS if c in first] + [k for k in first if k not in COLUMNS]
    return pd.DataFrame(list(history), columns=columns).to_csv(index=False, lineterminator="\n")


def read(path) -> list[dict]:
    """Read a history CSV written by :func:`to_csv`.

    Raises:
        GoodfitError: missing, unreadable or malformed file, or missing columns.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise GoodfitError(f"{path} does not exist. Run the train stage first (dvc repro).")
    try:
        frame = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise GoodfitError(f"{path} is not a readable CSV file ({str(exc).splitlines()[0]}); re-create it with "
                           "the train stage (dvc repro -f train).") from exc
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise GoodfitError(f"{path} lacks columns {missing}; re-create it with the train stage.")
    return frame.to_dict("records")


def train_measure(history: Sequence[dict]) -> str:
    """The training loss to compare with ``val_loss``: ``train_eval_loss`` when the history has it
    (like for like), else ``train_loss`` (a history from before it existed)."""
    return TRAIN_EVAL if history and TRAIN_EVAL in history[0] else "train_loss"


def with_folds(histories: Sequence[Sequence[dict]]) -> list[dict]:
    """One history of an ensemble from its members' histories: every row with its ``fold`` (from 1) first."""
    return [{"fold": fold, **row} for fold, rows in enumerate(histories, start=1) for row in rows]


def split_folds(history: Sequence[dict]) -> list[list[dict]] | None:
    """A history with a ``fold`` column as one history per member (without that column), in fold order;
    ``None`` for the history of a single model."""
    if not history or "fold" not in history[0]:
        return None
    folds = sorted({r["fold"] for r in history})
    return [[{k: v for k, v in r.items() if k != "fold"} for r in history if r["fold"] == f] for f in folds]
