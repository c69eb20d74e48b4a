"""goodfit's MLflow model: the train stage logs it on the pipeline's parent run, loadable by its models:/ URI with
the probabilities of models/model.pt; evaluate's test metrics are the model's; mlflow.register_as adds a version
with the alias candidate, which a user promotes to champion and loads by alias. Against the SQLite store here, and
against a PostgreSQL-backed `mlflow server` in test_tracking_server.py (the same checks, check_registry)."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import clone_prepared, fresh_store, run_stage_script, write_params

pytestmark = pytest.mark.slow

UNPINNED = {"repro": {"portable": False}}  # this process recomputes the probabilities with its own kernels
NAME = "goodfit-digits"


def run_pipeline(cwd: Path, env: dict, stages=("train", "evaluate")) -> dict[str, str]:
    """Run ``stages`` in ``cwd``; their stdout by stage."""
    out = {}
    for stage in stages:
        result = run_stage_script(stage, cwd, env=env)
        assert result.returncode == 0, result.stderr
        assert "warning: " not in result.stderr, result.stderr
        out[stage] = result.stdout
    return out


def parent_run(client, experiment_id: str, weight_decay: str):
    parents = [r for r in client.search_runs([experiment_id]) if "mlflow.parentRunId" not in r.data.tags
               and r.data.params.get("weight_decay") == weight_decay]
    assert len(parents) == 1, parents
    return parents[0]


def check_registry(cwd: Path, uri: str, monkeypatch, experiment: str = "goodfit") -> None:
    """Two pipeline runs with ``mlflow.register_as``: each logs one model on its parent run (with evaluate's test
    metrics), each becomes a version, ``candidate`` follows the newest; ``champion`` set by hand loads by alias;
    the model gives models/model.pt's probabilities; no MLflow id enters a DVC output."""
    import mlflow

    env = {"MLFLOW_TRACKING_URI": uri}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # MLflow keeps the URI an earlier test in this process set, over the variable
    try:
        _check_registry(cwd, uri, env, experiment)
    finally:
        mlflow.set_tracking_uri(None)


def _check_registry(cwd: Path, uri: str, env: dict, experiment: str) -> None:
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from goodfit.inference import Predictor
    from goodfit.tracking import CANDIDATE, load_predictor

    c = MlflowClient(uri)
    test = np.load(cwd / "data/split/test.npz")
    probabilities, ids = [], []
    for version, wd in ((1, 1e-4), (2, 1e-3)):
        write_params(cwd / "params.yaml", weight_decay=wd, mlflow={"experiment": experiment, "register_as": NAME},
                     **UNPINNED)
        out = run_pipeline(cwd, env)
        exp = c.get_experiment_by_name(experiment)
        parent = parent_run(c, exp.experiment_id, str(wd))
        models = c.search_logged_models(experiment_ids=[exp.experiment_id],
                                        filter_string=f"source_run_id = '{parent.info.run_id}'")
        assert len(models) == 1 and str(models[0].status) == "READY", models
        model = models[0]
        assert f"train: MLflow model models:/{model.model_id}, registered as {NAME} version {version} " \
               f"(models:/{NAME}@{CANDIDATE})" in out["train"]
        # evaluate's test metrics are the model's (its page in the UI), and the parent run's
        metrics = json.loads((cwd / "reports/metrics.json").read_text())
        linked = {m.key: m.value for m in model.metrics or []}
        assert linked["test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
        assert parent.data.metrics["test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
        assert model.params["weight_decay"] == str(wd)
        # the registered version is this model, and the alias candidate points at it
        mv = c.get_model_version_by_alias(NAME, CANDIDATE)
        assert (int(mv.version), mv.source, mv.run_id) == (version, f"models:/{model.model_id}", parent.info.run_id)
        assert json.loads(c.get_logged_model(model.model_id).tags["mlflow.modelVersions"]) == \
            [{"name": NAME, "version": version}]  # the model's page links to its version
        # loaded by its URI, it gives models/model.pt's probabilities to the last bit, and evaluate's accuracy
        loaded = mlflow.pyfunc.load_model(f"models:/{model.model_id}")
        schema = loaded.metadata.get_input_schema().inputs[0]  # the signature: images as the model takes them
        assert (schema.type, schema.shape) == (np.dtype(np.float32), (-1, 1, 8, 8))
        assert loaded.metadata.get_output_schema().input_names() == [f"prob_{k}" for k in range(10)] + ["predicted"]
        assert loaded.metadata.saved_input_example_info["type"] == "ndarray"  # five validation samples
        table = loaded.predict(test["x"])
        assert isinstance(table, pd.DataFrame)
        predictor = Predictor.from_checkpoint(cwd / "models/model.pt")
        proba = predictor.proba(test["x"])
        assert np.array_equal(table[predictor.columns()].to_numpy(), proba)
        assert np.mean(table["predicted"].astype(int).to_numpy() == test["y"]) == metrics["test"]["accuracy"]
        probabilities.append(proba)
        ids += [parent.info.run_id, model.model_id]
    assert not np.array_equal(*probabilities)  # two different models
    assert sorted(int(v.version) for v in c.search_model_versions(f"name = '{NAME}'")) == [1, 2]
    assert c.get_model_version(NAME, "1").aliases == [] and c.get_model_version(NAME, "2").aliases == [CANDIDATE]

    # README: promote version 1 to champion, load it by alias (goodfit's loader and MLflow's own)
    c.set_registered_model_alias(NAME, "champion", "1")
    champion = load_predictor(f"models:/{NAME}@champion")
    assert champion.source == f"models:/{NAME}@champion"
    assert np.array_equal(champion.proba(test["x"]), probabilities[0])
    by_alias = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(test["x"])
    assert np.array_equal(by_alias[champion.columns()].to_numpy(), probabilities[0])
    assert np.array_equal(load_predictor(f"models:/{NAME}@{CANDIDATE}").proba(test["x"]), probabilities[1])

    # no run or model id in anything DVC tracks
    for path in [*(cwd / "models").rglob("*"), *(cwd / "reports").rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert not any(i.encode() in data for i in ids), path


def test_model_logged_linked_registered_and_loaded_by_alias_sqlite(prepared, mlflow_template, tmp_path, monkeypatch):
    cwd = clone_prepared(prepared, tmp_path / "project")
    env = fresh_store(mlflow_template, cwd / "mlflow.db")
    check_registry(cwd, env["MLFLOW_TRACKING_URI"], monkeypatch)


def test_without_register_as_the_model_is_logged_but_not_registered(prepared, mlflow_template, tmp_path):
    from mlflow.tracking import MlflowClient

    cwd = clone_prepared(prepared, tmp_path / "project")
    env = fresh_store(mlflow_template, cwd / "mlflow.db")
    write_params(cwd / "params.yaml", **UNPINNED)
    out = run_pipeline(cwd, env, stages=("train",))
    c = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = c.get_experiment_by_name("goodfit")
    (model,) = c.search_logged_models(experiment_ids=[exp.experiment_id])
    assert out["train"].rstrip().endswith(f"train: MLflow model models:/{model.model_id}")
    assert c.search_registered_models() == []
    assert model.source_run_id == parent_run(c, exp.experiment_id, "0.0001").info.run_id
