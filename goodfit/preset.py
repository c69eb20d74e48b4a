"""Params presets: ``python -m goodfit.preset NAME`` merges ``presets/NAME.yaml`` into ``params.yaml``.

A preset holds only the keys it changes. They are written into ``params.yaml``
in place, keeping its comments and order (a ruamel.yaml round trip, as
``dvc exp run -S`` does), after the merged result has passed the same
validation every stage runs. Nothing is written when that fails.

    python -m goodfit.preset --list
    python -m goodfit.preset ecg200
    dvc exp run -S data.path=path/to/ECG200      # or edit params.yaml
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

from goodfit.errors import GoodfitError

PRESETS = Path("presets")


def _yaml():
    from ruamel.yaml import YAML

    y = YAML()  # round-trip mode: keeps comments, order and quoting
    y.preserve_quotes = True
    y.width = 4096
    return y


def available(presets_dir: str | Path = PRESETS) -> list[str]:
    """Names of the presets in ``presets_dir`` (file stems of ``*.yaml``)."""
    return sorted(p.stem for p in Path(presets_dir).glob("*.yaml"))


def _load(path: Path, what: str) -> Any:
    from ruamel.yaml import YAMLError

    try:
        return _yaml().load(path.read_text(encoding="utf-8"))
    except YAMLError as exc:
        raise GoodfitError(f"{path} is not valid YAML ({str(exc).splitlines()[0]}); fix the {what}.") from exc


def _merge(target, overrides, prefix: str, changed: list[str]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value, f"{prefix}{key}.", changed)
        else:
            if key not in target or target[key] != value:
                changed.append(f"{prefix}{key}")
            target[key] = value


def apply_preset(name: str, *, params_path: str | Path = "params.yaml",
                 presets_dir: str | Path = PRESETS) -> list[str]:
    """Merge preset ``name`` into ``params_path``; returns the dotted keys whose value changed.

    Raises:
        GoodfitError: unknown preset, malformed YAML, or merged params that do not validate.
    """
    presets_dir = Path(presets_dir)
    path = presets_dir / f"{name}.yaml"
    if not path.is_file():
        names = available(presets_dir)
        raise GoodfitError(
            f"There is no preset {name!r} ({path} does not exist); available: {', '.join(names) or 'none'}."
        )
    overrides = _load(path, "preset")
    if not isinstance(overrides, dict):
        raise GoodfitError(f"{path} must be a mapping of params keys to values, like params.yaml.")
    return merge_params(overrides, params_path=params_path, what=f"Preset {name!r}")


def merge_params(overrides: dict, *, params_path: str | Path = "params.yaml", what: str = "The change",
                 write: bool = True) -> list[str]:
    """Write ``overrides`` (nested keys) into ``params_path`` in place, keeping its comments.

    With ``write=False`` only check that the result would be valid.

    Returns:
        The dotted keys whose value changed.

    Raises:
        GoodfitError: the params file is missing or malformed, or the result does not validate (then
            nothing is written).
    """
    from goodfit.io import write_text

    params_path = Path(params_path)
    if not params_path.is_file():
        raise GoodfitError(f"{params_path} does not exist; run from the project root or pass --params.")
    params = _load(params_path, "params file")
    changed: list[str] = []
    _merge(params, overrides, "", changed)
    buf = io.StringIO()
    _yaml().dump(params, buf)
    text = buf.getvalue()
    try:  # validate the merged text exactly as the stages will read it
        import yaml

        from goodfit.params import _Loader, parse_params

        parse_params(yaml.load(text, Loader=_Loader))  # noqa: S506 - SafeLoader subclass
    except GoodfitError as exc:
        raise GoodfitError(f"{what} gives invalid params, nothing was written: {exc}") from exc
    if write:
        write_text(params_path, text)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goodfit.preset",
                                     description="Merge presets/NAME.yaml into params.yaml.")
    parser.add_argument("name", nargs="?", help="the preset (see --list)")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    parser.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    parser.add_argument("--presets", default=str(PRESETS), help="the presets folder (default: presets)")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        print("\n".join(available(args.presets)))
        return 0
    try:
        changed = apply_preset(args.name, params_path=args.params, presets_dir=args.presets)
    except GoodfitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"preset {args.name}: {len(changed)} key(s) changed in {args.params}: {', '.join(changed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
