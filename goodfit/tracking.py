"""MLflow logging: the only module that imports mlflow.

Store: ``$MLFLOW_TRACKING_URI`` when set (a team's server), else
``sqlite:///<project root>/mlflow.db`` where the root is ``$DVC_ROOT`` when DVC
runs the stage, so queued experiments running in temporary copies all log into
the one store the user opens with ``mlflow ui``.

Layout: one *parent* run per pipeline execution (git commit + DVC experiment +
params), holding every param and the test metrics, so a sweep compares params
against test metrics in the UI's compare view; one *child* run per stage with
its own details (per-epoch metrics with ``step=epoch``, figures).

Robustness: the store is created and the experiment looked up under a file lock
(no race between queue workers creating the schema), SQLite "database is locked"
errors are retried, the store is checked before any work (an unreachable server
fails fast, naming the URI), and a logging failure during training is recorded
and reported instead of losing the model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from goodfit.errors import GoodfitError

TAG_PIPELINE = "goodfit.pipeline_id"
TAG_STAGE = "goodfit.stage"
TAG_EXP = "dvc.exp_name"
TAG_BASELINE = "dvc.baseline_rev"
TAG_COMMIT = "mlflow.source.git.commit"
TAG_DATASET = "goodfit.dataset"
TAG_DATA_HASH = "goodfit.data_hash"
TAG_VERDICT = "goodfit.fit_diagnosis"


def project_root() -> Path:
    """``$DVC_ROOT`` when DVC runs the stage, else the current folder."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri(root: Path | None = None) -> str:
    """``$MLFLOW_TRACKING_URI`` or ``sqlite:///<root>/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return "sqlite:///" + str((root or project_root()) / "mlflow.db")


def git_commit(cwd: Path | None = None) -> str:
    """The checked-out commit, or ``unknown`` outside a git repository."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def file_hash(*paths: str | os.PathLike) -> str:
    """Short SHA-256 of the files' bytes (the data hash tag)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def pipeline_id(params_bytes: bytes, commit: str, exp_name: str) -> str:
    """Identity of one pipeline execution: same commit, experiment and params -> same parent run."""
    return hashlib.sha256(b"\0".join([commit.encode(), exp_name.encode(), params_bytes])).hexdigest()[:16]


def _is_locked(exc: BaseException) -> bool:
    return "database is locked" in str(exc) or "database table is locked" in str(exc)


def _retry(fn: Callable[[], Any], attempts: int = 30) -> Any:
    """Call ``fn``, retrying SQLite lock errors with jittered back-off (about 30 s at most)."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - mlflow and sqlalchemy raise several types
            if not _is_locked(exc) or attempt == attempts - 1:
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
    return None  # pragma: no cover


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Exclusive lock beside a SQLite store while its schema and experiment are created."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(str(db) + ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class StageRun:
    """A child run for one stage under its pipeline's parent run (a context manager).

    Args:
        stage: the stage name (``split``, ``augment``, ``train``, ``evaluate``).
        experiment: the MLflow experiment name.
        all_params: every param, flattened (logged on the parent run).
        stage_params: the params this stage reads (logged on the child run).
        params_bytes: the params file's bytes (part of the pipeline identity).
        tags: extra tags for both runs (dataset, data hash, ...).
        root: the project root (default :func:`project_root`).

    Raises:
        GoodfitError: the tracking store cannot be reached (on enter, before any work).
    """

    def __init__(self, *, stage: str, experiment: str, all_params: Mapping[str, Any],
                 stage_params: Mapping[str, Any], params_bytes: bytes, tags: Mapping[str, str] | None = None,
                 root: Path | None = None):
        self.stage = stage
        self.experiment = experiment
        self.root = root or project_root()
        self.uri = tracking_uri(self.root)
        self.all_params = dict(all_params)
        self.stage_params = dict(stage_params)
        self.commit = git_commit(self.root)
        self.exp_name = os.environ.get("DVC_EXP_NAME", "")
        self.baseline = os.environ.get("DVC_EXP_BASELINE_REV", self.commit)
        self.pipeline = pipeline_id(params_bytes, self.commit, self.exp_name)
        self.tags = {TAG_COMMIT: self.commit, TAG_EXP: self.exp_name or "workspace", TAG_BASELINE: self.baseline,
                     TAG_PIPELINE: self.pipeline, **(tags or {})}
        self.failures: list[str] = []
        self.client = None
        self.run_id: str | None = None
        self.parent_id: str | None = None

    # -- set-up --------------------------------------------------------------
    def __enter__(self) -> "StageRun":
        # Fail fast on an unreachable server instead of retrying for minutes.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        try:
            with _store_lock(self.uri):
                self.client = MlflowClient(tracking_uri=self.uri)
                exp_id = _retry(self._experiment_id)
        except GoodfitError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise GoodfitError(
                f"Cannot use the MLflow tracking store {self.uri}: {str(exc).splitlines()[0][:300]}. "
                "Start the server or fix MLFLOW_TRACKING_URI (unset it to log to ./mlflow.db). "
                "Nothing was run."
            ) from exc
        self.parent_id = _retry(lambda: self._parent_run(exp_id))
        child = _retry(lambda: self.client.create_run(
            exp_id, run_name=self.stage,
            tags={**self.tags, TAG_STAGE: self.stage, "mlflow.parentRunId": self.parent_id}))
        self.run_id = child.info.run_id
        self._params(self.parent_id, self.all_params)
        self._params(self.run_id, self.stage_params)
        return self

    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise GoodfitError(
                    f"The MLflow experiment {self.experiment!r} is deleted in {self.uri}; restore it "
                    "(mlflow experiments restore) or choose another mlflow.experiment in params.yaml."
                )
            return exp.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            location = (self.root / "mlartifacts").as_uri()
        return self.client.create_experiment(self.experiment, artifact_location=location)

    def _parent_run(self, exp_id: str) -> str:
        found = self.client.search_runs(
            [exp_id], filter_string=f"tags.`{TAG_PIPELINE}` = '{self.pipeline}'",
            order_by=["attributes.start_time ASC"], max_results=1)
        if found:
            return found[0].info.run_id
        name = f"{self.exp_name or 'workspace'}@{self.commit[:7]}"
        return self.client.create_run(exp_id, run_name=name, tags=self.tags).info.run_id

    def _params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):
            _retry(lambda: self.client.log_batch(run_id, params=items[start:start + 100]))

    # -- logging -------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, float], *, step: int | None = None, parent: bool = False) -> None:
        """Log metrics to the stage run (and the parent run when ``parent``).

        A failure (server gone, disk full) is recorded in :attr:`failures` and
        reported by the stage; training carries on.
        """
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in sorted(metrics.items())
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        targets = [self.run_id] + ([self.parent_id] if parent else [])
        for run_id in targets:
            self._guard(f"metrics {sorted(metrics)} at step {step or 0}",
                        lambda rid=run_id: self.client.log_batch(rid, metrics=items))

    def set_tags(self, tags: Mapping[str, str], *, parent: bool = False) -> None:
        """Set tags on the stage run (and the parent run when ``parent``)."""
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in sorted(tags.items())]
        for run_id in [self.run_id] + ([self.parent_id] if parent else []):
            self._guard(f"tags {sorted(tags)}", lambda rid=run_id: self.client.log_batch(rid, tags=items))

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Upload a file to the stage run's artifacts."""
        self._guard(f"artifact {path}", lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def _guard(self, what: str, fn: Callable[[], Any]) -> None:
        try:
            _retry(fn)
        except Exception as exc:  # noqa: BLE001
            if not self.failures:
                print(f"warning: could not log {what} to MLflow ({self.uri}): {str(exc).splitlines()[0][:200]}",
                      file=sys.stderr)
            self.failures.append(what)

    # -- tear-down -----------------------------------------------------------
    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        for run_id in (self.run_id, self.parent_id):
            if run_id is not None:
                with contextlib.suppress(Exception):
                    _retry(lambda rid=run_id: self.client.set_terminated(rid, status=status), attempts=10)
        if self.failures:
            print(f"warning: {len(self.failures)} MLflow logging call(s) failed; the stage's outputs are "
                  f"complete. First failure: {self.failures[0]}", file=sys.stderr)
        return False

