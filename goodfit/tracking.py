"""MLflow logging: the only module that imports mlflow.

Store: ``$MLFLOW_TRACKING_URI`` when set (a team's server), else
``sqlite:///<project root>/mlflow.db`` where the root is ``$DVC_ROOT`` when DVC
runs the stage, so queued experiments running in temporary copies all log into
the one store the user opens with ``mlflow ui``.

Layout: one *parent* run per pipeline execution (git commit + DVC experiment +
params), holding every param and the test metrics, so a sweep compares params
against test metrics in the UI's compare view; one *child* run per stage with
its own details (per-epoch metrics with ``step=epoch``, figures), and with ``train.search``
one more per candidate the train stage fits (:meth:`StageRun.child`). A command outside
the pipeline (``python -m goodfit.data_curve``) opens a :class:`CommandRun`: its own
parent run, tagged ``goodfit.kind``, with one nested child run per model it trains.

Robustness: the store is created and the experiment looked up under a file lock
(no race between queue workers creating the schema), SQLite "database is locked"
errors are retried, the store is checked before any work (an unreachable server
fails within seconds, naming the URI), and a logging failure during training is
recorded and reported instead of losing the model. After a failure the run stops
waiting on the store for a while (:attr:`StageRun.retry_after_s`) and then tries
again once, so a server that went away does not slow every epoch down.

Models: the train stage logs ``models/model.pt`` as an MLflow model on the parent
run (:meth:`StageRun.log_model`: a pyfunc model, :class:`GoodfitModel`, that applies the
model's standardization, calibration temperature and decision threshold through
:class:`goodfit.inference.Predictor`), optionally registered with the alias
``candidate``; evaluate links its test metrics to it (:meth:`StageRun.model_id`).
:func:`load_predictor` loads one back by its ``models:/`` URI.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from goodfit.errors import GoodfitError

TAG_PIPELINE = "goodfit.pipeline_id"
TAG_STAGE = "goodfit.stage"
TAG_EXP = "dvc.exp_name"
TAG_BASELINE = "dvc.baseline_rev"
TAG_COMMIT = "mlflow.source.git.commit"
TAG_DATASET = "goodfit.dataset"
TAG_DATA_HASH = "goodfit.data_hash"
TAG_VERDICT = "goodfit.fit_diagnosis"
TAG_KIND = "goodfit.kind"  # what a command's parent run holds (e.g. ``data_curve``); pipeline runs have none
TAG_MODEL_SHA = "goodfit.model_sha256"  # a logged model's checkpoint bytes: evaluate finds the model it evaluated
# Without this experiment tag MLflow 3's UI guesses the kind of experiment and may open the GenAI overview
# (traces, token usage); custom_model_development opens the runs table.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
MODEL_NAME = "model"  # the logged model's name (runs:/<parent run>/model)
CANDIDATE = "candidate"  # the registry alias a newly registered version gets


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


@contextlib.contextmanager
def _signals_held(hold: bool = True) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then act on them.

    An interrupt that lands inside SQLAlchemy in the middle of a SQLite transaction
    can be swallowed there or leave the database locked (and the run RUNNING); held
    for the few milliseconds of one call, it is raised right after it instead.
    """
    if not hold or threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):  # Python's KeyboardInterrupt, or the stage's SIGTERM handler
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])


def _retry(fn: Callable[[], Any], attempts: int = 30, hold_signals: bool = False) -> Any:
    """Call ``fn``, retrying SQLite lock errors with jittered back-off (about 30 s at most).

    With ``hold_signals``, each attempt runs under :func:`_signals_held`.
    """
    for attempt in range(attempts):
        try:
            with _signals_held(hold_signals):
                return fn()
        except Exception as exc:  # noqa: BLE001 - mlflow and sqlalchemy raise several types
            if not _is_locked(exc) or attempt == attempts - 1:
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
    return None  # pragma: no cover


@contextlib.contextmanager
def _http_budget(uri: str, *, retries: int, timeout: int) -> Iterator[None]:
    """Bound how long MLflow's HTTP client waits for a server (read from the environment per request)."""
    if not uri.startswith(("http://", "https://")):
        yield
        return
    names = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries), "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout)}
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _reason(exc: BaseException) -> str:
    """The useful end of an error from MLflow's HTTP client (``[Errno 111] Connection refused``), else its first line."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] [^'\")]+|Read timed out|timed out", text)
    if found:
        return found.group(0).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _ranges(steps: set[int]) -> str:
    """``{1, 2, 3, 7}`` -> ``"1-3, 7"``."""
    out, ordered = [], sorted(steps)
    start = prev = ordered[0]
    for step in ordered[1:] + [None]:
        if step is not None and step == prev + 1:
            prev = step
            continue
        out.append(f"{start}-{prev}" if prev > start else f"{start}")
        if step is not None:
            start = prev = step
    return ", ".join(out)


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


def _experiment_id(client, experiment: str, uri: str, root: Path) -> str:
    """The id of ``experiment``, created (artifacts under ``<root>/mlartifacts`` for SQLite) when missing.

    The experiment is tagged ``mlflow.experimentKind: custom_model_development`` (also an
    existing one that has no kind yet), so the UI opens it on the runs table.

    Raises:
        GoodfitError: the experiment exists but is deleted.
    """
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise GoodfitError(
                f"The MLflow experiment {experiment!r} is deleted in {uri}; restore it "
                "(mlflow experiments restore) or choose another mlflow.experiment in params.yaml."
            )
        if TAG_EXPERIMENT_KIND not in exp.tags:  # created by an older goodfit: a kind the user chose stays
            client.set_experiment_tag(exp.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (root / "mlartifacts").as_uri()
    return client.create_experiment(experiment, artifact_location=location,
                                    tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND})


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

    # After a logging failure, calls are skipped (and listed at the end) for this
    # many seconds, then one call probes the store again.
    retry_after_s = 30.0
    # The first contact: one retry, 5 s each, so an unreachable or hung server
    # fails the stage in well under 30 s.
    probe = {"retries": 1, "timeout": 5}

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
        self.failures: list[str] = []  # what could not be logged, e.g. "artifact history.csv"
        self.missed_metrics: dict[str, set[int | None]] = {}  # metric name -> steps not logged (None: no step)
        self._paused_until: float | None = None  # after a failure, skip calls until then
        self._local = self.uri.startswith("sqlite:")  # a SQLite store: interrupts wait for the call to end
        self.client = None
        self.experiment_id: str | None = None
        self.run_id: str | None = None
        self.parent_id: str | None = None

    # -- set-up --------------------------------------------------------------
    def __enter__(self) -> "StageRun":
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        # MLflow logs a full traceback for a store error before raising it; goodfit
        # reports the error itself in one line (see _guard), so keep the wall away.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        try:
            with _store_lock(self.uri), _http_budget(self.uri, **self.probe):
                self.client = MlflowClient(tracking_uri=self.uri)
                exp_id = self.experiment_id = _retry(self._experiment_id, hold_signals=self._local)
        except GoodfitError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise GoodfitError(
                f"Cannot use the MLflow tracking store {self.uri}: {_reason(exc)}. "
                "Start the server or fix MLFLOW_TRACKING_URI (unset it to log to ./mlflow.db). "
                "Nothing was run."
            ) from exc
        try:
            self.parent_id = _retry(lambda: self._parent_run(exp_id), hold_signals=self._local)
            child = _retry(lambda: self.client.create_run(
                exp_id, run_name=self.stage,
                tags={**self.tags, TAG_STAGE: self.stage, "mlflow.parentRunId": self.parent_id}),
                hold_signals=self._local)
            self.run_id = child.info.run_id
            self._params(self.parent_id, self.all_params)
            self._params(self.run_id, self.stage_params)
        except BaseException as exc:  # Ctrl-C or a store error half-way: leave no run RUNNING
            self.__exit__(type(exc), exc, None)
            if isinstance(exc, Exception):
                raise GoodfitError(
                    f"Cannot start a run in the MLflow tracking store {self.uri}: "
                    f"{_reason(exc)}. Nothing was run."
                ) from exc
            raise
        return self

    def _experiment_id(self) -> str:
        return _experiment_id(self.client, self.experiment, self.uri, self.root)

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
            _retry(lambda: self.client.log_batch(run_id, params=items[start:start + 100]), hold_signals=self._local)

    # -- logging -------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, float], *, step: int | None = None, parent: bool = False,
                    model_id: str | None = None) -> None:
        """Log metrics to the stage run (and the parent run when ``parent``).

        With ``model_id`` (:meth:`model_id`), the parent run's copies are also the
        logged model's metrics (its page in the UI shows them).

        A failure (server gone, disk full) is recorded in :attr:`missed_metrics`
        and reported when the stage ends; training carries on.
        """
        self._log_metrics([self.run_id] + ([self.parent_id] if parent else []), metrics, step=step,
                          model_id=model_id)

    def _log_metrics(self, run_ids: Sequence[str], metrics: Mapping[str, float], *, step: int | None,
                     model_id: str | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = [(k, float(v)) for k, v in sorted(metrics.items())
                  if isinstance(v, (int, float)) and not isinstance(v, bool)]
        what = f"metrics at step {step}" if step is not None else f"metrics {', '.join(k for k, _ in values)}"
        for run_id in run_ids:
            linked = model_id if run_id == self.parent_id else None
            items = [Metric(k, v, now, step or 0, model_id=linked) for k, v in values]
            if not self._guard(what, lambda rid=run_id, items=items: self.client.log_batch(rid, metrics=items)):
                for m in items:
                    self.missed_metrics.setdefault(m.key, set()).add(step)

    def set_tags(self, tags: Mapping[str, str], *, parent: bool = False) -> None:
        """Set tags on the stage run (and the parent run when ``parent``)."""
        self._set_tags([self.run_id] + ([self.parent_id] if parent else []), tags)

    def _set_tags(self, run_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in sorted(tags.items())]
        for run_id in run_ids:
            if not self._guard(f"tags {sorted(tags)}", lambda rid=run_id: self.client.log_batch(rid, tags=items)):
                self.failures.append(f"tags {', '.join(sorted(tags))}")

    @contextlib.contextmanager
    def child(self, name: str, *, params: Mapping[str, Any], tags: Mapping[str, str] | None = None
              ) -> Iterator["ChildRun"]:
        """Another run under the pipeline's parent run, beside the stage runs, for the block (one candidate
        of the train stage's search); it ends FINISHED, FAILED or KILLED with the block.

        It carries this stage's tags, ``params`` and ``tags``. A store error is recorded like any logging
        failure (the stage goes on; the child then logs nothing).
        """
        from mlflow.entities import Param

        holder: list[str] = []
        run_tags = {**self.tags, TAG_STAGE: self.stage, "mlflow.parentRunId": self.parent_id, **(tags or {})}
        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]

        def create() -> None:
            if not holder:  # a retry after a lock error does not create a second run
                holder.append(self.client.create_run(self.experiment_id, run_name=name, tags=run_tags).info.run_id)
            for start in range(0, len(items), 100):
                self.client.log_batch(holder[0], params=items[start:start + 100])

        if not self._guard(f"the run {name}", create):
            self.failures.append(f"the run {name}")
        child = ChildRun(self, holder[0] if holder else None)
        status = "FAILED"
        try:
            yield child
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            if child.run_id is not None and not self._guard(
                    f"status {status} of {name}", lambda: self.client.set_terminated(child.run_id, status=status)):
                self.failures.append(f"the status {status} of the run {name} (it may show as RUNNING)")

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Upload a file to the stage run's artifacts."""
        if not self._guard(f"artifact {path}", lambda: self.client.log_artifact(self.run_id, str(path), artifact_path)):
            self.failures.append(f"artifact {path}")

    def log_model(self, checkpoint: str | os.PathLike, *, input_example, register_as: str | None = None
                  ) -> dict[str, str]:
        """Log ``checkpoint`` (``models/model.pt``) as an MLflow model of the parent run; optionally register it.

        The model is :class:`GoodfitModel` (a pyfunc model holding the checkpoint as
        its artifact) with a signature and ``input_example`` (a few samples), tagged
        with the checkpoint's SHA-256 so the evaluate stage links its metrics to it.
        With ``register_as`` it becomes a new version of that registered model, with
        the alias ``candidate``. Nothing of it enters a DVC output.

        Returns:
            ``{"model_id": ..., "uri": "models:/<id>"}`` plus ``name``, ``version`` and
            ``alias_uri`` when registered; ``{}`` when it could not be logged (the
            stage goes on; :meth:`missed` lists it at the end).
        """
        from goodfit.inference import Predictor

        predictor = Predictor.from_checkpoint(checkpoint)
        state: dict[str, str] = {}  # filled step by step, so a retry after a lock error resumes, never repeats
        if not self._guard(f"the MLflow model of {checkpoint}",
                           lambda: self._log_model(checkpoint, predictor, input_example, state)):
            self.failures.append(f"the MLflow model of {checkpoint}")
            return {}
        if register_as and not self._guard(f"the registered model {register_as}",
                                           lambda: self._register(register_as, state)):
            self.failures.append(f"version and alias {CANDIDATE!r} of the registered model {register_as!r}")
        return state

    def _log_model(self, checkpoint, predictor, input_example, state: dict) -> None:
        import mlflow
        from mlflow.models import Model

        mlflow.set_tracking_uri(self.uri)  # Model.log and its status updates use the global client
        if "model_id" not in state:
            model = self.client.create_logged_model(
                self.experiment_id, name=MODEL_NAME, source_run_id=self.parent_id, model_type="goodfit",
                params={k: str(v)[:6000] for k, v in self.all_params.items()},
                tags={TAG_MODEL_SHA: _sha256(checkpoint), TAG_PIPELINE: self.pipeline, TAG_COMMIT: self.commit})
            state["model_id"] = model.model_id
        signature, example = _signature(predictor, input_example)
        with _quiet_mlflow():
            Model.log(artifact_path=None, name=MODEL_NAME, flavor=mlflow.pyfunc, run_id=self.parent_id,
                      model_id=state["model_id"],
                      python_model=_goodfit_model_class()(), artifacts={"model": str(checkpoint)},
                      signature=signature, input_example=example, pip_requirements=_requirements(),
                      metadata={"goodfit.commit": self.commit})
        state["uri"] = f"models:/{state['model_id']}"

    def _register(self, name: str, state: dict) -> None:
        from mlflow.exceptions import MlflowException

        if "version" not in state:
            try:
                self.client.get_registered_model(name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                self.client.create_registered_model(name, tags={TAG_KIND: "goodfit"})
            version = self.client.create_model_version(
                name, source=state["uri"], run_id=self.parent_id, model_id=state["model_id"],
                tags={TAG_COMMIT: self.commit, TAG_EXP: self.tags[TAG_EXP]})
            state["version"] = str(version.version)
        # The model's page lists its versions from this tag; mlflow.register_model sets it, and so does a tracking
        # server on create_model_version, but not the SQLite store.
        from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

        model = self.client.get_logged_model(state["model_id"])
        versions = json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
        entry = {"name": name, "version": int(state["version"])}
        if entry not in versions:
            self.client.set_logged_model_tags(state["model_id"], {MLFLOW_MODEL_VERSIONS: json.dumps(versions + [entry])})
        self.client.set_registered_model_alias(name, CANDIDATE, state["version"])
        state.update(name=name, alias_uri=f"models:/{name}@{CANDIDATE}")

    def model_id(self, checkpoint: str | os.PathLike) -> str | None:
        """The id of the MLflow model the train stage logged for these bytes of ``checkpoint`` in this
        pipeline run (the latest when several), or ``None`` (none logged, or the store is unreachable)."""
        sha = _sha256(checkpoint)
        found: list = []
        # status is checked here: MLflow 3.17's filter on it matches no model at all
        self._guard("the logged model", lambda: found.extend(self.client.search_logged_models(
            experiment_ids=[self.experiment_id],
            filter_string=f"source_run_id = '{self.parent_id}' AND tags.`{TAG_MODEL_SHA}` = '{sha}'",
            order_by=[{"field_name": "creation_timestamp", "ascending": False}])))
        ready = [m for m in found if str(m.status) == "READY"]
        return ready[0].model_id if ready else None

    def _guard(self, what: str, fn: Callable[[], Any]) -> bool:
        """Run one logging call; on failure warn once, pause calls for a while, return False."""
        if self._paused_until is not None and time.monotonic() < self._paused_until:
            return False
        try:
            if self._paused_until is None:
                _retry(fn, hold_signals=self._local)
            else:  # probing a store that failed before: one quick attempt
                with _http_budget(self.uri, retries=0, timeout=5), _signals_held(self._local):
                    fn()
        except Exception as exc:  # noqa: BLE001
            if self._paused_until is None and not self.failures and not self.missed_metrics:
                print(f"warning: could not log {what} to MLflow ({self.uri}): {_reason(exc)}. "
                      f"The stage goes on; goodfit tries again every {self.retry_after_s:g} s and lists what "
                      "was not logged at the end.", file=sys.stderr, flush=True)
            self._paused_until = time.monotonic() + self.retry_after_s
            return False
        self._paused_until = None
        return True

    def missed(self) -> str:
        """What could not be logged, in words (empty when everything was logged)."""
        parts = []
        by_steps: dict[str, list[str]] = {}
        for name, steps in sorted(self.missed_metrics.items()):
            numbered = {s for s in steps if s is not None}
            by_steps.setdefault(f" at step(s) {_ranges(numbered)}" if numbered else "", []).append(name)
        for steps, names in by_steps.items():
            parts.append(f"metrics {', '.join(names)}{steps}")
        parts += list(dict.fromkeys(self.failures))
        return "; ".join(parts)

    # -- tear-down -----------------------------------------------------------
    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        for run_id in (self.run_id, self.parent_id):
            if run_id is not None and self.client is not None:
                self._paused_until = None if self._paused_until is None else 0.0  # always try to close the run
                if not self._guard(f"status {status}",
                                   lambda rid=run_id: self.client.set_terminated(rid, status=status)):
                    self.failures.append(f"the run status {status} (the run may show as RUNNING)")
        missed = self.missed()
        if missed:
            outcome = "the stage's outputs are complete" if exc_type is None else "the stage did not finish"
            print(f"warning: MLflow ({self.uri}) did not receive: {missed}. {outcome.capitalize()}; once the "
                  f"store is reachable, re-run the stage to log them (dvc repro -f {self.stage}).",
                  file=sys.stderr, flush=True)
        return False



class ChildRun:
    """What :meth:`StageRun.child` yields: logging onto that one run (nothing when it could not be created)."""

    def __init__(self, stage_run: StageRun, run_id: str | None):
        self.stage_run, self.run_id = stage_run, run_id

    def log_metrics(self, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        """Log metrics to this run (with ``step``: per epoch)."""
        if self.run_id is not None:
            self.stage_run._log_metrics([self.run_id], metrics, step=step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set tags on this run (also after its block ended)."""
        if self.run_id is not None:
            self.stage_run._set_tags([self.run_id], tags)


class CommandRun:
    """A parent run for a command outside the pipeline, with nested child runs (a context manager).

    The same store and experiment as the stages (:func:`tracking_uri`, the store lock,
    SQLite lock retries). The parent is tagged ``goodfit.kind = <kind>`` so the UI can
    filter it (``tags.`goodfit.kind` = 'data_curve'``); each :meth:`child` is one model
    the command trains. The store is checked on enter, before any work; a logging
    failure after that is warned about once, the command goes on, and what was not
    logged is listed when the run ends.

    Args:
        kind: what the command is (``data_curve``): the tag value and the default run name.
        experiment: the MLflow experiment name.
        params: logged on the parent run (flattened params plus the command's options).
        tags: extra tags for the parent run (dataset, numerics, ...).
        run_name: the parent run's name (default ``kind``).
        root: the project root (default :func:`project_root`).

    Raises:
        GoodfitError: the tracking store cannot be reached (on enter).
    """

    def __init__(self, *, kind: str, experiment: str, params: Mapping[str, Any],
                 tags: Mapping[str, str] | None = None, run_name: str | None = None, root: Path | None = None):
        self.kind = kind
        self.experiment = experiment
        self.root = root or project_root()
        self.uri = tracking_uri(self.root)
        self.params = dict(params)
        self.run_name = run_name or kind
        self.tags = {TAG_COMMIT: git_commit(self.root), TAG_EXP: os.environ.get("DVC_EXP_NAME") or "workspace",
                     TAG_KIND: kind, **(tags or {})}
        self.failures: list[str] = []
        self._local = self.uri.startswith("sqlite:")
        self.client = None
        self.experiment_id: str | None = None
        self.run_id: str | None = None

    def __enter__(self) -> "CommandRun":
        for name, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")):  # as StageRun: a server that went away
            os.environ.setdefault(name, value)
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        try:
            with _store_lock(self.uri), _http_budget(self.uri, **StageRun.probe):
                self.client = MlflowClient(tracking_uri=self.uri)
                self.experiment_id = _retry(lambda: _experiment_id(self.client, self.experiment, self.uri,
                                                                   self.root), hold_signals=self._local)
                self.run_id = self._create(self.run_name, self.tags, self.params)
        except BaseException as exc:  # a store error or Ctrl-C half-way: leave no run RUNNING
            self.__exit__(type(exc), exc, None)
            if isinstance(exc, GoodfitError) or not isinstance(exc, Exception):
                raise
            raise GoodfitError(
                f"Cannot use the MLflow tracking store {self.uri}: {_reason(exc)}. "
                "Start the server or fix MLFLOW_TRACKING_URI (unset it to log to ./mlflow.db). Nothing was run."
            ) from exc
        return self

    def _create(self, name: str, tags: Mapping[str, str], params: Mapping[str, Any]) -> str:
        from mlflow.entities import Param

        run_id = _retry(lambda: self.client.create_run(self.experiment_id, run_name=name, tags=dict(tags)),
                        hold_signals=self._local).info.run_id
        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):
            _retry(lambda: self.client.log_batch(run_id, params=items[start:start + 100]), hold_signals=self._local)
        return run_id

    @contextlib.contextmanager
    def child(self, name: str, *, params: Mapping[str, Any], tags: Mapping[str, str] | None = None
              ) -> Iterator[str | None]:
        """A nested run under the parent for the block; yields its run id (``None`` when it could not start).

        The child ends FINISHED, FAILED or KILLED with the block.
        """
        holder: list[str] = []
        tags = {TAG_KIND: self.kind, "mlflow.parentRunId": self.run_id, **(tags or {})}
        self._call(f"the child run {name}", lambda: holder.append(self._create(name, tags, params)))
        run_id = holder[0] if holder else None
        status = "FAILED"
        try:
            yield run_id
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            if run_id is not None:
                self._call(f"the status of {name}", lambda: self.client.set_terminated(run_id, status=status))

    def log_metrics(self, metrics: Mapping[str, float], *, run_id: str | None = None, step: int = 0) -> None:
        """Log numeric ``metrics`` at ``step`` on ``run_id`` (default: the parent run)."""
        self.log_steps([(step, metrics)], run_id=run_id)

    def log_steps(self, rows: Sequence[tuple[int, Mapping[str, float]]], *, run_id: str | None = None) -> None:
        """Log ``(step, metrics)`` pairs (e.g. a training history by epoch) in a few batched calls."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for step, metrics in rows for k, v in sorted(metrics.items())
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        target = run_id or self.run_id
        if target is None:
            return
        for start in range(0, len(items), 1000):  # MLflow's limit per log_batch call
            chunk = items[start:start + 1000]
            self._call(f"metrics {', '.join(sorted({m.key for m in chunk}))}",
                       lambda: self.client.log_batch(target, metrics=chunk))

    def set_tags(self, tags: Mapping[str, str], *, run_id: str | None = None) -> None:
        """Set tags on ``run_id`` (default: the parent run)."""
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in sorted(tags.items())]
        target = run_id or self.run_id
        if target is not None:
            self._call(f"tags {', '.join(sorted(tags))}", lambda: self.client.log_batch(target, tags=items))

    def log_artifact(self, path: str | os.PathLike, *, run_id: str | None = None) -> None:
        """Upload a file to ``run_id``'s artifacts (default: the parent run)."""
        target = run_id or self.run_id
        if target is not None:
            self._call(f"artifact {path}", lambda: self.client.log_artifact(target, str(path)))

    def _call(self, what: str, fn: Callable[[], Any]) -> bool:
        try:
            _retry(fn, hold_signals=self._local)
        except Exception as exc:  # noqa: BLE001
            if not self.failures:
                print(f"warning: could not log {what} to MLflow ({self.uri}): {_reason(exc)}. The {self.kind} "
                      "command goes on and lists what was not logged at the end.", file=sys.stderr, flush=True)
            self.failures.append(what)
            return False
        return True

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.run_id is not None and self.client is not None:
            status = ("FINISHED" if exc_type is None else
                      "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")
            self._call(f"the run status {status}", lambda: self.client.set_terminated(self.run_id, status=status))
        if self.failures:
            print(f"warning: MLflow ({self.uri}) did not receive: {'; '.join(dict.fromkeys(self.failures))}. "
                  f"The {self.kind} outputs on disk are complete." if exc_type is None else
                  f"warning: MLflow ({self.uri}) did not receive: {'; '.join(dict.fromkeys(self.failures))}.",
                  file=sys.stderr, flush=True)
        return False


# -- goodfit's MLflow model -------------------------------------------------------------------------------------
def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """Keep MLflow's advice for other model kinds (type hints, uv, environment variables) off the stage's output."""
    import warnings

    loggers = [logging.getLogger(name) for name in ("mlflow.models.model", "mlflow.pyfunc", "mlflow.models.utils",
                                                    "mlflow.utils.environment", "mlflow.models.signature")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = bar


def _requirements() -> list[str]:
    """The pinned packages goodfit's model needs (besides goodfit itself, which loads it)."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in ("mlflow", "torch", "numpy", "pandas", "cloudpickle")]


def _signature(predictor, input_example):
    """The model's signature and an input example: a tensor ``(-1, *input_shape)`` float32 of images or
    series, or for a table one float column per feature; out: ``prob_<class>`` columns and ``predicted``."""
    import numpy as np
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    example = np.ascontiguousarray(np.asarray(input_example, dtype=np.float32))
    if predictor.modality == "tabular" and predictor.feature_names:
        inputs = Schema([ColSpec("float", name) for name in predictor.feature_names])
        example = pd.DataFrame(example, columns=predictor.feature_names)
    else:
        inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *predictor.input_shape))])
    outputs = Schema([ColSpec("double", col) for col in predictor.columns()] + [ColSpec("string", "predicted")])
    return ModelSignature(inputs=inputs, outputs=outputs), example


@functools.cache
def _goodfit_model_class() -> type:
    """:class:`GoodfitModel`, built on first use so that importing this module never loads mlflow."""
    import mlflow.pyfunc
    import numpy as np

    def _predict(self, context, model_input, params=None):
        import pandas as pd

        p = self.predictor
        if isinstance(model_input, pd.DataFrame):
            missing = [c for c in p.feature_names if c not in model_input.columns]
            if missing or not p.feature_names:
                raise GoodfitError(f"The model input lacks the feature column(s) {missing}; the model takes "
                                   f"{p.expects}: {p.feature_names}.")
            model_input = model_input[p.feature_names].to_numpy(dtype=np.float32)
        x = p.check(np.asarray(model_input), [str(i) for i in range(len(model_input))], "the model input")
        return pd.DataFrame(p.table(x))

    # A real ndarray hint (this module's string annotations would not resolve): MLflow then leaves the input
    # to the signature and Predictor.check instead of warning on every load that predict has no type hints.
    _predict.__annotations__ = {"model_input": np.ndarray}

    class GoodfitModel(mlflow.pyfunc.PythonModel):
        """goodfit's MLflow (pyfunc) model: ``models/model.pt`` as its artifact, applied as the evaluate stage
        applies it (:class:`goodfit.inference.Predictor`).

        ``predict`` takes images ``(N, C, H, W)`` / series ``(N, C, L)`` as a float32 array,
        or a table as a DataFrame with the feature columns, and returns a DataFrame:
        ``prob_<class>`` per class and ``predicted`` (the class name at the saved threshold).
        Loading it needs goodfit installed (the class is stored by reference, and the
        checkpoint is read with ``torch.load(weights_only=True)``).
        """

        def load_context(self, context) -> None:
            from goodfit.inference import Predictor

            self.predictor = Predictor.from_checkpoint(context.artifacts["model"], source="the MLflow model")

        def __getstate__(self) -> dict:  # the pickle holds the class only; the weights stay in model.pt
            return {}

        predict = _predict

    GoodfitModel.__module__, GoodfitModel.__qualname__ = __name__, "GoodfitModel"
    return GoodfitModel


def __getattr__(name: str):
    if name == "GoodfitModel":  # pickled by reference: unpickling looks the class up here
        return _goodfit_model_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_predictor(uri: str):
    """A :class:`goodfit.inference.Predictor` from a goodfit MLflow model (``models:/<name>@champion``,
    ``models:/<name>/<version>``, ``models:/<model id>``, ``runs:/<run id>/model``) in :func:`tracking_uri`'s store.

    Raises:
        GoodfitError: the store is unreachable, the URI names no model, or the model is not goodfit's.
    """
    import mlflow
    import mlflow.pyfunc

    store = tracking_uri()
    mlflow.set_tracking_uri(store)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    try:
        with _http_budget(store, **StageRun.probe), _quiet_mlflow():
            loaded = mlflow.pyfunc.load_model(uri)
    except Exception as exc:  # noqa: BLE001 - mlflow raises MlflowException, OSError, ... for a bad URI or store
        raise GoodfitError(
            f"Cannot load the MLflow model {uri} from {store}: {_reason(exc).rstrip('.')}. Check the name, version or alias "
            "(models:/<name>@champion, models:/<name>/<version>, models:/<model id>) and MLFLOW_TRACKING_URI."
        ) from exc
    try:
        inner = loaded.unwrap_python_model()
    except Exception:  # noqa: BLE001 - MlflowException: a model of another flavor
        inner = None
    if not isinstance(inner, _goodfit_model_class()):
        raise GoodfitError(f"{uri} is not a goodfit model (it has no goodfit checkpoint); give the URI of a model "
                           "that goodfit's train stage logged.")
    inner.predictor.source = uri
    return inner.predictor


def runs_page_url(base: str, experiment: str) -> str:
    """The MLflow UI's runs table of ``experiment`` at ``base`` (``http://127.0.0.1:5000``).

    MLflow 3.17's UI opens experiments in its GenAI view (overview, traces) unless the
    sidebar's switch says "Model training" or the URL carries ``workflowType=machine_learning``;
    this URL does. Without the experiment in the store yet: the experiments list, in that view.
    """
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    with _http_budget(tracking_uri(), **StageRun.probe):
        exp = MlflowClient(tracking_uri()).get_experiment_by_name(experiment)
    base = base.rstrip("/")
    if exp is None:
        return f"{base}/#/experiments?workflowType=machine_learning"
    return f"{base}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
