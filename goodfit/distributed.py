"""Data-parallel training on PyTorch's own engine: ``torch.distributed``, DistributedDataParallel, torchrun.

``train.processes: N`` (default 1) makes the train stage run as N processes. The stage that
DVC starts (``python stages/train.py``) becomes torchrun's launcher: :func:`launch` runs
PyTorch's elastic agent (``torch.distributed.launcher.api``, the code behind the ``torchrun``
command) on this machine, which starts N copies of the stage script with ``RANK``,
``WORLD_SIZE`` and the rendezvous address in their environment. Each copy joins the process
group (:func:`process_group`: gloo on the CPU, NCCL with one GPU per process on CUDA).
On several machines, start the stage under ``torchrun`` on each machine yourself (README,
"More than one machine"); ``train.processes`` must then say the whole world size.

What each process does (:func:`goodfit.training.fit`): every rank draws the same seeded
permutation; each global batch of ``train.batch_size`` rows is cut into N consecutive pieces
and rank r trains on piece r; DDP averages the gradients, each rank's loss being weighted so
that the average is the gradient of the global batch's mean loss. Rank 0 alone measures the
epoch (validation, the training originals in eval mode, weight statistics) and broadcasts that
row; every rank then takes the same early-stopping and learning-rate decisions from it, so all
stop at the same epoch. Dropout masks: rank r seeds them with ``seed + r`` (rank 0 draws those
of a one-process run). Rank 0 alone writes outputs and logs to MLflow (:mod:`goodfit.cli`).

When a worker dies, the agent stops the others (SIGTERM, then SIGKILL after a grace
period) and :func:`launch` raises a :class:`GoodfitError` naming the rank, its pid and how
it ended.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import uuid
from typing import Any, Iterator, Sequence

from goodfit.errors import GoodfitError

# How often the launcher looks at its workers; a dead rank stops the run within about this
# long plus the agent's grace period for the survivors (torch's own 30 s).
MONITOR_INTERVAL_S = 0.5
# The exit code of a rank whose collective failed because another rank is gone (not the cause).
PEER_LOST = 3


def in_worker() -> bool:
    """True in a process that torchrun started (ours or the user's): ``RANK`` and ``WORLD_SIZE`` are set."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the process group, ``(0, 1)`` outside one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (and outside a process group): the one process that writes and logs."""
    if in_worker():
        return int(os.environ["RANK"]) == 0
    return True


def launch(processes: int, argv: Sequence[str], *, backend: str, what: str = "train") -> int:
    """Run ``python *argv`` as ``processes`` workers on this machine under torchrun's elastic agent.

    Returns:
        0 when every worker succeeded; a worker's own exit code (2: bad input, 130: interrupted)
        when the workers ended with it (rank 0 printed why).

    Raises:
        KeyboardInterrupt: this process got SIGINT or SIGTERM (the agent stopped the workers first).
        GoodfitError: a worker died (killed by a signal) or crashed: the message names its rank.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
                          monitor_interval=MONITOR_INTERVAL_S, start_method="spawn")
    print(f"{what}: train.processes {processes}: starting {processes} processes under torchrun "
          f"(torch.distributed, {backend})", flush=True)
    try:
        elastic_launch(config, sys.executable)(*argv)
    except SignalException as exc:  # Ctrl-C or SIGTERM to this process: the agent has stopped the ranks
        raise KeyboardInterrupt(signal.Signals(exc.sigval).name) from None
    except ChildFailedError as exc:
        rank, failure = _cause(exc)
        code = failure.exitcode
        if code > 0 and all(f.exitcode == code for f in exc.failures.values()) and code in (2, 130):
            return code  # every rank ended the same, expected way and said why
        if code < 0:
            how = f"was killed by {failure.signal_name()}"
            hint = (" SIGKILL is what the kernel's out-of-memory killer sends: lower train.batch_size or "
                    "train.memory_budget, or use fewer processes." if -code == signal.SIGKILL else "")
        else:
            how, hint = f"failed with exit code {code} (its error is printed above)", ""
        raise GoodfitError(
            f"{what}: rank {rank} of {processes} (pid {failure.pid}) {how}; torchrun stopped the other ranks. "
            f"The stage's outputs were left as they were.{hint} Run the stage again.") from None
    return 0


def _cause(exc) -> tuple[int, Any]:
    """The failure that ended the run: a rank that died by a signal or crashed on its own comes before
    a rank that only lost its peers (:data:`PEER_LOST`) or was stopped by the agent (SIGTERM)."""
    def rank_of(item):
        rank, failure = item
        code = failure.exitcode
        own = (code < 0 and -code != signal.SIGTERM) or code not in (PEER_LOST, 130, -signal.SIGTERM)
        return (not own, failure.timestamp, rank)

    return min(exc.failures.items(), key=rank_of)


def is_peer_lost(exc: BaseException) -> bool:
    """An error of a collective whose other side is gone (gloo / NCCL: the connection was reset or closed)."""
    import torch.distributed as dist

    text = str(exc)
    return isinstance(exc, dist.DistError) or (isinstance(exc, RuntimeError) and (
        "gloo" in text or "NCCL" in text) and ("Connection" in text or "peer" in text or "closed" in text))


def backend(device: str) -> str:
    """The process group's backend for ``train.device``: NCCL where the processes get GPUs, else gloo."""
    import torch

    return "nccl" if device != "cpu" and torch.cuda.is_available() else "gloo"


@contextlib.contextmanager
def process_group(device: str, processes: int) -> Iterator[None]:
    """Join torchrun's process group for the body of the stage (nothing outside a torchrun worker).

    Raises:
        GoodfitError: torchrun's world size is not ``train.processes`` (params.yaml must say how the run ran).
    """
    if not in_worker():
        yield
        return
    size = int(os.environ["WORLD_SIZE"])
    if size != processes:
        raise GoodfitError(
            f"params.yaml: train.processes is {processes}, but torchrun started {size} processes in all. Set "
            f"train.processes: {size} (the whole world size, over every machine), so params.yaml records how "
            "the model was trained.")
    import torch
    import torch.distributed as dist

    name = backend(device)
    if name == "nccl":  # one GPU per process
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(name)
    try:
        yield
    finally:
        dist.destroy_process_group()


def data_parallel(model, device):
    """``model`` wrapped in DistributedDataParallel (its gradients averaged over the ranks in backward)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(value):
    """The sum over the ranks of a float64 tensor (on the process group's device), in place; returns it."""
    import torch.distributed as dist

    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


class SilentRun:
    """The stage's MLflow run as a rank other than 0 sees it: nothing is logged (rank 0 logs the one run)."""

    def log_metrics(self, metrics, *, step=None, parent=False) -> None:  # noqa: ARG002
        return None

    def set_tags(self, tags, *, parent=False) -> None:  # noqa: ARG002
        return None

    def log_artifact(self, path, artifact_path=None) -> None:  # noqa: ARG002
        return None

    def log_model(self, checkpoint, *, input_example, register_as=None):  # noqa: ARG002
        return None

    @contextlib.contextmanager
    def child(self, name, *, params, tags=None):  # noqa: ARG002
        yield self
