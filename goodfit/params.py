"""Typed, validated parameters: one frozen dataclass per params.yaml section.

params.yaml is parsed once; an unknown key, a wrong type or a value out of range
raises :class:`GoodfitError` naming the key, what is allowed and what was given,
before any stage does work.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from goodfit.errors import GoodfitError


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.2), not as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """PyYAML keeps the last of two equal keys silently; a params file with both is refused."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} appears twice (first on line {seen[key]}); keep one", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


# ---------------------------------------------------------------- field specs
def _spec(default: Any, check: Callable[[str, Any], Any], doc: str = "") -> Any:
    return field(default=default, metadata={"check": check, "doc": doc})


def _fail(key: str, allowed: str, value: Any) -> GoodfitError:
    return GoodfitError(f"params.yaml: {key} must be {allowed}, got {value!r}.")


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str, Any], int]:
    allowed = "an integer" + (f" >= {lo}" if lo is not None else "") + (f" and <= {hi}" if hi is not None else "")

    def check(key: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _fail(key, allowed, v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise _fail(key, allowed, v)
        return v

    return check


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False) -> Callable[[str, Any], float]:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    allowed = "a finite number" + (" " + " and ".join(parts) if parts else "")

    def check(key: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _fail(key, allowed, v)
        v = float(v)
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise _fail(key, allowed, v)
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise _fail(key, allowed, v)
        return v

    return check


def odd_integer(lo: int, hi: int) -> Callable[[str, Any], int]:
    inner = integer(lo, hi)

    def check(key: str, v: Any) -> int:
        if inner(key, v) % 2 == 0:
            raise _fail(key, f"an odd integer >= {lo} and <= {hi}", v)
        return v

    return check


def boolean() -> Callable[[str, Any], bool]:
    def check(key: str, v: Any) -> bool:
        if not isinstance(v, bool):
            raise _fail(key, "true or false", v)
        return v

    return check


def choice(*options: str) -> Callable[[str, Any], str]:
    allowed = "one of " + ", ".join(repr(o) for o in options)

    def check(key: str, v: Any) -> str:
        if v not in options:
            raise _fail(key, allowed, v)
        return v

    return check


def number_or_choice(lo: float, hi: float, *options: str) -> Callable[[str, Any], float | str]:
    """A number strictly between ``lo`` and ``hi``, or one of ``options``."""
    allowed = f"a number > {lo:g} and < {hi:g}, or one of " + ", ".join(repr(o) for o in options)
    inner = number(lo, hi, lo_open=True, hi_open=True)

    def check(key: str, v: Any) -> float | str:
        if isinstance(v, str) and v in options:
            return v
        try:
            return inner(key, v)
        except GoodfitError:
            raise _fail(key, allowed, v) from None

    return check


def optional_str() -> Callable[[str, Any], str | None]:
    def check(key: str, v: Any) -> str | None:
        if v is None:
            return None
        if not isinstance(v, str) or not v.strip():
            raise _fail(key, "a non-empty string or null", v)
        return v

    return check


def model_name() -> Callable[[str, Any], str | None]:
    """null, or a name for MLflow's model registry (``models:/<name>@<alias>`` must parse)."""
    allowed = "null or a registered-model name without '/', ':' or '@' and without surrounding spaces"

    def check(key: str, v: Any) -> str | None:
        if v is None:
            return None
        if not isinstance(v, str) or not v.strip() or v != v.strip() or len(v) > 256 or any(c in v for c in "/:@"):
            raise _fail(key, allowed, v)
        return v

    return check


def int_list(lo: int = 1, min_len: int = 1) -> Callable[[str, Any], tuple[int, ...]]:
    allowed = f"a list of at least {min_len} integers >= {lo}"

    def check(key: str, v: Any) -> tuple[int, ...]:
        if not isinstance(v, list) or len(v) < min_len:
            raise _fail(key, allowed, v)
        for item in v:
            if isinstance(item, bool) or not isinstance(item, int) or item < lo:
                raise _fail(key, allowed, v)
        return tuple(v)

    return check


# The params a search inside the train stage (train.search) may set: the ones the train
# stage itself reads. Everything before it (augment.copies, the split) is another stage's
# data; sweep those with `dvc exp run`.
SEARCH_KEYS = ("weight_decay", "l1_lambda", "dropout", "train.lr", "train.label_smoothing", "train.ema_decay",
               "train.channels", "train.hidden")
SEARCH_LIMIT = 64  # candidates one train stage fits at most
_SEARCH_EXAMPLE = "{weight_decay: [0.0, 1.0e-4, 1.0e-3], dropout: [0.2, 0.5]}"


def search_grid() -> Callable[[str, Any], dict[str, list] | None]:
    """null (or an empty mapping): no search; else a mapping from a key of :data:`SEARCH_KEYS` to the
    non-empty list of values to try, each value checked by that key's own rule, at most
    :data:`SEARCH_LIMIT` candidates in all. Returns ``{key: [value, ...]}`` in the file's order."""

    def check(key: str, v: Any) -> dict[str, list] | None:
        if v is None or (isinstance(v, Mapping) and not v):
            return None
        if not isinstance(v, Mapping):
            raise _fail(key, f"null (no search) or a mapping from a param to the list of values to try, e.g. "
                             f"{_SEARCH_EXAMPLE}", v)
        grid: dict[str, list] = {}
        for name, values in v.items():
            rule = _search_rule(key, name)
            listed = name in ("train.channels", "train.hidden")
            example = "[[8, 16], [16, 32]]" if listed else "[0.0, 1.0e-4]"
            if not isinstance(values, list) or not values:
                raise _fail(f"{key}.{name}", f"a non-empty list of the values to try, e.g. {example}", values)
            checked = []
            for i, item in enumerate(values):
                try:
                    value = rule(f"{key}.{name}[{i}]", item)
                except GoodfitError as exc:
                    each = f" (each value to try is itself a list, e.g. {example})" if listed else ""
                    raise GoodfitError(f"{str(exc)[:-1]}{each}.") from None
                value = list(value) if isinstance(value, tuple) else value
                if value in checked:
                    raise GoodfitError(f"params.yaml: {key}.{name} lists {item!r} twice (items {checked.index(value)} "
                                       f"and {i}); keep one, or the search fits the same candidate twice.")
                checked.append(value)
            grid[str(name)] = checked
        n = math.prod(len(values) for values in grid.values())
        if n > SEARCH_LIMIT:
            sizes = " x ".join(f"{len(values)} ({name})" for name, values in grid.items())
            raise GoodfitError(
                f"params.yaml: {key} makes {sizes} = {n} candidates, more than the {SEARCH_LIMIT} one train stage "
                f"fits. Drop values, or search fewer keys here and sweep the others with "
                f"`dvc exp run --queue -S ...`.")
        return grid

    return check


def _search_rule(key: str, name: Any) -> Callable[[str, Any], Any]:
    """The rule of the param ``name`` that ``key`` (train.search) would set; a clear error for any other name."""
    if name in SEARCH_KEYS:
        section, _, leaf = str(name).rpartition(".")
        cls = TrainParams if section else Params
        return {f.name: f for f in dataclasses.fields(cls)}[leaf].metadata["check"]
    allowed = f"The keys a search can set: {', '.join(SEARCH_KEYS)}."
    same_leaf = [k for k in SEARCH_KEYS if k.rsplit(".", 1)[-1] == name]
    near = difflib.get_close_matches(str(name), SEARCH_KEYS, n=1, cutoff=0.6)
    if same_leaf:
        hint = f" Did you mean '{same_leaf[0]}'?"
    elif name in _all_keys():
        why = ("the stages before train make its data" if str(name).startswith(("augment.", "data."))
               else "it varies regularization and model width, with everything else fixed")
        hint = f" {name} is a param, but not one a search can vary ({why}): sweep it with `dvc exp run --queue " \
               f"-S {name}=...` instead."
    elif near:
        hint = f" Did you mean '{near[0]}'?"
    else:
        hint = ""
    raise GoodfitError(f"params.yaml: {key} cannot search {name!r}.{hint} {allowed}")


# ------------------------------------------------------------------ sections
@dataclass(frozen=True)
class DataParams:
    source: str = _spec("digits", choice("digits", "breast_cancer", "medmnist", "imagefolder", "csv", "ucr"))
    name: str | None = _spec(None, optional_str())
    path: str | None = _spec(None, optional_str())
    target: str | None = _spec(None, optional_str())
    image_size: int = _spec(28, integer(4, 1024))
    color: str = _spec("grayscale", choice("grayscale", "rgb"))
    val_fraction: float = _spec(0.15, number(0.0, 1.0, lo_open=True, hi_open=True))
    test_fraction: float = _spec(0.15, number(0.0, 1.0, lo_open=True, hi_open=True))
    keep_official_split: bool = _spec(True, boolean())
    storage: str = _spec("auto", choice("auto", "float32", "float16"))


@dataclass(frozen=True)
class ImageAugmentParams:
    rotation: float = _spec(15.0, number(0.0, 180.0))
    translate: float = _spec(0.1, number(0.0, 0.5))
    scale_min: float = _spec(0.9, number(0.1, 10.0))
    scale_max: float = _spec(1.1, number(0.1, 10.0))
    brightness: float = _spec(0.2, number(0.0, 1.0))
    contrast: float = _spec(0.2, number(0.0, 1.0))
    hflip: float = _spec(0.0, number(0.0, 1.0))
    blur_p: float = _spec(0.2, number(0.0, 1.0))
    blur_sigma_max: float = _spec(0.8, number(0.1, 10.0))
    interpolation: str = _spec("bilinear", choice("bilinear", "nearest"))


@dataclass(frozen=True)
class SeriesAugmentParams:
    noise_std: float = _spec(0.03, number(0.0, 10.0))
    scale_std: float = _spec(0.1, number(0.0, 1.0))
    warp_strength: float = _spec(0.2, number(0.0, 0.9))
    warp_knots: int = _spec(4, integer(1, 64))
    mask_p: float = _spec(0.5, number(0.0, 1.0))
    mask_fraction: float = _spec(0.1, number(0.0, 0.9))


@dataclass(frozen=True)
class TabularAugmentParams:
    noise_scale: float = _spec(0.05, number(0.0, 10.0))


@dataclass(frozen=True)
class AugmentParams:
    copies: int = _spec(4, integer(0, 1000))
    chunk_size: int = _spec(2048, integer(1))
    gallery_variants: int = _spec(7, integer(1, 64))
    image: ImageAugmentParams = field(default_factory=ImageAugmentParams)
    timeseries: SeriesAugmentParams = field(default_factory=SeriesAugmentParams)
    tabular: TabularAugmentParams = field(default_factory=TabularAugmentParams)


@dataclass(frozen=True)
class TrainParams:
    model: str = _spec("auto", choice("auto", "mlp", "cnn", "cnn1d"))
    hidden: tuple[int, ...] = _spec((64,), int_list(1))
    channels: tuple[int, ...] = _spec((16, 32), int_list(1))
    batch_norm: bool = _spec(False, boolean())
    kernel_size: int = _spec(3, odd_integer(1, 31))
    global_pool: bool = _spec(True, boolean())
    label_smoothing: float = _spec(0.0, number(0.0, 1.0, hi_open=True))
    ema_decay: float = _spec(0.0, number(0.0, 1.0, hi_open=True))
    threshold: float | str = _spec(0.5, number_or_choice(0.0, 1.0, "val_accuracy"))
    calibration: str = _spec("none", choice("none", "temperature"))
    optimizer: str = _spec("adamw", choice("adam", "adamw", "sgd"))
    lr: float = _spec(1e-3, number(0.0, None, lo_open=True))
    lr_schedule: str = _spec("constant", choice("constant", "plateau", "cosine"))
    lr_factor: float = _spec(0.5, number(0.0, 1.0, lo_open=True, hi_open=True))
    lr_patience: int = _spec(3, integer(0))
    warmup_epochs: int = _spec(0, integer(0, 1000))
    batch_size: int = _spec(64, integer(1))
    max_epochs: int = _spec(100, integer(1))
    device: str = _spec("cpu", choice("auto", "cpu", "cuda"))
    amp: bool = _spec(False, boolean())
    threads: int = _spec(1, integer(1, 256))
    processes: int = _spec(1, integer(1, 1024))
    folds: int = _spec(1, integer(1, 20))
    memory_budget: float | str = _spec("auto", number_or_choice(0.0, 1e6, "auto"))
    search: dict[str, list] | None = _spec(None, search_grid())


@dataclass(frozen=True)
class EarlyStoppingParams:
    patience: int = _spec(7, integer(1))
    delta: float = _spec(0.0, number(0.0))
    monitor: str = _spec("val_loss", choice("val_loss", "val_accuracy", "val_auc"))
    restore_best: bool = _spec(True, boolean())
    verbose: bool = _spec(True, boolean())


@dataclass(frozen=True)
class DiagnosisParams:
    overfit_rise: float = _spec(0.1, number(0.0, None, lo_open=True))
    underfit_ratio: float = _spec(0.7, number(0.0, 1.0, lo_open=True))
    noise_floor: float = _spec(0.02, number(0.0, 1.0))


@dataclass(frozen=True)
class EvaluateParams:
    bootstrap: int = _spec(1000, integer(100, 100_000))
    calibration_bins: int = _spec(15, integer(1, 100))


@dataclass(frozen=True)
class ReportParams:
    language: str = _spec("ja", choice("ja", "en"))


@dataclass(frozen=True)
class MlflowParams:
    experiment: str = _spec("goodfit", optional_str())
    register_as: str | None = _spec(None, model_name())


@dataclass(frozen=True)
class ReproParams:
    portable: bool = _spec(True, boolean())


@dataclass(frozen=True)
class Params:
    seed: int = _spec(42, integer(0, 2**32 - 1))
    weight_decay: float = _spec(1e-4, number(0.0))
    l1_lambda: float = _spec(0.0, number(0.0))
    dropout: float = _spec(0.3, number(0.0, 1.0, hi_open=True))
    data: DataParams = field(default_factory=DataParams)
    augment: AugmentParams = field(default_factory=AugmentParams)
    train: TrainParams = field(default_factory=TrainParams)
    early_stopping: EarlyStoppingParams = field(default_factory=EarlyStoppingParams)
    diagnosis: DiagnosisParams = field(default_factory=DiagnosisParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    report: ReportParams = field(default_factory=ReportParams)
    mlflow: MlflowParams = field(default_factory=MlflowParams)
    repro: ReproParams = field(default_factory=ReproParams)


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the top level"
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise GoodfitError(f"params.yaml: {where} must be a mapping of keys to values, got {raw!r}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            elsewhere = [k for k in _all_keys() if k.rsplit(".", 1)[-1] == key]
            if elsewhere:  # the exact name in another section beats a near miss in this one
                hint = f" Did you mean '{elsewhere[0]}'?"
            elif near:
                hint = f" Did you mean '{prefix}{near[0]}'?"
            else:
                hint = ""
            raise GoodfitError(
                f"params.yaml: unknown key '{prefix}{key}' in {where}.{hint} "
                f"Allowed keys there: {', '.join(sorted(fields))}."
            )
    values = {}
    for name, f in fields.items():
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            values[name] = _build(f.default_factory, raw.get(name), f"{prefix}{name}.")
        elif name in raw:
            values[name] = f.metadata["check"](f"{prefix}{name}", raw[name])
    return cls(**values)


def _all_keys(cls: type | None = None, prefix: str = "") -> list[str]:
    """Every dotted key params.yaml accepts."""
    out = []
    for f in dataclasses.fields(cls or Params):
        factory = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(factory):
            out += _all_keys(factory, f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


def _cross_checks(p: Params) -> None:
    d = p.data
    if d.val_fraction + d.test_fraction >= 0.9:
        raise GoodfitError(
            "params.yaml: data.val_fraction + data.test_fraction must be < 0.9 so the train split "
            f"keeps at least 10% of the data, got {d.val_fraction} + {d.test_fraction} = "
            f"{d.val_fraction + d.test_fraction:g}."
        )
    a = p.augment.image
    if a.scale_min > a.scale_max:
        raise GoodfitError(
            f"params.yaml: augment.image.scale_min must be <= augment.image.scale_max, "
            f"got {a.scale_min} > {a.scale_max}."
        )
    t = p.train
    if t.processes > 1 and t.folds > 1:
        raise GoodfitError(
            f"params.yaml: train.processes is {t.processes} and train.folds is {t.folds}: data-parallel training "
            "fits one model over several processes, and the cross-validation ensemble's members are not spread "
            "over them. Set train.folds: 1 to train data-parallel, or train.processes: 1 for the ensemble.")
    if t.warmup_epochs and t.lr_schedule == "plateau":
        raise GoodfitError(
            "params.yaml: train.warmup_epochs works with train.lr_schedule constant or cosine, not plateau (which "
            "lowers the rate when validation stalls, as a warm-up would make it look): set train.warmup_epochs: 0, "
            "or train.lr_schedule: cosine.")
    if t.warmup_epochs >= t.max_epochs:
        raise GoodfitError(
            f"params.yaml: train.warmup_epochs ({t.warmup_epochs}) must be smaller than train.max_epochs "
            f"({t.max_epochs}): lower it, or raise train.max_epochs.")
    if t.batch_size < t.processes:
        raise GoodfitError(
            f"params.yaml: train.batch_size ({t.batch_size}) is the global batch, shared among the "
            f"{t.processes} processes of train.processes: it must be at least {t.processes}. Raise "
            "train.batch_size or lower train.processes.")
    if d.source in ("imagefolder", "csv") and d.path is None:
        raise GoodfitError(f"params.yaml: data.path is required when data.source is {d.source!r}, got null.")
    if d.source == "csv" and d.target is None:
        raise GoodfitError("params.yaml: data.target (the label column) is required when data.source is 'csv', got null.")
    if d.source in ("medmnist", "ucr") and d.name is None and d.path is None:
        raise GoodfitError(
            f"params.yaml: data.name (e.g. 'breastmnist' or 'ECG200') or data.path is required when "
            f"data.source is {d.source!r}, got null."
        )


def parse_params(raw: Any) -> Params:
    """Validate a parsed params mapping and return frozen :class:`Params`.

    Raises:
        GoodfitError: unknown key, wrong type or out-of-range value.
    """
    params = _build(Params, raw, "")
    _cross_checks(params)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``.

    Raises:
        GoodfitError: the file is missing, is malformed YAML (with line and column), or is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise GoodfitError(f"{path} does not exist; run from the project root or pass --params.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GoodfitError(f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                           "save it as UTF-8.") from exc
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise GoodfitError(f"{path} is not valid YAML{where}: {exc.problem}. Fix the syntax there.") from exc
    except yaml.YAMLError as exc:
        raise GoodfitError(f"{path} is not valid YAML: {exc}") from exc
    return parse_params(raw)


def as_flat_dict(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a params dataclass to ``{"train.lr": 0.001, ...}`` for logging."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(as_flat_dict(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = list(value) if isinstance(value, tuple) else value
    return out
