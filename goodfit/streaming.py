"""Training on more data than memory: the training rows stay on disk and are read per gathered chunk.

The fit loop shuffles with one full seeded permutation per epoch whether the rows are in
memory or on disk, and gathers the same chunks of that permutation either way, so a
model trained from disk is bit for bit the model trained from memory (tests): the
memory budget decides where rows live, never what is learned. The price of the full
permutation is one read per row (rows of a shuffled chunk are scattered over the file,
read in file order); the next chunk is read by a background thread while the current
one trains, and on CUDA the rows go through pinned memory.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch

from goodfit.io import NpzArray

GIB = 2**30
AUTO_SHARE = 0.5  # train.memory_budget: auto = this share of the memory available when the stage starts


def available_memory() -> int:
    """Bytes of memory available now (Linux's MemAvailable; elsewhere the physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget(setting: float | str, device: torch.device | None = None) -> int:
    """``train.memory_budget`` in bytes: a number of GiB, or ``auto`` (half the available memory;
    on CUDA also at most half the GPU memory free now, since rows in memory live on the GPU)."""
    budget = int(AUTO_SHARE * available_memory()) if setting == "auto" else int(float(setting) * GIB)
    if setting == "auto" and device is not None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = min(budget, int(AUTO_SHARE * free))
    return budget


class DiskRows:
    """The rows of an :class:`~goodfit.io.NpzArray` served to the fit loop as tensors on ``device``.

    Supports what the loop asks of an in-memory tensor: ``len``, ``device``, contiguous
    slices (``rows[a:b]``, for the eval passes) and :meth:`chunks` of a permutation.
    """

    def __init__(self, array: NpzArray, device: torch.device, memory_format=torch.contiguous_format):
        self.array, self.device, self.memory_format = array, device, memory_format
        self.shape = array.shape

    def __len__(self) -> int:
        return len(self.array)

    def numel_per_row(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64))

    def _to_device(self, rows: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(rows)
        if self.device.type == "cuda":
            t = t.pin_memory()
        return t.to(self.device, memory_format=self.memory_format, non_blocking=self.device.type == "cuda")

    def __getitem__(self, key: slice) -> torch.Tensor:
        if not isinstance(key, slice):
            raise TypeError(f"rows on disk are read by slices or chunks of a permutation, got {key!r}")
        return self._to_device(self.array[key])

    def chunks(self, perm: torch.Tensor, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(perm[a:b], rows perm[a:b])`` for consecutive chunks of ``size`` indices; the next chunk
        is read while the caller trains on this one."""
        order = perm.cpu().numpy()
        starts = list(range(0, len(order), size))
        if not starts:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="goodfit-rows") as pool:
            pending = pool.submit(self.array.take, order[:size])
            for k, start in enumerate(starts):
                rows = pending.result()
                if k + 1 < len(starts):
                    pending = pool.submit(self.array.take, order[starts[k + 1]:starts[k + 1] + size])
                yield perm[start:start + size], self._to_device(rows)


def head(x, n: int):
    """The first ``n`` rows: a slice of an array, or of an on-disk array still on disk."""
    return x.head(n) if isinstance(x, NpzArray) else x[:n]


def load_training_set(path, meta: dict, train_params, *, say=print):
    """The augmented training set: in memory when it fits ``train.memory_budget``, else on disk.

    Returns ``(x, y)``: ``x`` an ndarray, or an :class:`~goodfit.io.NpzArray` checked chunk by
    chunk (:func:`goodfit.splitting.open_split`) whose rows the fit loop reads per chunk.

    Raises:
        GoodfitError: the file does not match ``meta``; or it must stay on disk and
            ``train.folds > 1`` (the cross-validation ensemble regroups rows in memory).
    """
    from goodfit.errors import GoodfitError
    from goodfit.io import open_npz_array
    from goodfit.splitting import load_split, open_split
    from goodfit.training import resolve_device

    # with train.processes N each process holds its own copy: each gets 1/N of the budget
    budget = memory_budget(train_params.memory_budget, resolve_device(train_params.device)) / getattr(train_params, "processes", 1)
    x = open_npz_array(path, "x")
    size = x.nbytes
    if size <= budget or not isinstance(x, NpzArray):
        return load_split(path, meta)
    gib = f"{size / GIB:.2f} GiB, more than train.memory_budget ({budget / GIB:.2f} GiB)"
    if train_params.folds > 1:
        raise GoodfitError(f"{path} holds {gib}, and the cross-validation ensemble (train.folds: "
                           f"{train_params.folds}) needs its rows in memory. Raise train.memory_budget (a number "
                           "of GiB), or set train.folds: 1 to train from disk.")
    x, y, _ = open_split(path, meta, chunk_size=max(1, 64 * 2**20 // max(1, x.nbytes // max(1, len(x)))))
    say(f"train: {path} holds {gib}: its rows stay on disk and are read a shuffled chunk at a time")
    return x, y
