"""A user's dataset under DVC control: ``make data SRC=...`` (``python -m goodfit.rawdata SRC``).

The ``split`` stage depends on the folder ``data/raw/`` (dvc.yaml), so a dataset
kept there is part of the run: replacing it re-runs ``split`` and everything after
it, ``dvc.lock`` records which bytes the model was trained on, and ``dvc push`` /
``dvc pull`` move it to a colleague like every other output.

    python -m goodfit.rawdata /data/breastmnist.npz --source medmnist --name breastmnist
    # copies it to data/raw/breastmnist.npz, runs `dvc add data/raw/breastmnist.npz`,
    # sets data.path (and data.source, data.name) in params.yaml; then:
    git add data/raw/breastmnist.npz.dvc data/raw/.gitignore params.yaml && git commit -m "BreastMNIST"

Running it again with a new version of the file replaces the copy and its ``.dvc``
file. A ``data.path`` outside ``data/raw/`` still works; :func:`tracking_warning`
says once per run that DVC does not track it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from goodfit.errors import GoodfitError

RAW = Path("data/raw")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _copy_atomically(src: Path, dest: Path) -> None:
    """Copy file or folder ``src`` to ``dest`` so that ``dest`` is either the old or the whole new copy."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if src.is_dir():
            shutil.copytree(src, tmp)
        else:
            shutil.copyfile(src, tmp)
        if dest.is_dir() and not dest.is_symlink():
            old = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.old")
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def add(src: str | Path, *, root: str | Path = ".", name: str | None = None, source: str | None = None,
        dataset: str | None = None, target: str | None = None, params_path: str | Path = "params.yaml") -> Path:
    """Copy a dataset into ``data/raw/``, ``dvc add`` it, and point ``data.path`` at it.

    Args:
        src: the dataset: a file (``.npz``, ``.csv``, ...) or a folder (image folders, UCR folders).
        root: the project root (holds dvc.yaml).
        name: the file or folder name under ``data/raw/`` (default: ``src``'s own name).
        source: also set ``data.source`` (medmnist, imagefolder, csv, ucr).
        dataset: also set ``data.name`` (e.g. breastmnist, ECG200).
        target: also set ``data.target`` (the label column of a CSV).
        params_path: the params file to update (relative to ``root``).

    Returns:
        The dataset's path under the root (``data/raw/<name>``).

    Raises:
        GoodfitError: ``src`` missing or empty, not a DVC project, the target name is not plain, the
            params would not validate (checked before anything is copied), or ``dvc add`` failed (then
            params.yaml is left as it was).
    """
    root, src = Path(root), Path(src).expanduser()
    if not (root / "dvc.yaml").is_file() or not (root / ".dvc").is_dir():
        raise GoodfitError(f"{root.resolve()} is not a goodfit DVC project (no dvc.yaml and .dvc/); "
                           "run this from the project root.")
    if not src.exists():
        raise GoodfitError(f"The dataset {str(src)!r} does not exist (resolved to {src.resolve()}); "
                           "give the path of a data file or folder, e.g. make data SRC=/data/breastmnist.npz.")
    if src.is_dir() and not any(src.iterdir()):
        raise GoodfitError(f"The dataset folder {str(src)!r} is empty; nothing to put under DVC control.")
    name = name or src.resolve().name
    if Path(name).name != name or name.startswith(".") or name.endswith(".dvc"):
        raise GoodfitError(f"The dataset name {name!r} must be a plain file or folder name (no '/', no leading "
                           "'.', not ending in .dvc), e.g. breastmnist.npz.")
    dest = root / RAW / name
    rel = dest.relative_to(root).as_posix()
    data = {"path": rel, **{k: v for k, v in (("source", source), ("name", dataset), ("target", target)) if v}}
    from goodfit.preset import merge_params

    what = f"The dataset {rel}"
    merge_params({"data": data}, params_path=root / params_path, what=what, write=False)  # fail before copying
    if src.resolve() != dest.resolve():
        if _inside(src, root / RAW):
            raise GoodfitError(f"{src} is already inside {RAW}/ under another name; use NAME={src.name} or move it.")
        dest.parent.mkdir(parents=True, exist_ok=True)
        _copy_atomically(src, dest)
    result = subprocess.run([sys.executable, "-m", "dvc", "add", "--quiet", rel], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise GoodfitError(f"`dvc add {rel}` failed (exit {result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()} params.yaml was not changed.")
    merge_params({"data": data}, params_path=root / params_path, what=what)
    return Path(rel)


def dvc_hash(path: str | Path, root: str | Path = ".") -> str | None:
    """The DVC hash (md5) of a ``dvc add``-ed dataset, read from its ``.dvc`` file; ``None`` if untracked."""
    dvc_file = Path(root) / f"{path}.dvc"
    if not dvc_file.is_file():
        return None
    import yaml

    try:
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or []
    except yaml.YAMLError:
        return None
    return str(outs[0].get("md5") or outs[0].get("hash")) if outs else None


def tracking_warning(path: str | Path | None, root: str | Path = ".") -> str | None:
    """A one-line warning when ``data.path`` is a dataset DVC does not track; ``None`` when it is tracked."""
    if path is None:
        return None  # built-in data sets and the MedMNIST download: fixed by name and checksum
    root, p = Path(root), Path(path).expanduser()
    if not p.is_absolute():
        p = root / p
    if not _inside(p, root / RAW):
        return (f"warning: data.path {str(path)!r} is outside {RAW}/, so DVC does not track it: replacing it "
                "re-runs nothing, dvc.lock does not record its bytes and `dvc pull` cannot bring it to a colleague. "
                f"Put it under DVC control with: make data SRC={path}")
    rel = Path(os.path.relpath(p.resolve(), root.resolve())).as_posix()
    if dvc_hash(rel, root) is None:
        return (f"warning: {rel} is not under DVC control (no {rel}.dvc): the split stage re-runs when it "
                f"changes, but `dvc push` / `dvc pull` do not move it. Run: dvc add {rel}")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goodfit.rawdata",
                                     description="Put a dataset under DVC control in data/raw/ and point "
                                                 "data.path at it.")
    parser.add_argument("src", help="the data file or folder")
    parser.add_argument("--name", help="its name under data/raw/ (default: the source's name)")
    parser.add_argument("--source", help="also set data.source (medmnist, imagefolder, csv, ucr)")
    parser.add_argument("--dataset", help="also set data.name (e.g. breastmnist, ECG200)")
    parser.add_argument("--target", help="also set data.target (the label column of a CSV)")
    parser.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    args = parser.parse_args(argv)
    try:
        rel = add(args.src, name=args.name, source=args.source, dataset=args.dataset, target=args.target,
                  params_path=args.params)
    except GoodfitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"data: {args.src} -> {rel} (DVC hash {dvc_hash(rel)}); data.path in {args.params} is now {rel}.\n"
          f"Commit it: git add {rel}.dvc {RAW}/.gitignore {args.params} && git commit -m 'data: {rel.name}'\n"
          "Then `dvc repro` (or `make run`); `dvc push` sends it to the DVC remote.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
