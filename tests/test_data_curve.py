"""The data curve (python -m goodfit.data_curve): subsets, verdict rules, outputs, MLflow, end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import ROOT, clone_prepared, fresh_store, run_stage_script
from goodfit import data_curve as dc
from goodfit import plots
from goodfit.errors import GoodfitError
from goodfit.numerics import PORTABLE_ENV
from goodfit.tracking import TAG_KIND, CommandRun

P = 0.69  # the class-prior loss of two balanced classes, about ln 2


@pytest.fixture
def pinned(monkeypatch):
    """The portable kernels' environment, so main() may pin in a process where torch is loaded already."""
    for key, value in PORTABLE_ENV.items():
        monkeypatch.setenv(key, value)


# ------------------------------------------------------------------ subsets
def labels():
    return np.repeat(np.arange(3), [100, 40, 10])  # (150,), three classes of unequal size


def test_subsets_are_stratified_seeded_and_nested():
    y = labels()
    fractions = (0.1, 0.25, 0.5, 1.0)
    subsets = dc.nested_subsets(y, fractions, seed=3, class_names=["a", "b", "c"])
    for f, idx in zip(fractions, subsets):
        counts = np.bincount(y[idx], minlength=3)
        assert counts.tolist() == [int(np.floor(f * n + 0.5)) for n in (100, 40, 10)]  # every class its share
        assert np.all(np.diff(idx) > 0)  # sorted, no repeats: the stored row order
    for small, large in zip(subsets, subsets[1:]):
        assert set(small) <= set(large)  # nested
    assert subsets[-1].tolist() == list(range(150))
    again = dc.nested_subsets(y, fractions, seed=3, class_names=["a", "b", "c"])
    other = dc.nested_subsets(y, fractions, seed=4, class_names=["a", "b", "c"])
    assert all(np.array_equal(a, b) for a, b in zip(subsets, again))
    assert not np.array_equal(subsets[0], other[0])


def test_a_fraction_too_small_for_a_class_names_both():
    with pytest.raises(GoodfitError, match=r"--fractions 0.04: class 'c' has 10 training samples.*at least 0.05"):
        dc.nested_subsets(labels(), (0.04, 1.0), seed=0, class_names=["a", "b", "c"])


def test_augmented_rows_are_the_originals_and_their_copies():
    rows = dc.augmented_rows([1, 4], n=5, copies=2)
    assert rows.tolist() == [1, 4, 6, 9, 11, 14]
    assert (rows % 5).tolist() == [1, 4] * 3  # row r is a copy of original r % n


@pytest.mark.parametrize("values, message", [
    (["0.1", "abc"], r"'abc' is not a number"),
    (["0", "1"], r"0 is outside \(0, 1\]"),
    (["0.5", "1.5"], r"1.5 is outside \(0, 1\]"),
    (["0.5", "0.25"], r"must increase, got 0.5 0.25; give them as 0.25 0.5"),
    (["0.5", "0.5", "1"], r"0.5 is given more than once"),
    (["1"], r"at least two fractions"),
])
def test_bad_fractions(values, message):
    with pytest.raises(GoodfitError, match=message):
        dc.check_fractions(values)


def test_bad_seeds():
    with pytest.raises(GoodfitError, match="'x' is not an integer"):
        dc.check_seeds(["1", "x"])
    with pytest.raises(GoodfitError, match="1 is given more than once"):
        dc.check_seeds(["1", "1"])


# ------------------------------------------------------------------ verdict rules
def curve(train, val, n=(100, 250, 500, 1000)):
    return [{"n_train": k, "train_eval_loss_mean": t, "val_loss_mean": v} for k, t, v in zip(n, train, val)]


def verdict(train, val, **kw):
    return dc.judge(curve(train, val, **kw), prior_loss=P, underfit_ratio=0.7)


def test_high_variance_gap_large_closing_and_validation_still_falling():
    got = verdict([0.05, 0.08, 0.10, 0.12], [0.60, 0.45, 0.35, 0.28])
    assert got["verdict"] == dc.HIGH_VARIANCE and got["advice"] == "more data would help"
    assert got["numbers"]["gap"] == pytest.approx(0.16) and got["numbers"]["val_fall_per_doubling"] == \
        pytest.approx(0.07)
    assert "still falling" in got["reason"] and "0.160" in got["reason"]


@pytest.mark.parametrize("train, val, why", [
    ([0.05, 0.08, 0.10, 0.12], [0.60, 0.45, 0.30, 0.30], "flat"),           # validation stopped falling
    ([0.05, 0.05, 0.05, 0.05], [0.15, 0.30, 0.35, 0.30], "gap shrank by"),  # the gap grew instead of closing
    ([0.20, 0.24, 0.26, 0.27], [0.45, 0.36, 0.32, 0.30], "small"),          # the gap is small at full data
])
def test_high_variance_fails_without_each_of_its_conditions(train, val, why):
    got = verdict(train, val)
    assert got["verdict"] == dc.CONVERGED and why in got["reason"]


def test_high_bias_both_losses_high_and_flat():
    got = verdict([0.55, 0.58, 0.60, 0.60], [0.66, 0.64, 0.63, 0.63])
    assert got["verdict"] == dc.HIGH_BIAS and "not more data" in got["advice"]
    assert "0.483" in got["reason"]  # 0.7 x 0.69: the threshold it was compared with


@pytest.mark.parametrize("train, val", [
    ([0.20, 0.25, 0.28, 0.30], [0.40, 0.36, 0.35, 0.35]),  # flat but low: not bias
    ([0.50, 0.50, 0.50, 0.50], [0.68, 0.66, 0.62, 0.55]),  # high but validation still falling
    ([0.30, 0.32, 0.34, 0.60], [0.66, 0.64, 0.63, 0.63]),  # train-eval low at the second largest subset
])
def test_high_bias_fails_when_low_or_still_falling(train, val):
    assert verdict(train, val)["verdict"] != dc.HIGH_BIAS


def test_converged_small_gap_and_flat_validation():
    got = verdict([0.10, 0.12, 0.13, 0.14], [0.30, 0.20, 0.17, 0.165])
    assert got["verdict"] == dc.CONVERGED and "unlikely" in got["advice"]


@pytest.mark.parametrize("train, val, other", [
    ([0.05, 0.08, 0.10, 0.12], [0.60, 0.45, 0.35, 0.28], dc.HIGH_VARIANCE),
    ([0.55, 0.58, 0.60, 0.60], [0.66, 0.64, 0.63, 0.63], dc.HIGH_BIAS),
])
def test_converged_fails_when_another_verdict_holds(train, val, other):
    assert verdict(train, val)["verdict"] == other != dc.CONVERGED


def with_seeds(rows, sd, k):
    return [{**r, "val_loss_sd": s, "n_seeds": k} for r, s in zip(rows, sd)]


def test_inconclusive_when_the_seeds_disagree_more_than_a_large_gap():
    # the high-variance curve above, but the seeds' validation losses spread by sd 0.2 at the largest subset:
    # standard error 0.2 / sqrt(2) = 0.141 over 3 seeds, 20% of the class-prior loss 0.69
    rows = with_seeds(curve([0.05, 0.08, 0.10, 0.12], [0.60, 0.45, 0.35, 0.28]), [0.1, 0.05, 0.05, 0.2], 3)
    got = dc.judge(rows, prior_loss=P, underfit_ratio=0.7)
    assert got["verdict"] == dc.INCONCLUSIVE and "more seeds" in got["advice"]
    assert got["numbers"]["val_loss_se"] == pytest.approx(0.2 / np.sqrt(2))
    assert got["numbers"]["val_loss_se_previous"] == pytest.approx(0.05 / np.sqrt(2))
    assert "standard error of 0.035 at 500 and 0.141 at 1000" in got["reason"]
    ja = dc.judge(rows, prior_loss=P, underfit_ratio=0.7, language="ja")
    assert ja["name"] == "判定保留" and "標準誤差" in ja["reason"]


@pytest.mark.parametrize("sd, k, expected", [
    ([0.1, 0.05, 0.05, 0.02], 3, dc.HIGH_VARIANCE),   # quiet seeds: the rules are read
    ([0.1, 0.05, 0.05, 0.3], 1, dc.HIGH_VARIANCE),    # one seed: no noise estimate, the rules are read
    ([0.1, 0.05, 0.2, 0.02], 5, dc.INCONCLUSIVE),     # noise at the second largest subset counts too (se 0.1)
])
def test_the_noise_rule_needs_several_seeds_and_reads_both_largest_subsets(sd, k, expected):
    rows = with_seeds(curve([0.05, 0.08, 0.10, 0.12], [0.60, 0.45, 0.35, 0.28]), sd, k)
    assert dc.judge(rows, prior_loss=P, underfit_ratio=0.7)["verdict"] == expected


def test_thresholds_and_words_in_both_languages():
    got = dc.judge(curve([0.1, 0.1], [0.5, 0.3], n=(50, 100)), prior_loss=P, underfit_ratio=0.6, language="ja")
    assert got["thresholds"] == {"scale": "share of the class-prior loss (prior_loss)", "gap_large": dc.GAP_LARGE,
                                 "gap_closing": dc.GAP_CLOSING, "still_falling_per_doubling": dc.STILL_FALLING,
                                 "noise_limit": dc.NOISE_LIMIT, "underfit_ratio": 0.6}
    assert got["name"] == "高バリアンス" and "データを増やせば" in got["advice"] and "まだ低下中" in got["reason"]


def test_judge_needs_growing_subsets():
    with pytest.raises(GoodfitError, match="at least two subsets"):
        dc.judge(curve([0.1], [0.2], n=(10,)), prior_loss=P, underfit_ratio=0.7)
    with pytest.raises(GoodfitError, match=r"\[10, 10\] training samples; each must be larger"):
        dc.judge(curve([0.1, 0.1], [0.2, 0.2], n=(10, 10)), prior_loss=P, underfit_ratio=0.7)


def test_mean_curve_over_seeds():
    points = [{"fraction": f, "n_train": n, "seed": s, "train_eval_loss": t, "val_loss": v,
               "train_eval_accuracy": 1.0, "val_accuracy": a}
              for f, n, s, t, v, a in [(0.5, 5, 0, 0.1, 0.5, 0.8), (0.5, 5, 1, 0.3, 0.7, 0.6),
                                       (1.0, 10, 0, 0.2, 0.4, 0.9)]]
    got = dc.mean_curve(points)
    assert [r["n_seeds"] for r in got] == [2, 1]
    assert got[0]["val_loss_mean"] == pytest.approx(0.6) and got[0]["val_loss_sd"] == pytest.approx(0.1)


# ------------------------------------------------------------------ figure
@pytest.mark.parametrize("language", ["ja", "en"])
def test_figure_is_written_and_reproducible(tmp_path, language):
    rows = [{"n_train": n, "n_seeds": 3, "train_eval_loss_mean": t, "train_eval_loss_sd": 0.02,
             "val_loss_mean": v, "val_loss_sd": 0.04} for n, t, v in [(50, 0.1, 0.6), (100, 0.15, 0.4),
                                                                       (200, 0.2, 0.3)]]
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for path in (a, b):
        plots.data_curve(rows, path, verdict="high_variance", advice=dc.verdict_words("high_variance", language)[1],
                         reason="numbers", prior_loss=P, dataset="toy", language=language)
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and a.read_bytes() == b.read_bytes()


def test_japanese_font_has_the_data_curve_glyphs():
    plt = plots._pyplot()
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    ft = FT2Font(font_manager.findfont(plt.rcParams["font.family"][0], fallback_to_default=False))
    t = plots._DATA_CURVE_TEXT["ja"]
    words = [v for v in t.values() if isinstance(v, str)] + list(t["names"].values())
    words += [w for v in dc._WORDS["ja"].values() for w in v]
    missing = sorted({c for c in "".join(words) if c.strip() and ft.get_char_index(ord(c)) == 0})
    assert not missing


# ------------------------------------------------------------------ MLflow
@pytest.fixture
def store(mlflow_template, tmp_path, monkeypatch):
    """A fresh SQLite store (a copy of the session's empty one: creating the schema takes seconds)."""
    uri = fresh_store(mlflow_template, tmp_path / "store.db")["MLFLOW_TRACKING_URI"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_command_run_nests_children_under_one_parent(tmp_path, store):
    with CommandRun(kind="data_curve", experiment="t", params={"seed": 1}, tags={"goodfit.dataset": "d"},
                    root=tmp_path) as run:
        with run.child("fraction=0.5 seed=0", params={"fraction": 0.5, "n_train": 5, "seed": 0}) as child:
            run.log_steps([(1, {"val_loss": 0.5}), (2, {"val_loss": 0.4})], run_id=child)
            run.log_metrics({"best_val_loss": 0.4}, run_id=child)
        with pytest.raises(ValueError):
            with run.child("fraction=1 seed=0", params={"fraction": 1.0, "n_train": 10, "seed": 0}):
                raise ValueError("boom")
        run.log_metrics({"gap": 0.1})
        run.set_tags({"goodfit.data_curve.verdict": "converged"})
    c = MlflowClient(store)
    runs = c.search_runs([c.get_experiment_by_name("t").experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parent) == 1 and parent[0].info.run_name == "data_curve"
    parent = parent[0]
    assert parent.data.tags[TAG_KIND] == "data_curve" and parent.data.metrics["gap"] == 0.1
    assert parent.data.tags["goodfit.data_curve.verdict"] == "converged" and parent.info.status == "FINISHED"
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == {"fraction=0.5 seed=0", "fraction=1 seed=0"}
    done, failed = children["fraction=0.5 seed=0"], children["fraction=1 seed=0"]
    assert done.data.params == {"fraction": "0.5", "n_train": "5", "seed": "0"} and done.info.status == "FINISHED"
    assert [m.step for m in c.get_metric_history(done.info.run_id, "val_loss")] == [1, 2]
    assert failed.info.status == "FAILED" and failed.data.tags[TAG_KIND] == "data_curve"


def test_command_run_interrupted_is_killed(tmp_path, store):
    with pytest.raises(KeyboardInterrupt):
        with CommandRun(kind="data_curve", experiment="t", params={}, root=tmp_path) as run:
            with run.child("c", params={}):
                raise KeyboardInterrupt
    c = MlflowClient(store)
    runs = c.search_runs([c.get_experiment_by_name("t").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"KILLED"}


# ------------------------------------------------------------------ bad input through the command
def test_missing_pipeline_outputs_exit_2(project, monkeypatch, capsys, pinned):
    monkeypatch.chdir(project)
    assert dc.main([]) == 2
    err = capsys.readouterr().err
    assert "data/split/meta.json, data/split/val.npz, data/augmented/train.npz are missing: run dvc repro first" \
        in err


def test_bad_fraction_exit_2(capsys):
    assert dc.main(["--fractions", "0.5", "2"]) == 2
    assert "2 is outside (0, 1]" in capsys.readouterr().err


def test_class_too_small_for_a_fraction_exit_2(prepared, tmp_path, monkeypatch, capsys, pinned):
    monkeypatch.chdir(clone_prepared(prepared, tmp_path / "p"))
    assert dc.main(["--fractions", "0.001", "1"]) == 2
    assert "--fractions 0.001: class '0' has" in capsys.readouterr().err
    assert not (tmp_path / "p" / "reports").exists()


def test_outputs_made_with_other_params_are_stale(prepared, tmp_path, monkeypatch, capsys, pinned):
    cwd = clone_prepared(prepared, tmp_path / "p")
    monkeypatch.chdir(cwd)
    raw = yaml.safe_load((cwd / "params.yaml").read_text())
    lock = {"schema": "2.0", "stages": {
        "split": {"params": {"params.yaml": {"seed": raw["seed"], "data": raw["data"]}}},
        "augment": {"params": {"params.yaml": {"seed": raw["seed"], "augment": {**raw["augment"], "copies": 3},
                                               "report": {"language": "ja"}}}}}}
    (cwd / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert dc.main(["--fractions", "0.5", "1"]) == 2
    err = capsys.readouterr().err
    assert "made with other params" in err and "augment (dvc.lock:" in err and "Run dvc repro first" in err
    assert "report" not in err  # a param that cannot change the data is not called stale
    raw["seed"] += 1  # without a lock: meta.json's seed still gives the data away
    (cwd / "dvc.lock").unlink()
    (cwd / "params.yaml").write_text(yaml.safe_dump(raw))
    assert dc.main(["--fractions", "0.5", "1"]) == 2
    assert f"was made with seed {raw['seed'] - 1}" in capsys.readouterr().err


# ------------------------------------------------------------------ end to end
def test_end_to_end_on_digits(prepared, mlflow_template, tmp_path):
    """Split and augment ran (tiny params); the command trains 3 fractions x 2 seeds, writes, logs."""
    cwd = clone_prepared(prepared, tmp_path / "p")
    env = {**os.environ, **fresh_store(mlflow_template, tmp_path / "mlflow.db")}
    seed = yaml.safe_load((cwd / "params.yaml").read_text())["seed"]
    result = subprocess.run([sys.executable, "-m", "goodfit.data_curve", "--fractions", "0.25", "0.5", "1",
                             "--seeds", str(seed), "7", "--out", "out"], cwd=cwd, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert "verdict:" in result.stdout and "fraction  n_train" in result.stdout
    report = json.loads((cwd / "out/data_curve.json").read_text())
    assert (cwd / "out/data_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert len(report["points"]) == 6 and [r["n_seeds"] for r in report["curve"]] == [2, 2, 2]
    assert {"fraction", "n_train", "seed", "best_epoch", "train_eval_loss", "val_loss", "train_eval_accuracy",
            "val_accuracy"} <= set(report["points"][0])
    assert report["verdict"] in (dc.HIGH_VARIANCE, dc.HIGH_BIAS, dc.CONVERGED) and report["thresholds"]["gap_large"]
    n_train = [r["n_train"] for r in report["curve"]]
    assert n_train[0] < n_train[1] < n_train[2] == json.loads((cwd / "data/split/meta.json").read_text())[
        "counts"]["train"]["total"]

    # the full-data point with params.seed is the train stage's own model
    assert run_stage_script("train", cwd, env=env).returncode == 0
    summary = json.loads((cwd / "reports/train/summary.json").read_text())
    full = [p for p in report["points"] if p["fraction"] == 1.0 and p["seed"] == seed][0]
    assert full["best_epoch"] == summary["best_epoch"] and full["val_loss"] == summary["best_val_loss"]

    c = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = c.search_runs([c.get_experiment_by_name("goodfit").experiment_id],
                         filter_string=f"tags.`{TAG_KIND}` = 'data_curve'")
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags][0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.run_name == "data_curve" and len(children) == 6
    assert parent.data.tags["goodfit.data_curve.verdict"] == report["verdict"]
    assert {(r.data.params["fraction"], r.data.params["seed"]) for r in children} == {
        (f, s) for f in ("0.25", "0.5", "1.0") for s in (str(seed), "7")}
    child = children[0]
    epochs = c.get_metric_history(child.info.run_id, "train_eval_loss")
    assert len(epochs) == child.data.metrics["stopped_epoch"] and "best_val_loss" in child.data.metrics
    assert {a.path for a in c.list_artifacts(parent.info.run_id)} == {"data_curve.json", "data_curve.png"}
