"""Would more data help? ``python -m goodfit.data_curve`` (``make data-curve``).

Trains the configured recipe (params.yaml: model, regularization, augmentation
copies, early stopping) on stratified, seeded subsets of the training split and
draws the train-eval loss and the validation loss against the number of training
samples, as scikit-learn's ``LearningCurveDisplay`` does (the mean over seeds, and a
band of ±1 standard deviation, ``np.std``, when there are several), then says in
words whether more data would help. Writes ``<out>/data_curve.json`` and
``<out>/data_curve.png`` (``--out``, default ``reports/data_curve``) and logs one
MLflow parent run (``goodfit.kind = data_curve``) with a child run per subset and seed.

Inputs: the pipeline's outputs, so run ``dvc repro`` first: ``data/split/meta.json``,
``data/split/val.npz`` and ``data/augmented/train.npz``. The augmented rows are all
originals, then copy 1 of every original, then copy 2, ... (row ``r`` is a copy of
original ``r % n``), and the augmentation is seeded per sample, so a subset's training
rows are just its originals' rows and their copies: nothing is re-augmented.

Subsets: nested and stratified. For each seed every class's training samples are
shuffled once (``numpy.random.default_rng(seed)``) and the subset of fraction ``f``
takes the first ``round(f * n_c)`` of class ``c``, so the 10% subset lies inside
the 25% one and every class keeps its share. (scikit-learn's stratified splitters
draw each size on its own, so their subsets do not nest.) ``n_train`` can differ
from ``round(f * n)`` by the per-class rounding. A subset keeps the stored row order,
so at fraction 1 with seed = ``params.seed`` and ``train.folds: 1`` the point is
the train stage's own model.

Each point is a model built and trained as ``stages/train.py`` does (``model_spec``
from meta.json, ``build_model(seed)``, ``fit(**fit_options(params))``), early-stopped
on the whole validation split, with the subset's ORIGINAL rows measured in eval mode
every epoch (``train_eval_loss``, like for like with ``val_loss``); the point is the
best epoch's row. The test split is never read. With ``train.folds > 1`` the train
stage builds a cross-validation ensemble; the data curve trains one model per
subset on the train / validation split instead.

The verdict reads the mean curve. ``P`` is the class-prior loss
(:func:`goodfit.evaluation.prior_loss` of the training class counts), ``n1 < n2``
the two largest subsets, ``gap`` the validation minus the train-eval loss, and
``fall = (val(n1) - val(n2)) / log2(n2 / n1)`` how much the validation loss still
fell per doubling of the training set at the largest subsets:

0. ``inconclusive`` first, when there are several seeds and the standard error of the
   mean validation loss (``sd / sqrt(k - 1)`` over ``k`` seeds) at ``n1`` or ``n2`` is at
   least ``NOISE_LIMIT * P``: the seeds disagree by more than the gap the rules below
   call large, so no rule can be read (a small validation split, or early stopping on
   a metric other than the loss, whose best epoch's loss jumps). One seed gives no
   estimate of that noise: run several.
1. ``high_bias`` when both losses are at least ``diagnosis.underfit_ratio * P`` at
   ``n1`` and ``n2`` and ``fall < STILL_FALLING * P``: high and flat, so a bigger
   or more flexible model would help, not more data.
2. ``high_variance`` when ``gap(n2) >= GAP_LARGE * P``, the gap closed by at least
   ``GAP_CLOSING * P`` from the smallest subset to ``n2``, and
   ``fall >= STILL_FALLING * P``: more data would help.
3. ``converged`` otherwise: as data grows the validation loss approaches the
   train-eval loss, so a small gap (or a validation loss that stopped falling) leaves
   little for more data of this kind to win.

The thresholds are shares of ``P`` (as ``diagnosis.noise_floor`` is), so they mean
the same for two classes or ten.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from goodfit.errors import GoodfitError

DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
GAP_LARGE = 0.10      # gap at the largest subset, as a share of the class-prior loss, that counts as large
GAP_CLOSING = 0.02    # how much the gap must shrink from the smallest to the largest subset (share of it)
STILL_FALLING = 0.02  # validation loss drop per doubling of the data that counts as still falling (share of it)
NOISE_LIMIT = GAP_LARGE  # standard error of the mean validation loss beyond which no verdict is read (share of it)

HIGH_VARIANCE, HIGH_BIAS, CONVERGED, INCONCLUSIVE = "high_variance", "high_bias", "converged", "inconclusive"

META = Path("data/split/meta.json")
TRAIN_SPLIT = Path("data/split/train.npz")
VAL = Path("data/split/val.npz")
AUGMENTED = Path("data/augmented/train.npz")
OUT = Path("reports/data_curve")
# params the split and augment stages read that cannot change the arrays the data curve reads
_NOT_DATA = ("report", "mlflow")

_WORDS = {
    "en": {
        HIGH_VARIANCE: ("high variance", "more data would help"),
        HIGH_BIAS: ("high bias", "a bigger or more flexible model would help, not more data"),
        CONVERGED: ("converged", "more data of this kind is unlikely to help much"),
        INCONCLUSIVE: ("inconclusive", "the seeds disagree too much to tell: run more seeds (--seeds), use a larger "
                                       "validation split, or early-stop on val_loss"),
    },
    "ja": {
        HIGH_VARIANCE: ("高バリアンス", "データを増やせば改善が見込めます"),
        HIGH_BIAS: ("高バイアス", "データを増やすより、より大きく柔軟なモデルが有効です"),
        CONVERGED: ("収束", "同じ種類のデータを増やしても大きな改善は見込めません"),
        INCONCLUSIVE: ("判定保留", "シード間のばらつきが大きく判定できません: シードを増やす (--seeds)、検証データを"
                                  "増やす、または val_loss で早期終了してください"),
    },
}


def verdict_words(verdict: str, language: str) -> tuple[str, str]:
    """``(name, advice)`` of a verdict in ``language`` (``ja`` or ``en``)."""
    return _WORDS[language][verdict]


# ---------------------------------------------------------------- options
def check_fractions(values: Sequence[Any]) -> tuple[float, ...]:
    """Validate ``--fractions``: numbers in (0, 1], at least two, unique, increasing.

    Raises:
        GoodfitError: naming the offending value and an example that works.
    """
    example = "e.g. --fractions " + " ".join(f"{f:g}" for f in DEFAULT_FRACTIONS)
    fractions = []
    for value in values:
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise GoodfitError(f"--fractions: {value!r} is not a number; give shares of the training split in "
                               f"(0, 1], {example}.") from None
        if not (math.isfinite(f) and 0.0 < f <= 1.0):
            raise GoodfitError(f"--fractions: {value} is outside (0, 1]; each fraction is a share of the training "
                               f"split (1 = all of it), {example}.")
        fractions.append(f)
    if len(fractions) < 2:
        raise GoodfitError(f"--fractions needs at least two fractions to show a trend, got {len(fractions)}; "
                           f"{example}.")
    repeated = sorted({f for f in fractions if fractions.count(f) > 1})
    if repeated:
        raise GoodfitError(f"--fractions: {', '.join(f'{f:g}' for f in repeated)} is given more than once; give "
                           f"each fraction once, {example}.")
    if fractions != sorted(fractions):
        raise GoodfitError(f"--fractions must increase, got {' '.join(f'{f:g}' for f in fractions)}; "
                           f"give them as {' '.join(f'{f:g}' for f in sorted(fractions))}.")
    return tuple(fractions)


def check_seeds(values: Sequence[Any]) -> tuple[int, ...]:
    """Validate ``--seeds``: unique integers in [0, 2**32).

    Raises:
        GoodfitError: naming the offending value.
    """
    seeds = []
    for value in values:
        try:
            seed = int(value)
        except (TypeError, ValueError):
            raise GoodfitError(f"--seeds: {value!r} is not an integer; e.g. --seeds 0 1 2.") from None
        if not 0 <= seed < 2**32:
            raise GoodfitError(f"--seeds: {seed} is outside [0, 2**32); e.g. --seeds 0 1 2.")
        if seed in seeds:
            raise GoodfitError(f"--seeds: {seed} is given more than once; give each seed once.")
        seeds.append(seed)
    return tuple(seeds)


# ---------------------------------------------------------------- subsets
def nested_subsets(y, fractions: Sequence[float], seed: int, class_names: Sequence[str]) -> list:
    """The original rows of each fraction's subset: stratified, seeded, nested.

    Every class's samples are shuffled once with ``numpy.random.default_rng(seed)``;
    fraction ``f`` takes the first ``round(f * n_c)`` of class ``c`` (half rounds up),
    so a smaller fraction's subset lies inside every larger one's.

    Args:
        y: the training split's labels ``(n,)``.
        fractions: increasing, in (0, 1].
        seed: the shuffle's seed.
        class_names: names for the messages (index = label).

    Returns:
        One sorted int64 index array per fraction (fraction 1: ``arange(n)``).

    Raises:
        GoodfitError: a fraction leaves a class without a sample (naming both).
    """
    import numpy as np

    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    order = [rng.permutation(np.flatnonzero(y == c)) for c in range(len(class_names))]
    subsets = []
    for f in fractions:
        parts = []
        for c, rows in enumerate(order):
            take = int(math.floor(f * len(rows) + 0.5))
            if take == 0:
                smallest = math.ceil(500.0 / max(len(rows), 1)) / 1000.0
                raise GoodfitError(
                    f"--fractions {f:g}: class {class_names[c]!r} has {len(rows)} training samples, so a "
                    f"{f:g} subset would hold none of it, and every class needs at least one. Use fractions of "
                    f"at least {smallest:g}, or drop {f:g}.")
            parts.append(rows[:take])
        subsets.append(np.sort(np.concatenate(parts)).astype(np.int64))
    return subsets


def augmented_rows(originals, n: int, copies: int):
    """The rows of the augmented split that belong to ``originals``: the originals, then each copy block."""
    import numpy as np

    originals = np.asarray(originals, dtype=np.int64)
    return np.concatenate([originals + k * n for k in range(copies + 1)])


# ---------------------------------------------------------------- inputs
@dataclass
class PipelineData:
    """What the data curve reads from the pipeline's outputs."""

    meta: dict
    x_aug: Any      # (n * (copies + 1), ...) float32: originals, then copy blocks
    y_aug: Any      # (n * (copies + 1),) int64
    n: int          # originals in the training split
    x_val: Any
    y_val: Any


def _read_yaml(path: Path) -> dict:
    """A YAML file read as params.yaml is (``1e-05`` is a float), ``{}`` when absent or empty."""
    import yaml

    from goodfit.params import _Loader

    if not path.is_file():
        return {}
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}  # noqa: S506 - SafeLoader subclass


def _stale_params(lock: dict, params_path: Path) -> list[str]:
    """The params split / augment read whose values in dvc.lock differ from ``params_path`` now."""
    current = _read_yaml(params_path)
    changed = []
    for stage in ("split", "augment"):
        body = (lock.get("stages") or {}).get(stage)
        if body is None:
            changed.append(f"dvc.lock has no {stage} stage")
            continue
        recorded = (body.get("params") or {}).get(params_path.name) or {}
        for key, value in recorded.items():
            if key.split(".")[0] in _NOT_DATA:
                continue
            now: Any = current
            for part in key.split("."):
                now = now.get(part) if isinstance(now, dict) else None
            if now != value:
                changed.append(f"{key} (dvc.lock: {value!r}, {params_path.name}: {now!r})")
    return changed


def _stale_split_files(lock: dict, root: Path) -> list[str]:
    """The data/split files whose md5 differs from what dvc.lock says the augment stage read."""
    import hashlib

    deps = ((lock.get("stages") or {}).get("augment") or {}).get("deps") or []
    changed = []
    for dep in deps:
        path = root / dep["path"]
        if dep["path"].startswith("data/split/") and path.is_file() and dep.get("md5"):
            if hashlib.md5(path.read_bytes()).hexdigest() != dep["md5"]:  # noqa: S324 - DVC's own file hash
                changed.append(dep["path"])
    return changed


def load_pipeline_data(params, *, root: Path = Path("."), params_path: Path = Path("params.yaml")) -> PipelineData:
    """Read meta.json, the augmented training split and the validation split, checking they match ``params``.

    Raises:
        GoodfitError: an output is missing, or it was made with other params (``dvc repro`` first).
    """
    from goodfit.crossval import originals
    from goodfit.io import read_npz
    from goodfit.splitting import load_meta, load_split

    missing = [str(p) for p in (META, VAL, AUGMENTED) if not (root / p).is_file()]
    if missing:
        raise GoodfitError(f"The data curve reads the pipeline's outputs, and {', '.join(missing)} "
                           f"{'is' if len(missing) == 1 else 'are'} missing: run dvc repro first "
                           "(the split and augment stages make them).")
    lock = _read_yaml(root / "dvc.lock")  # stages run by hand leave none: then meta.json and the rows are checked
    stale = _stale_params(lock, params_path) if lock else []
    if stale:
        raise GoodfitError(f"The pipeline's data was made with other params than {params_path} now holds: "
                           f"{'; '.join(stale)}. Run dvc repro first.")
    stale_files = _stale_split_files(lock, root)
    if stale_files:
        raise GoodfitError(f"{', '.join(stale_files)} changed after the augment stage read them (dvc.lock), so "
                           "data/augmented is stale. Run dvc repro first.")
    meta = load_meta(root / META)
    if meta.get("seed") is not None and meta["seed"] != params.seed:
        raise GoodfitError(f"{META} was made with seed {meta['seed']}, but {params_path} says seed "
                           f"{params.seed}. Run dvc repro first.")
    x_aug, y_aug = load_split(root / AUGMENTED, meta)
    copies = params.augment.copies
    n = originals(len(y_aug), copies, str(AUGMENTED))
    n_split = meta["counts"]["train"]["total"]
    y_split = read_npz(root / TRAIN_SPLIT, ("y",))["y"] if (root / TRAIN_SPLIT).is_file() else y_aug[:n]
    if n != n_split or len(y_split) != n or any((y_aug[k * n:(k + 1) * n] != y_split).any()
                                                for k in range(copies + 1)):
        raise GoodfitError(f"{AUGMENTED} holds {len(y_aug)} rows, which are not the {n_split} training samples "
                           f"of {META} with augment.copies = {copies} copies each in the augment stage's order. "
                           "Run dvc repro first.")
    x_val, y_val = load_split(root / VAL, meta)
    return PipelineData(meta=meta, x_aug=x_aug, y_aug=y_aug, n=n, x_val=x_val, y_val=y_val)


# ---------------------------------------------------------------- training
def fit_point(data: PipelineData, params, *, originals_idx, seed: int, spec: dict) -> tuple[dict, list[dict]]:
    """Train the recipe on one subset; returns the point (the best epoch's numbers) and the history.

    Args:
        data: :func:`load_pipeline_data`'s result.
        params: the validated params.
        originals_idx: the subset's original rows (:func:`nested_subsets`).
        seed: weight initialisation, shuffling and dropout.
        spec: the model (:func:`goodfit.models.model_spec`).

    Raises:
        GoodfitError: training diverged.
    """
    from goodfit.models import build_model
    from goodfit.training import fit, fit_options

    rows = augmented_rows(originals_idx, data.n, params.augment.copies)
    model = build_model(spec, seed=seed)
    options = {**fit_options(params), "verbose": False}  # one line per point instead of early stopping's chatter
    result = fit(model, x_train=data.x_aug[rows], y_train=data.y_aug[rows], x_val=data.x_val, y_val=data.y_val,
                 x_train_eval=data.x_aug[originals_idx], y_train_eval=data.y_aug[originals_idx], seed=seed,
                 **options)
    best = result.history[result.best_epoch - 1]
    point = {"n_train": int(len(originals_idx)), "seed": int(seed), "best_epoch": int(result.best_epoch),
             "stopped_epoch": int(result.stopped_epoch), "stop_reason": result.stop_reason,
             "train_eval_loss": float(best["train_eval_loss"]), "val_loss": float(best["val_loss"]),
             "train_eval_accuracy": float(best["train_eval_accuracy"]), "val_accuracy": float(best["val_accuracy"])}
    return point, result.history


def mean_curve(points: Sequence[dict]) -> list[dict]:
    """Per fraction: the mean and standard deviation (``np.std``, as scikit-learn's display) over seeds."""
    import numpy as np

    curve = []
    for f in sorted({p["fraction"] for p in points}):
        group = [p for p in points if p["fraction"] == f]
        row = {"fraction": f, "n_train": group[0]["n_train"], "n_seeds": len(group)}
        for key in ("train_eval_loss", "val_loss", "train_eval_accuracy", "val_accuracy"):
            values = np.array([p[key] for p in group], dtype=np.float64)
            row[f"{key}_mean"], row[f"{key}_sd"] = float(values.mean()), float(values.std())
        curve.append(row)
    return curve


# ---------------------------------------------------------------- verdict
def thresholds(underfit_ratio: float) -> dict:
    """The verdict's thresholds, each a share of the class-prior loss."""
    return {"scale": "share of the class-prior loss (prior_loss)", "gap_large": GAP_LARGE,
            "gap_closing": GAP_CLOSING, "still_falling_per_doubling": STILL_FALLING,
            "noise_limit": NOISE_LIMIT, "underfit_ratio": underfit_ratio}


def judge(curve: Sequence[dict], *, prior_loss: float, underfit_ratio: float, language: str = "en") -> dict:
    """The verdict on a mean curve (see the module docstring for the rules).

    Args:
        curve: rows with ``n_train``, ``train_eval_loss_mean`` and ``val_loss_mean``, increasing ``n_train``
            (at least two rows); ``val_loss_sd`` (``np.std`` over seeds) and ``n_seeds`` where there are several.
        prior_loss: the class-prior loss ``P``.
        underfit_ratio: ``params.diagnosis.underfit_ratio``.
        language: ``ja`` or ``en`` for the reason and the advice.

    Returns:
        ``{"verdict", "name", "advice", "reason", "numbers", "thresholds"}``.

    Raises:
        GoodfitError: fewer than two points, or two subsets of the same size.
    """
    n = [int(r["n_train"]) for r in curve]
    if len(n) < 2:
        raise GoodfitError("A data curve needs at least two subsets to judge a trend.")
    if any(b <= a for a, b in zip(n, n[1:])):
        raise GoodfitError(f"The subsets hold {n} training samples; each must be larger than the one before. "
                           "Choose fractions further apart.")
    tr = [float(r["train_eval_loss_mean"]) for r in curve]
    va = [float(r["val_loss_mean"]) for r in curve]
    p = float(prior_loss)
    fall = (va[-2] - va[-1]) / math.log2(n[-1] / n[-2])
    gap, gap_first = va[-1] - tr[-1], va[0] - tr[0]
    high = underfit_ratio * p
    numbers = {"prior_loss": p, "n_train": n[-1], "n_train_previous": n[-2], "n_train_smallest": n[0],
               "train_eval_loss": tr[-1], "val_loss": va[-1], "gap": gap, "gap_smallest": gap_first,
               "gap_closed": gap_first - gap, "val_fall_per_doubling": fall, "high_loss": high,
               "gap_share": gap / p, "val_fall_share": fall / p}
    seeds = [int(r.get("n_seeds", 1)) for r in curve[-2:]]
    if min(seeds) >= 2:
        se = [float(r["val_loss_sd"]) / math.sqrt(k - 1) for r, k in zip(curve[-2:], seeds)]
        numbers.update({"val_loss_se_previous": se[0], "val_loss_se": se[1], "n_seeds": min(seeds),
                        "val_loss_se_share": max(se) / p})
    flat = fall < STILL_FALLING * p
    if min(seeds) >= 2 and numbers["val_loss_se_share"] >= NOISE_LIMIT:
        verdict = INCONCLUSIVE
    elif min(tr[-2:]) >= high and min(va[-2:]) >= high and flat:
        verdict = HIGH_BIAS
    elif gap >= GAP_LARGE * p and gap_first - gap >= GAP_CLOSING * p and not flat:
        verdict = HIGH_VARIANCE
    else:
        verdict = CONVERGED
    name, advice = verdict_words(verdict, language)
    return {"verdict": verdict, "name": name, "advice": advice,
            "reason": _explain(verdict, numbers, underfit_ratio, language), "numbers": numbers,
            "thresholds": thresholds(underfit_ratio)}


_PHRASES = {
    "en": {"bias": "at the two largest subsets both the train-eval and the validation loss stay >= {ratio:g} x the "
                   "class-prior loss {p:.3f} = {high:.3f} (validation {val:.3f}, train-eval {train:.3f})",
           "gap": "at {n2} samples the validation loss is {gap:.3f} above the train-eval loss ({share:.1%} of the "
                  "class-prior loss {p:.3f}; large from {large:.0%})",
           "closing": "the gap shrank by {closed:.3f} from {first:.3f} at {n0} samples",
           "fall": "from {n1} to {n2} samples the validation loss fell {fall:.3f} per doubling",
           "small": ": small", "not_closing": " (closing from {closing:.3f})",
           "falling": " (>= {falling:.3f}: still falling)", "flat": " (< {falling:.3f}: flat)", "join": "; ",
           "noise": "over {k} seeds the mean validation loss has a standard error of {se1:.3f} at {n1} and {se2:.3f} "
                    "at {n2} samples ({se_share:.1%} of the class-prior loss {p:.3f}; readable below {limit:.0%})"},
    "ja": {"bias": "最大の 2 つの部分集合で訓練損失（評価モード）と検証損失がともに {ratio:g} × クラス事前分布の損失 "
                   "{p:.3f} = {high:.3f} 以上 (検証 {val:.3f}, 訓練 {train:.3f})",
           "gap": "{n2} サンプルで検証損失は訓練損失（評価モード）より {gap:.3f} 高い (クラス事前分布の損失 {p:.3f} の "
                  "{share:.1%}; {large:.0%} 以上で大)",
           "closing": "その差は {n0} サンプルの {first:.3f} から {closed:.3f} 縮んだ",
           "fall": "{n1} → {n2} サンプルで検証損失はデータ倍増あたり {fall:.3f} 低下",
           "small": "：小さい", "not_closing": " ({closing:.3f} 以上で縮小)",
           "falling": " ({falling:.3f} 以上: まだ低下中)", "flat": " ({falling:.3f} 未満: 横ばい)", "join": "、",
           "noise": "{k} シードの検証損失の平均の標準誤差は {n1} サンプルで {se1:.3f}、{n2} サンプルで {se2:.3f} "
                    "(クラス事前分布の損失 {p:.3f} の {se_share:.1%}; {limit:.0%} 未満で判定可能)"},
}


def _explain(verdict: str, x: dict, underfit_ratio: float, language: str) -> str:
    """The reason for ``verdict`` with its numbers: the conditions that held, or for ``converged`` those that failed."""
    w, p = _PHRASES[language], x["prior_loss"]
    values = {"ratio": underfit_ratio, "p": p, "high": x["high_loss"], "val": x["val_loss"],
              "train": x["train_eval_loss"], "n0": x["n_train_smallest"], "n1": x["n_train_previous"],
              "n2": x["n_train"], "gap": x["gap"], "share": x["gap_share"], "large": GAP_LARGE,
              "closed": x["gap_closed"], "first": x["gap_smallest"], "fall": x["val_fall_per_doubling"],
              "closing": GAP_CLOSING * p, "falling": STILL_FALLING * p, "limit": NOISE_LIMIT,
              "k": x.get("n_seeds"), "se1": x.get("val_loss_se_previous"), "se2": x.get("val_loss_se"),
              "se_share": x.get("val_loss_se_share")}
    if verdict == INCONCLUSIVE:
        parts = [w["noise"], w["gap"], w["fall"]]
    elif verdict == HIGH_BIAS:
        parts = [w["bias"], w["fall"] + w["flat"]]
    elif verdict == HIGH_VARIANCE:
        parts = [w["gap"], w["closing"], w["fall"] + w["falling"]]
    else:
        parts = ([w["gap"] + w["small"]] if x["gap"] < GAP_LARGE * p else []) + \
                ([w["closing"] + w["not_closing"]] if x["gap_closed"] < GAP_CLOSING * p else []) + \
                ([w["fall"] + w["flat"]] if x["val_fall_per_doubling"] < STILL_FALLING * p else [])
    return w["join"].join(part.format(**values) for part in parts)


# ---------------------------------------------------------------- the command
def _log_point(tracker, run_id: str | None, point: dict, history: Sequence[dict], seconds: float) -> None:
    """One child run's metrics: the history by epoch, then the point's numbers (``best_*`` at its best epoch)."""
    tracker.log_steps([(r["epoch"], {k: v for k, v in r.items() if k != "epoch"}) for r in history], run_id=run_id)
    best = {f"best_{k}": point[k] for k in ("train_eval_loss", "val_loss", "train_eval_accuracy", "val_accuracy")}
    tracker.log_metrics({"n_train": point["n_train"], "best_epoch": point["best_epoch"],
                         "stopped_epoch": point["stopped_epoch"], "fit_seconds": seconds, **best}, run_id=run_id)


def run(params, *, fractions: Sequence[float], seeds: Sequence[int], out: Path = OUT, root: Path = Path("."),
        params_path: Path = Path("params.yaml"), log=print) -> dict:
    """Train every subset and seed, judge the curve, write ``out``/data_curve.{json,png}, log to MLflow.

    Args:
        params: the validated params.
        fractions: increasing, in (0, 1] (:func:`check_fractions`).
        seeds: the repeats (each draws its own subsets and initialises its own models).
        out: the output folder.
        root: the project root (where ``data/`` and ``dvc.lock`` are).
        params_path: the params file (checked against ``dvc.lock``).
        log: print-like, for the progress lines.

    Returns:
        The report written to ``data_curve.json``.

    Raises:
        GoodfitError: missing or stale pipeline outputs, a fraction too small for a class, a store that
            cannot be reached, or training that diverged.
    """
    from goodfit import plots
    from goodfit.evaluation import check_threshold, prior_loss
    from goodfit.io import all_or_nothing, write_json
    from goodfit.models import model_spec
    from goodfit.numerics import describe
    from goodfit.params import as_flat_dict
    from goodfit.tracking import TAG_DATASET, CommandRun
    from goodfit.training import configure_torch

    t = params.train
    configure_torch(threads=t.threads)
    data = load_pipeline_data(params, root=root, params_path=params_path)
    meta = data.meta
    subsets = {seed: nested_subsets(data.y_aug[:data.n], fractions, seed, meta["class_names"]) for seed in seeds}
    spec = model_spec(kind=t.model, modality=meta["modality"], input_shape=meta["input_shape"],
                      n_classes=meta["n_classes"], hidden=t.hidden, channels=t.channels, dropout=params.dropout,
                      batch_norm=t.batch_norm, kernel_size=t.kernel_size, global_pool=t.global_pool,
                      **meta["normalization"])
    check_threshold(t.threshold, meta["n_classes"])
    language = params.report.language
    dataset = params.data.name or params.data.source
    note = (f"train.folds is {t.folds}: the train stage builds a {t.folds}-fold ensemble; the data curve trains one "
            "model per subset on the train / validation split" if t.folds > 1 else "")
    options = {"data_curve.fractions": list(fractions), "data_curve.seeds": list(seeds)}
    tags = {TAG_DATASET: dataset, **describe(params.repro.portable)}
    points, total = [], len(fractions) * len(seeds)
    start_all = time.monotonic()
    with CommandRun(kind="data_curve", experiment=params.mlflow.experiment, params={**as_flat_dict(params),
                    **options}, tags=tags, root=root.resolve()) as tracker, all_or_nothing():
        for seed in seeds:
            for f, idx in zip(fractions, subsets[seed]):
                child = {"fraction": f, "n_train": int(len(idx)), "seed": seed}
                with tracker.child(f"fraction={f:g} seed={seed}", params=child) as run_id:
                    started = time.monotonic()
                    point, history = fit_point(data, params, originals_idx=idx, seed=seed, spec=spec)
                    seconds = time.monotonic() - started
                    point = {"fraction": f, **point}
                    _log_point(tracker, run_id, point, history, seconds)
                points.append(point)
                log(f"[{len(points)}/{total}] fraction {f:g} seed {seed}: n_train {point['n_train']}, best epoch "
                    f"{point['best_epoch']}, train-eval loss {point['train_eval_loss']:.4f}, val loss "
                    f"{point['val_loss']:.4f} ({seconds:.0f} s)")
        curve = mean_curve(points)
        prior = prior_loss(meta["counts"]["train"]["per_class"])
        verdict = judge(curve, prior_loss=prior, underfit_ratio=params.diagnosis.underfit_ratio, language=language)
        report = {"dataset": dataset, "fractions": list(fractions), "seeds": list(seeds),
                  "subsets": "nested and stratified: per seed each class shuffled once, fraction f takes the first "
                             "round(f * n_class) of every class",
                  "validation": f"{VAL} (the test split is never read)", "model": spec["kind"],
                  "train_folds": t.folds, "note": note, "points": points, "curve": curve, **verdict}
        write_json(out / "data_curve.json", report)
        plots.data_curve(curve, out / "data_curve.png", verdict=verdict["verdict"], advice=verdict["advice"],
                         reason=verdict["reason"], prior_loss=prior, dataset=dataset, language=language)
        tracker.log_steps([(r["n_train"], {"curve_train_eval_loss": r["train_eval_loss_mean"],
                                           "curve_val_loss": r["val_loss_mean"]}) for r in curve])  # step = n_train
        tracker.log_metrics(verdict["numbers"])
        tracker.set_tags({"goodfit.data_curve.verdict": verdict["verdict"]})
        for name in ("data_curve.json", "data_curve.png"):
            tracker.log_artifact(out / name)
    log(f"({time.monotonic() - start_all:.0f} s in all)")
    return report


def format_report(report: dict, language: str) -> str:
    """The console table and the verdict."""
    ja = language == "ja"
    head = ("割合  訓練数  訓練損失(評価)  検証損失  検証正解率" if ja else
            "fraction  n_train  train-eval loss  val loss  val accuracy")
    lines = [head]
    for r in report["curve"]:
        sd = r["n_seeds"] > 1
        tr = f"{r['train_eval_loss_mean']:.4f}" + (f" ±{r['train_eval_loss_sd']:.4f}" if sd else "")
        va = f"{r['val_loss_mean']:.4f}" + (f" ±{r['val_loss_sd']:.4f}" if sd else "")
        lines.append(f"{r['fraction']:>8g}  {r['n_train']:>7d}  {tr:>15}  {va:>8}  {r['val_accuracy_mean']:>12.3f}")
    label = "判定" if ja else "verdict"
    lines.append(f"\n{label}: {report['name']} ({report['verdict']}): {report['advice']}")
    lines.append(f"  {report['reason']}")
    if report.get("note"):
        lines.append(f"  note: {report['note']}")
    return "\n".join(lines)


def _sigterm(signum, frame):  # noqa: ARG001 - as the stages: SIGTERM is Ctrl-C
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goodfit.data_curve", description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", nargs="+", default=[str(f) for f in DEFAULT_FRACTIONS], metavar="F",
                        help="shares of the training split, increasing, in (0, 1] (default: 0.1 0.25 0.5 1.0)")
    parser.add_argument("--seeds", nargs="+", default=None, metavar="SEED",
                        help="repeats: each draws its subsets and trains with its seed (default: params.seed)")
    parser.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    parser.add_argument("--out", default=str(OUT), help=f"output folder (default {OUT})")
    args = parser.parse_args(argv)
    try:
        fractions = check_fractions(args.fractions)
        seeds = check_seeds(args.seeds) if args.seeds is not None else None
        from goodfit.numerics import pin, portable_from_params

        pin(portable_from_params(args.params))  # before torch and numpy load: they pick their kernels then
        signal.signal(signal.SIGTERM, _sigterm)
        from goodfit.params import load_params

        params = load_params(args.params)
        report = run(params, fractions=fractions, seeds=seeds or (params.seed,), out=Path(args.out),
                     params_path=Path(args.params))
    except GoodfitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("data_curve: interrupted; nothing was written.", file=sys.stderr)
        return 130
    print(format_report(report, params.report.language))
    print(f"\nwrote {Path(args.out) / 'data_curve.json'} and {Path(args.out) / 'data_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
