"""What the train stage fits: one recipe, or the best of a grid of them chosen on validation.

``train.search`` (null by default: off) names a few params the train stage itself reads
(:data:`goodfit.params.SEARCH_KEYS`: ``weight_decay``, ``l1_lambda``, ``dropout``,
``train.lr``, ``train.label_smoothing``, ``train.ema_decay``, ``train.channels``,
``train.hidden``) and the values to try. Every candidate of the grid (the Cartesian product, the first key varying slowest,
each list in its order) is fitted exactly as a run with those values in params.yaml would
be, with the same seed: one model, or with ``train.folds > 1`` a cross-validation ensemble.
Each is scored on validation: the early-stopping monitor's value at its best epoch (lowest
``val_loss``, highest ``val_accuracy`` or ``val_auc``), for an ensemble the same measure on
its out-of-fold predictions. The best candidate wins; of equal scores the first in grid
order. The test split is never read. The winner's model, history and numbers are what the
stage writes, the same bytes as a run with its values would write; the grid, every
candidate's score and the winner are added to ``summary.json``.

Each candidate is an MLflow run under the pipeline's parent run (its params, per-epoch
metrics, ``val_score``), tagged ``goodfit.search.winner`` true or false; the train stage's own
run gets the winner's per-epoch metrics, and it and the parent run the tag ``goodfit.search.chosen``
(``candidate 3/4: weight_decay=0.001, dropout=0.5``) and the metric ``search_val_score``. Their params
stay params.yaml's (MLflow keeps a run's params once logged).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from goodfit.errors import GoodfitError

TAG_CANDIDATE = "goodfit.search.candidate"
TAG_WINNER = "goodfit.search.winner"  # on each candidate's run: true or false
TAG_CHOSEN = "goodfit.search.chosen"  # on the train stage's and the parent run: which candidate won
TIE_BREAK = "first in grid order"
# The out-of-fold measure of an ensemble for each early-stopping monitor (goodfit.evaluation's names).
_OUT_OF_FOLD = {"val_loss": "log_loss", "val_accuracy": "accuracy", "val_auc": "roc_auc"}
_print = functools.partial(print, flush=True)  # a line per epoch, shown as it comes under DVC too


@dataclass
class TrainData:
    """The train stage's inputs: meta.json, the augmented training split and the validation split
    (the augmented one, ``data/augmented/val.npz``, for a cross-validation ensemble)."""

    meta: dict
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


@dataclass
class Fitted:
    """One recipe trained: what the stage writes for it, and its validation score.

    ``choose_on()`` gives the (labels, probabilities) on which calibration and the threshold
    are chosen: the validation split, or an ensemble's out-of-fold predictions.
    """

    spec: dict
    model: Any
    history: list[dict]
    numbers: dict
    n_val: int
    choose_on: Callable[[], tuple[np.ndarray, np.ndarray]]
    score: float


@dataclass
class Trained:
    """The model the stage writes (the winner's with a search) and the search's summary keys (``{}`` without)."""

    fitted: Fitted
    summary: dict = field(default_factory=dict)


def recipe_spec(params, meta: Mapping) -> dict:
    """The model :func:`goodfit.models.model_spec` describes for these params and this data."""
    from goodfit.models import model_spec

    t = params.train
    return model_spec(kind=t.model, modality=meta["modality"], input_shape=meta["input_shape"],
                      n_classes=meta["n_classes"], hidden=t.hidden, channels=t.channels, dropout=params.dropout,
                      batch_norm=t.batch_norm, kernel_size=t.kernel_size, global_pool=t.global_pool,
                      class_names=meta["class_names"], feature_names=meta.get("feature_names"),
                      **meta["normalization"])


def candidates(grid: Mapping[str, list]) -> list[dict]:
    """Every combination of the grid's values, the first key varying slowest (``itertools.product``)."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def with_values(params, values: Mapping[str, Any]):
    """``params`` with a candidate's values set (``train.lr`` in the train section, ``dropout`` at the top) and
    ``train.search`` off: the params of a plain run with those values."""
    top = {k: v for k, v in values.items() if "." not in k}
    train = {k.split(".", 1)[1]: tuple(v) if isinstance(v, list) else v for k, v in values.items() if "." in k}
    return dataclasses.replace(params, **top, train=dataclasses.replace(params.train, **train, search=None))


def describe(values: Mapping[str, Any]) -> str:
    """``weight_decay=0.001, train.channels=[8, 16]``."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def better(score: float, best: float, monitor: str) -> bool:
    """Whether ``score`` beats ``best``: lower ``val_loss``, higher otherwise; a non-finite score never wins
    over a finite one, and an equal one never wins (ties go to the earlier candidate)."""
    if not math.isfinite(score):
        return False
    if not math.isfinite(best):
        return True
    return score < best if monitor == "val_loss" else score > best


def fit_recipe(params, data: TrainData, *, tracker, checkpoints, label: str = "", log=_print) -> Fitted:
    """Fit one recipe as the train stage does: one model, or a k-fold ensemble (``train.folds > 1``).

    Args:
        params: the validated params (the candidate's, during a search).
        data: the stage's inputs.
        tracker: where per-epoch metrics go (the stage's MLflow run, or a candidate's): ``log_metrics(metrics,
            step=epoch)``; an ensemble's metrics are suffixed ``_fold<j>``.
        checkpoints: a :class:`goodfit.resume.Checkpoints` (the candidate's view during a search).
        label: put before each epoch's console line (``candidate 2/6``).
        log: print-like, for the console lines.

    Raises:
        GoodfitError: training diverged, a class too small for the folds, malformed augmented splits.
    """
    from goodfit.crossval import fit_cross_validated, fold_history, originals, summarize
    from goodfit.evaluation import classification_metrics, predict_proba
    from goodfit.models import build_model
    from goodfit.streaming import head
    from goodfit.training import fit, fit_options, format_epoch

    t, es = params.train, params.early_stopping
    spec = recipe_spec(params, data.meta)
    fit_kwargs = fit_options(params)

    def on_epoch(row, fold=None):
        prefix = "".join(f"[{part}] " for part in ([label] if label else []) + (
            [] if fold is None else [f"{fold}/{t.folds}"]))
        log(prefix + format_epoch(row, t.max_epochs, params.report.language))
        suffix = "" if fold is None else f"_fold{fold}"
        tracker.log_metrics({k + suffix: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])

    if t.folds > 1:  # k-fold cross-validation ensemble over train + validation (goodfit.crossval)
        cv = fit_cross_validated(spec, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val,
                                 y_val=data.y_val, copies=params.augment.copies, folds=t.folds, seed=params.seed,
                                 fit_kwargs=fit_kwargs, on_epoch=lambda fold, row: on_epoch(row, fold),
                                 checkpoints=checkpoints)
        numbers = summarize(cv)
        score = classification_metrics(cv.y_pool, cv.oof_proba).get(_OUT_OF_FOLD[es.monitor], math.nan)
        return Fitted(spec={**spec, "folds": t.folds}, model=cv.model, history=fold_history(cv), numbers=numbers,
                      n_val=len(cv.y_pool), score=float(score),
                      choose_on=lambda: (cv.y_pool, cv.oof_proba))  # every pooled sample, predicted out of fold
    model = build_model(spec, seed=params.seed)
    n = originals(len(data.y_train), params.augment.copies, "data/augmented/train.npz")
    resume = checkpoints.load()
    for row in (resume or {}).get("history", []):  # this run's MLflow record holds the epochs before the stop too
        tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
    result = fit(model, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val, y_val=data.y_val,
                 seed=params.seed, on_epoch=on_epoch, x_train_eval=head(data.x_train, n),
                 y_train_eval=data.y_train[:n],
                 checkpoint=checkpoints.saver(), resume=resume, **fit_kwargs)
    numbers = {"best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
               "stopped_epoch": result.stopped_epoch, "stop_reason": result.stop_reason}
    return Fitted(spec=spec, model=model, history=result.history, numbers=numbers, n_val=len(data.y_val),
                  choose_on=lambda: (data.y_val, predict_proba(model, data.x_val)),
                  score=float(result.history[result.best_epoch - 1][es.monitor]))


def train(params, data: TrainData, *, run, checkpoints, log=_print) -> Trained:
    """The train stage's model: the recipe in ``params``, or with ``train.search`` the best candidate of its grid.

    Args:
        params: the validated params.
        data: the stage's inputs (the test split is not among them).
        run: the stage's :class:`goodfit.tracking.StageRun` (each candidate becomes one of its :meth:`child` runs).
        checkpoints: the stage's :class:`goodfit.resume.Checkpoints` (one set of states per candidate).
        log: print-like, for the console lines.

    Returns:
        :class:`Trained`: the model to write, and ``summary.json``'s search keys: ``search_grid``,
        ``search_monitor``, ``search_candidates`` (per candidate its values, ``val_score``, ``best_epoch``,
        ``stopped_epoch``), ``search_winner`` (its number from 1, values, a list as text, and score) and
        ``search_tie_break``.

    Raises:
        GoodfitError: as :func:`fit_recipe`, naming the candidate; ``train.channels`` searched for an MLP.
    """
    grid = params.train.search
    if not grid:
        return Trained(fitted=fit_recipe(params, data, tracker=run, checkpoints=checkpoints, log=log))
    from goodfit.cli import stage_params

    if "train.channels" in grid and recipe_spec(params, data.meta)["kind"] == "mlp":
        raise GoodfitError("params.yaml: train.search lists train.channels, but the model is an MLP "
                           f"({data.meta['modality']} data), which has no conv channels: every candidate would be "
                           "the same. Search train.hidden instead.")
    monitor = params.early_stopping.monitor
    grid_values = candidates(grid)
    total = len(grid_values)
    best: tuple[int, Fitted] | None = None
    rows, children = [], []
    log(f"train: search over {total} candidates ({' x '.join(str(len(v)) for v in grid.values())}), choosing on "
        f"{monitor}{' out of fold' if params.train.folds > 1 else ''} "
        f"({'lowest' if monitor == 'val_loss' else 'highest'}; ties: the first in grid order)")
    for i, values in enumerate(grid_values, start=1):
        label = f"candidate {i}/{total}"
        candidate = with_values(params, values)
        log(f"train: {label}: {describe(values)}")
        with run.child(f"train {label}: {describe(values)}", params={**stage_params(candidate, "train"),
                                                                      "search.candidate": i},
                       tags={TAG_CANDIDATE: str(i)}) as child:
            try:
                fitted = fit_recipe(candidate, data, tracker=child, checkpoints=checkpoints.candidate(i),
                                    label=label, log=log)
            except GoodfitError as exc:
                raise GoodfitError(f"train.search, {label} ({describe(values)}): {exc}") from exc
            child.log_metrics({"val_score": fitted.score, "best_epoch": fitted.numbers["best_epoch"],
                               "stopped_epoch": fitted.numbers["stopped_epoch"]})
        children.append(child)
        rows.append({"candidate": i, **values, "val_score": _number(fitted.score),
                     "best_epoch": fitted.numbers["best_epoch"], "stopped_epoch": fitted.numbers["stopped_epoch"]})
        log(f"train: {label}: {monitor} {fitted.score:.4f} at epoch {fitted.numbers['best_epoch']}")
        if best is None or better(fitted.score, best[1].score, monitor):
            best = (i, fitted)  # only the best so far stays in memory
    index, winner = best
    values = grid_values[index - 1]
    for i, child in enumerate(children, start=1):
        child.set_tags({TAG_WINNER: str(i == index).lower()})
    run.set_tags({TAG_CHOSEN: f"candidate {index}/{total}: {describe(values)}"}, parent=True)
    run.log_metrics({"search_val_score": winner.score}, parent=True)
    folds = params.train.folds
    for row in winner.history:  # the stage's run holds the winner's epochs, as a run with its values would
        suffix = "" if folds == 1 else f"_fold{row['fold']}"
        run.log_metrics({k + suffix: v for k, v in row.items() if k not in ("epoch", "fold")}, step=row["epoch"])
    log(f"train: search winner: candidate {index}/{total} ({describe(values)}), {monitor} {winner.score:.4f}")
    # DVC shows no lists among metrics: a width is text in search_winner, so `dvc exp show` has every winning value
    shown = {k: str(v) if isinstance(v, list) else v for k, v in values.items()}
    summary = {"search_grid": {k: list(v) for k, v in grid.items()}, "search_monitor": monitor,
               "search_candidates": rows, "search_tie_break": TIE_BREAK,
               "search_winner": {"candidate": index, **shown, "val_score": _number(winner.score)}}
    return Trained(fitted=winner, summary=summary)


def _number(score: float) -> float | None:
    """A score for summary.json: JSON has no NaN (a ROC AUC that a one-class validation split leaves undefined)."""
    return score if math.isfinite(score) else None
