"""Exact resume of the train stage: the fit loop's whole state, saved after every epoch.

A training stopped at epoch k (Ctrl-C, SIGTERM, SIGKILL, a preempted machine, a full
disk) and started again by ``dvc repro`` goes on at epoch k + 1, and its model,
history and metrics are bit-identical to those of a run that was never stopped: the
state holds the weights, the optimizer's moments, the learning-rate scheduler, the
early-stopping counters and best weights, the shuffling generator and the global
torch RNG (dropout) as they were at the end of epoch k, and the history so far.

The states live in ``checkpoints/train/`` (``state.pt``, or ``fold<j>.pt`` per member of
a cross-validation ensemble; with a search, ``candidate<i>.pt`` or ``candidate<i>-fold<j>.pt``
per candidate, so a stopped search keeps the candidates it finished and goes on inside the
one it was fitting), which DVC does not know and so never deletes; git ignores it. Each is
written atomically, outside the stage's all-or-nothing block (a Ctrl-C keeps it), and the
folder is removed once the stage's outputs are written.
Each state carries a fingerprint of everything that decides the training: the params,
the bytes of the input files and goodfit's code; the params include ``train.search``, so
another grid discards every candidate's state. A state whose fingerprint differs is
discarded, with a line saying so, and training starts at epoch 1.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from goodfit.errors import GoodfitError

FOLDER = Path("checkpoints/train")


def fingerprint(params: Mapping[str, Any], files: Sequence[Path], code: Sequence[Path]) -> str:
    """sha256 over the flat params, the input files' bytes and the code files' bytes (by name)."""
    h = hashlib.sha256(json.dumps(dict(params), sort_keys=True, default=str).encode())
    for group in (files, code):
        for path in sorted(Path(p) for p in group):
            h.update(str(path).encode() + b"\0")
            with open(path, "rb") as fh:
                h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()


def code_files(stage_script: Path) -> list[Path]:
    """goodfit's modules and the stage script: a change to either discards a state."""
    import goodfit

    package = Path(goodfit.__file__).resolve().parent
    return sorted(package.rglob("*.py")) + [Path(stage_script).resolve()]


class Checkpoints:
    """The train stage's resume states, one per model (``fold`` None) or ensemble member.

    Args:
        fingerprint: :func:`fingerprint` of this run.
        folder: where the states live.
        log: print-like, for the resume / discard lines.
    """

    def __init__(self, fingerprint: str, folder: Path = FOLDER, log: Callable[[str], object] = print,
                 enabled: bool = True):
        self.fingerprint, self.folder, self.log = fingerprint, Path(folder), log
        self.enabled = enabled  # False: nothing is saved or resumed (data-parallel training, goodfit.distributed)
        self._checked = False
        self._root: Checkpoints | None = None  # set on a candidate's view (see candidate())
        self._candidate: int | None = None

    def candidate(self, index: int) -> "Checkpoints":
        """The states of search candidate ``index`` (from 1): the same folder, fingerprint and
        stale check, the files ``candidate<index>.pt`` / ``candidate<index>-fold<j>.pt``."""
        view = Checkpoints(self.fingerprint, self.folder, self.log, self.enabled)
        view._root, view._candidate = self._root or self, index
        return view

    def path(self, fold: int | None = None) -> Path:
        if self._candidate is None:
            return self.folder / ("state.pt" if fold is None else f"fold{fold}.pt")
        stem = f"candidate{self._candidate}"
        return self.folder / (f"{stem}.pt" if fold is None else f"{stem}-fold{fold}.pt")

    def _discard_stale(self) -> None:
        """Once per run: remove every state another fingerprint wrote, and say so."""
        if self._root is not None:
            self._root._discard_stale()
            return
        if self._checked:
            return
        self._checked = True
        stale = [p for p in sorted(self.folder.glob("*.pt")) if _read(p).get("fingerprint") != self.fingerprint]
        for p in stale:
            p.unlink(missing_ok=True)
        if stale:
            self.log(f"train: discarded the resume checkpoint {', '.join(str(p) for p in stale)}: the params, the "
                     "input data or goodfit's code changed since it was written; training starts at epoch 1.")

    def load(self, fold: int | None = None) -> dict | None:
        """The state to resume from, or ``None`` (no state, or a stale one: discarded)."""
        if not self.enabled:
            return None
        self._discard_stale()
        path = self.path(fold)
        if not path.is_file():
            return None
        state = _read(path)
        if not state:
            return None
        which = ([] if self._candidate is None else [f"candidate {self._candidate}"]) + (
            [] if fold is None else [f"fold {fold}"])
        member = f" ({', '.join(which)})" if which else ""
        self.log(f"train: resuming{member} after epoch {state['epoch']} from {path}")
        return state

    def save(self, state: dict, fold: int | None = None) -> None:
        """Write one state atomically; it survives the stage failing or being interrupted."""
        if not self.enabled:
            return
        import torch

        from goodfit.io import atomic_write_bytes

        buf = io.BytesIO()
        torch.save({**state, "fingerprint": self.fingerprint}, buf)
        atomic_write_bytes(self.path(fold), buf.getvalue(), journaled=False)

    def saver(self, fold: int | None = None) -> Callable[[dict], None]:
        return lambda state: self.save(state, fold)

    def clear(self) -> None:
        """Remove the states (the stage's outputs are written: nothing left to resume)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        parent = self.folder.parent
        if parent.name == "checkpoints" and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def _read(path: Path) -> dict:
    """A state file's contents; ``{}`` for a file that is not one (it is then treated as stale)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return {}
    except Exception:  # noqa: BLE001 - a truncated or foreign file: never resumed from
        return {}
    if not isinstance(state, dict) or "epoch" not in state:
        return {}
    return state


def check_resumable(state: Mapping[str, Any]) -> None:
    """Refuse a state without the keys :func:`goodfit.training.fit` writes."""
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise GoodfitError(f"The resume state lacks {missing}; delete {FOLDER} and run again.")


STATE_KEYS = ("epoch", "model", "optimizer", "scheduler", "stopper", "best_state", "generator", "torch_rng",
              "history", "stopped_epoch", "stop_reason")
