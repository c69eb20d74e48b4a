"""What every stage script shares: params loading, the MLflow run, error handling.

A stage script calls :func:`run_stage` with its name and a body function; bad
input (:class:`GoodfitError`) becomes a one-paragraph message and exit code 2,
SIGTERM is treated like Ctrl-C (exit 130, MLflow run marked KILLED). The body runs
inside :func:`goodfit.io.all_or_nothing`: when it fails or is interrupted, the
files it already wrote are put back as they were.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Callable

from goodfit.errors import GoodfitError
from goodfit.io import all_or_nothing, os_error_reason
from goodfit.params import Params, as_flat_dict, load_params

# The params each stage reads; dvc.yaml lists exactly these (a test checks it).
# Only train reads mlflow.register_as: registering a model re-runs train alone.
STAGE_PARAMS = {
    "split": ("seed", "data", "mlflow.experiment", "repro"),
    "augment": ("seed", "augment", "train.folds", "report", "mlflow.experiment", "repro"),
    "train": ("seed", "weight_decay", "l1_lambda", "dropout", "train", "early_stopping", "report", "mlflow", "repro"),
    "evaluate": ("seed", "evaluate", "diagnosis", "report", "mlflow.experiment", "repro"),
}


def stage_params(params: Params, stage: str) -> dict:
    """The flattened params that ``stage`` reads."""
    flat = as_flat_dict(params)
    keys = STAGE_PARAMS[stage]
    return {k: v for k, v in flat.items() if k in keys or k.split(".")[0] in keys}


def _sigterm(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_stage(stage: str, body: Callable[[Params, object], None], *, data_files: Callable[[Params], list] = None,
              argv: list[str] | None = None, processes: Callable[[Params], int] | None = None) -> int:
    """Load params, open the stage's MLflow run, run ``body(params, run)``.

    Args:
        stage: the stage name.
        body: the stage's work.
        data_files: given the params, the input files whose hash tags the run.
        argv: command-line arguments (default ``sys.argv[1:]``).
        processes: given the params, how many processes run the body (``train.processes``): more
            than 1 starts them under torchrun (:mod:`goodfit.distributed`); rank 0 alone opens the
            MLflow run and writes outputs, the other ranks get a :class:`~goodfit.distributed.SilentRun`.

    Returns:
        The process exit code: 0, 2 (bad input) or 130 (interrupted).
    """
    parser = argparse.ArgumentParser(prog=f"stages/{stage}.py")
    parser.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    from goodfit import distributed

    where = "" if distributed.is_main() else f"rank {os.environ['RANK']}: "
    try:
        params = load_params(args.params)
        n = processes(params) if processes else 1
        if n > 1 and not distributed.in_worker():  # this process launches the workers and waits for them
            return distributed.launch(n, [sys.argv[0], "--params", args.params],
                                      backend=distributed.backend(params.train.device), what=stage)
        if distributed.in_worker():
            try:
                with distributed.process_group(params.train.device, n):
                    if not distributed.is_main():
                        body(params, distributed.SilentRun())
                        return 0
                    return _main_body(stage, body, params, args, data_files)
            except Exception as exc:  # noqa: BLE001 - only a lost peer is answered here
                if not distributed.is_peer_lost(exc):
                    raise
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                print(f"{where or 'rank 0: '}{stage}: another rank is gone ({first[:200]}); its outputs were left "
                      "as they were. The launcher names the rank that failed.", file=sys.stderr)
                return distributed.PEER_LOST
        return _main_body(stage, body, params, args, data_files)
    except GoodfitError as exc:
        print(f"{where}error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a write outside goodfit.io (a library's cache, the MLflow store) on a full disk
        reason = os_error_reason(exc)
        if reason is None:
            raise
        print(f"{where}error: {stage}: cannot write {exc.filename or 'a file'}: {reason}. Its outputs were left as "
              "they were.", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        how = f" by {exc.args[0]}" if exc.args else ""
        print(f"{where}{stage}: interrupted{how}; its outputs were left as they were (nothing half-written).",
              file=sys.stderr)
        return 130


def _main_body(stage: str, body: Callable, params: Params, args, data_files) -> int:
    """The stage's body inside its MLflow run and :func:`all_or_nothing` (in the one process that writes)."""
    from goodfit.tracking import StageRun, TAG_DATA_HASH, TAG_DATASET, file_hash

    from goodfit.numerics import describe

    tags = {TAG_DATASET: params.data.name or params.data.source, **describe(params.repro.portable)}
    files = [f for f in (data_files(params) if data_files else []) if Path(f).is_file()]
    if files:
        tags[TAG_DATA_HASH] = file_hash(*files)
    with StageRun(stage=stage, experiment=params.mlflow.experiment, all_params=as_flat_dict(params),
                  stage_params=stage_params(params, stage), params_bytes=Path(args.params).read_bytes(),
                  tags=tags) as run, all_or_nothing():
        body(params, run)
    return 0
