"""k-fold cross-validation ensembles for small datasets (``train.folds > 1``).

With a few hundred samples, one validation split of a few dozen is a noisy judge:
it decides the epoch (early stopping) and the decision threshold, and its samples
never train the model. With ``train.folds: k`` the train and validation splits are
pooled and cut into k stratified, seeded folds. Member j trains on the other folds'
samples, each with its augmented copies, and is early-stopped on fold j's original
samples; the saved model averages the members' probabilities
(:class:`goodfit.models.Ensemble`). Every pooled sample is predicted once, by the
member that did not train on it: these out-of-fold predictions give the validation
loss and, with ``train.threshold: val_accuracy``, the threshold. The test split is
never touched.

Augmented rows are laid out as the augment stage writes them: all originals, then
copy 1 of every original, then copy 2, ..., so row ``r`` of a split with ``n``
originals is a copy of original ``r % n``. A member never sees a copy of a sample
it is validated on (tests/test_crossval.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from goodfit.errors import GoodfitError


@dataclass
class CrossValResult:
    """The ensemble, each member's :class:`goodfit.training.FitResult`, and the out-of-fold predictions."""

    model: object
    results: list
    oof_proba: np.ndarray
    y_pool: np.ndarray


def assign_folds(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of every sample: stratified by class, shuffled with ``seed``.

    Raises:
        GoodfitError: a class has fewer samples than folds.
    """
    from sklearn.model_selection import StratifiedKFold

    counts = Counter(int(c) for c in y)
    smallest = min(counts, key=counts.get)
    if counts[smallest] < folds:
        raise GoodfitError(
            f"params.yaml: train.folds is {folds}, but class {smallest} has only {counts[smallest]} samples in the "
            f"train and validation splits together; every fold needs one. Lower train.folds to at most "
            f"{counts[smallest]} (or 1: no cross-validation)."
        )
    fold = np.empty(len(y), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for j, (_, held_out) in enumerate(splitter.split(np.zeros(len(y)), y)):
        fold[held_out] = j
    return fold


def originals(n_rows: int, copies: int, what: str) -> int:
    """How many original samples an augmented split of ``n_rows`` rows holds.

    Raises:
        GoodfitError: ``n_rows`` is not a multiple of ``copies + 1``.
    """
    if n_rows % (copies + 1):
        raise GoodfitError(f"{what} has {n_rows} rows, not a multiple of augment.copies + 1 = {copies + 1}; "
                           "re-create it with the augment stage (dvc repro -f augment).")
    return n_rows // (copies + 1)


def fit_cross_validated(spec: dict, *, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                        y_val: np.ndarray, copies: int, folds: int, seed: int, fit_kwargs: dict,
                        on_epoch: Callable[[int, dict], None] | None = None,
                        checkpoints=None) -> CrossValResult:
    """Train one member per fold and return their ensemble.

    Args:
        spec: the member model (see :func:`goodfit.models.model_spec`).
        x_train, y_train: the augmented training split (originals, then copies).
        x_val, y_val: the augmented validation split, laid out the same way.
        copies: ``augment.copies``.
        folds: k >= 2.
        seed: the folds' shuffle; member j is initialised and trained with ``seed + j``.
        fit_kwargs: passed to :func:`goodfit.training.fit` (optimizer, regularization,
            early stopping, ...).
        on_epoch: called with (fold number from 1, history row) after every epoch.
        checkpoints: a :class:`goodfit.resume.Checkpoints`: each member saves its state
            after every epoch and resumes from it (a finished member is restored, not retrained).

    Raises:
        GoodfitError: a class too small for the folds, malformed augmented splits, or a
            member whose training diverged.
    """
    from goodfit.evaluation import predict_proba
    from goodfit.models import Ensemble, build_model
    from goodfit.training import fit

    n_tr = originals(len(y_train), copies, "data/augmented/train.npz")
    n_va = originals(len(y_val), copies, "data/augmented/val.npz")
    y_pool = np.concatenate([y_train[:n_tr], y_val[:n_va]])
    fold = assign_folds(y_pool, folds, seed)
    fold_of_train_row = fold[np.arange(len(y_train)) % n_tr]
    fold_of_val_row = fold[n_tr + np.arange(len(y_val)) % n_va]
    x_pool = np.concatenate([x_train[:n_tr], x_val[:n_va]])
    oof = np.zeros((len(y_pool), spec["n_classes"]), dtype=np.float64)
    members, results = [], []
    for j in range(folds):
        keep_t, keep_v = fold_of_train_row != j, fold_of_val_row != j
        held_out = fold == j
        member = build_model(spec, seed=seed + j)
        callback = None if on_epoch is None else (lambda row, k=j + 1: on_epoch(k, row))
        resume = {} if checkpoints is None else {"checkpoint": checkpoints.saver(j + 1),
                                                 "resume": checkpoints.load(j + 1)}
        results.append(fit(member, x_train=np.concatenate([x_train[keep_t], x_val[keep_v]]),
                           y_train=np.concatenate([y_train[keep_t], y_val[keep_v]]), x_val=x_pool[held_out],
                           y_val=y_pool[held_out], seed=seed + j, on_epoch=callback,
                           x_train_eval=x_pool[~held_out], y_train_eval=y_pool[~held_out],  # its originals
                           **resume, **fit_kwargs))
        oof[held_out] = predict_proba(member, x_pool[held_out])
        members.append(member)
    return CrossValResult(model=Ensemble(members).eval(), results=results, oof_proba=oof, y_pool=y_pool)


def summarize(cv: CrossValResult) -> dict:
    """summary.json's training numbers for an ensemble: the members' median best epoch, the
    last stopped epoch, the commonest stop reason, and the out-of-fold log loss as
    ``best_val_loss`` (the validation loss of the ensemble's way of training)."""
    from goodfit.evaluation import classification_metrics

    best = [r.best_epoch for r in cv.results]
    return {"best_epoch": int(np.median(best)), "best_val_loss": classification_metrics(cv.y_pool, cv.oof_proba)[
                "log_loss"],
            "stopped_epoch": max(r.stopped_epoch for r in cv.results),
            "stop_reason": Counter(r.stop_reason for r in cv.results).most_common(1)[0][0],
            "fold_best_epochs": best, "fold_stopped_epochs": [r.stopped_epoch for r in cv.results]}


def fold_history(cv: CrossValResult) -> list[dict]:
    """history.csv's rows for an ensemble: every member's history, each row with its ``fold`` (from 1)."""
    from goodfit.history import with_folds

    return with_folds([result.history for result in cv.results])
