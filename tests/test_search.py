"""train.search: the train stage fits a small grid and keeps the best candidate on validation."""

import contextlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import clone_prepared, copy_project, fresh_store, run_stage_script, write_params
from goodfit import search
from goodfit.errors import GoodfitError
from goodfit.params import SEARCH_LIMIT, as_flat_dict, parse_params
from goodfit.resume import Checkpoints, fingerprint


# ------------------------------------------------------------------ the param
@pytest.mark.parametrize("grid, match", [
    (3, r"train\.search must be null \(no search\) or a mapping from a param to the list of values to try, "
        r"e\.g\. \{weight_decay: \[0\.0, 1\.0e-4, 1\.0e-3\], dropout: \[0\.2, 0\.5\]\}, got 3\."),
    ({"lr": [1e-3]}, r"train\.search cannot search 'lr'\. Did you mean 'train\.lr'\? The keys a search can set: "
                     r"weight_decay, l1_lambda, dropout, train\.lr, train\.label_smoothing, train\.ema_decay, train\.channels, "
                     r"train\.hidden\."),
    ({"weight_decy": [0.0]}, r"train\.search cannot search 'weight_decy'\. Did you mean 'weight_decay'\?"),
    ({"augment.copies": [0, 4]}, r"train\.search cannot search 'augment\.copies'\. augment\.copies is a param, but "
                                 r"not one a search can vary \(the stages before train make its data\): sweep it "
                                 r"with `dvc exp run --queue -S augment\.copies=\.\.\.` instead\."),
    ({"train.max_epochs": [3]}, r"train\.search cannot search 'train\.max_epochs'\. train\.max_epochs is a param, "
                                r"but not one"),
    ({"colour": [1]}, r"train\.search cannot search 'colour'\. The keys a search can set: weight_decay"),
    ({"dropout": []}, r"train\.search\.dropout must be a non-empty list of the values to try, e\.g\. \[0\.0, "
                      r"1\.0e-4\], got \[\]\."),
    ({"dropout": 0.3}, r"train\.search\.dropout must be a non-empty list of the values to try, .*got 0\.3\."),
    ({"dropout": [0.2, 1.0]}, r"train\.search\.dropout\[1\] must be a finite number >= 0 and < 1, got 1\.0\."),
    ({"train.ema_decay": [0.9, 1.0]}, r"train\.search\.train\.ema_decay\[1\] must be a finite number >= 0 and < 1, "
                                      r"got 1\.0\."),
    ({"weight_decay": [0.0, "lots"]}, r"train\.search\.weight_decay\[1\] must be a finite number >= 0, got 'lots'\."),
    ({"train.lr": [True]}, r"train\.search\.train\.lr\[0\] must be a finite number > 0, got True\."),
    ({"train.channels": [8, 16]}, r"train\.search\.train\.channels\[0\] must be a list of at least 1 integers >= 1, "
                                  r"got 8 \(each value to try is itself a list, e\.g\. \[\[8, 16\], \[16, 32\]\]\)\."),
    ({"train.hidden": [[16], [16]]}, r"train\.search\.train\.hidden lists \[16\] twice \(items 0 and 1\); keep one"),
    ({"weight_decay": [0, 1e-5, 1e-4, 1e-3, 1e-2], "dropout": [0.1, 0.2, 0.3, 0.4], "l1_lambda": [0, 1e-5, 1e-4, 1e-3]},
     rf"train\.search makes 5 \(weight_decay\) x 4 \(dropout\) x 4 \(l1_lambda\) = 80 candidates, more than the "
     rf"{SEARCH_LIMIT} one train stage fits\. Drop values, or search fewer keys here and sweep the others with "
     r"`dvc exp run --queue -S \.\.\.`\."),
])
def test_a_bad_grid_says_what_is_wrong_and_how_to_fix_it(grid, match):
    with pytest.raises(GoodfitError, match=r"^params\.yaml: " + match):
        parse_params({"train": {"search": grid}})


def test_null_or_an_empty_grid_is_off_and_a_grid_keeps_its_order():
    assert parse_params({}).train.search is None
    assert parse_params({"train": {"search": None}}).train.search is None
    assert parse_params({"train": {"search": {}}}).train.search is None
    raw = {"train.channels": [[8, 16], [4]], "weight_decay": [0, 1e-3]}
    grid = parse_params({"train": {"search": raw}}).train.search
    assert grid == {"train.channels": [[8, 16], [4]], "weight_decay": [0.0, 1e-3]}
    assert list(grid) == ["train.channels", "weight_decay"] and isinstance(grid["weight_decay"][0], float)


def test_candidates_are_the_product_in_grid_order_with_the_params_of_a_plain_run():
    grid = {"weight_decay": [0.0, 1e-3], "train.channels": [[4], [8, 16]], "dropout": [0.1]}
    values = search.candidates(grid)
    assert values == [{"weight_decay": w, "train.channels": c, "dropout": 0.1}
                      for w in (0.0, 1e-3) for c in ([4], [8, 16])]  # the first key varies slowest
    searched = parse_params({"seed": 3, "train": {"lr": 0.01, "search": grid}})
    assert search.with_values(searched, values[3]) == parse_params(
        {"seed": 3, "weight_decay": 1e-3, "dropout": 0.1, "train": {"lr": 0.01, "channels": [8, 16]}})
    assert search.describe(values[3]) == "weight_decay=0.001, train.channels=[8, 16], dropout=0.1"


@pytest.mark.parametrize("score, best, monitor, wins", [
    (0.2, 0.3, "val_loss", True), (0.3, 0.3, "val_loss", False), (0.4, 0.3, "val_loss", False),
    (0.9, 0.8, "val_accuracy", True), (0.8, 0.8, "val_auc", False), (float("nan"), 0.3, "val_loss", False),
    (0.5, float("nan"), "val_auc", True),
])
def test_better_is_strict_so_ties_go_to_the_first_candidate(score, best, monitor, wins):
    assert search.better(score, best, monitor) is wins


# ------------------------------------------------------------------ the search, in the library
class Recorder:
    """Stands in for the stage's MLflow run: what was logged where."""

    def __init__(self, stop=None):
        self.metrics, self.tags, self.children, self.stop = [], {}, [], stop

    def log_metrics(self, metrics, *, step=None, parent=False):
        self.metrics.append((step, dict(metrics)))

    def set_tags(self, tags, *, parent=False):
        self.tags.update(tags)

    @contextlib.contextmanager
    def child(self, name, *, params, tags=None):
        child = type(self)(self.stop)
        child.name, child.params, child.tags = name, dict(params), dict(tags or {})
        self.children.append(child)
        yield child

    def epochs(self, key="val_loss"):
        return [(step, m[key]) for step, m in self.metrics if step is not None and key in m]


class StopAt(Recorder):
    """Raises KeyboardInterrupt when candidate ``stop[0]`` logs epoch ``stop[1]`` (before that epoch's state)."""

    def log_metrics(self, metrics, *, step=None, parent=False):
        candidate, epoch = self.stop
        if step == epoch and getattr(self, "name", "").startswith(f"train candidate {candidate}/"):
            raise KeyboardInterrupt
        super().log_metrics(metrics, step=step)


def tabular(n=160, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int64)
    x = (rng.normal(size=(n, 4)) + y[:, None] * 1.2).astype(np.float32)
    meta = {"modality": "tabular", "input_shape": [4], "n_classes": 2, "class_names": ["a", "b"],
            "feature_names": ["f1", "f2", "f3", "f4"], "normalization": {"mean": [0.6] * 4, "std": [1.0] * 4}}
    return search.TrainData(meta=meta, x_train=x[:110], y_train=y[:110], x_val=x[110:], y_val=y[110:])


def tiny_params(grid, monitor="val_loss", **train):
    return parse_params({"seed": 1, "augment": {"copies": 0}, "report": {"language": "en"},
                         "train": {"hidden": [8], "max_epochs": 6, "batch_size": 32, "lr": 0.02, "search": grid,
                                   **train},
                         "early_stopping": {"patience": 3, "verbose": False, "monitor": monitor}})


GRID = {"weight_decay": [0.0, 1e-2], "dropout": [0.0, 0.4]}


def same_tensors(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def run_search(params, tmp_path, run=None, folder="ck", lines=None):
    ck = Checkpoints("f", folder=tmp_path / folder, log=(lines if lines is not None else []).append)
    run = run or Recorder()
    return search.train(params, tabular(), run=run, checkpoints=ck, log=lambda line: None), run


def test_the_winner_is_the_best_on_validation_and_is_what_a_plain_run_with_its_values_fits(tmp_path):
    params = tiny_params(GRID)
    trained, run = run_search(params, tmp_path)
    rows = trained.summary["search_candidates"]
    assert [r["candidate"] for r in rows] == [1, 2, 3, 4]
    assert [(r["weight_decay"], r["dropout"]) for r in rows] == [(0.0, 0.0), (0.0, 0.4), (1e-2, 0.0), (1e-2, 0.4)]
    scores = [r["val_score"] for r in rows]
    index = int(np.argmin(scores)) + 1  # argmin: the first of equal minima
    winner = trained.summary["search_winner"]
    assert winner == {"candidate": index, **search.candidates(GRID)[index - 1], "val_score": min(scores)}
    assert trained.summary["search_monitor"] == "val_loss" and trained.summary["search_grid"] == GRID
    assert trained.summary["search_tie_break"] == "first in grid order"
    for r, child in zip(rows, run.children):  # the validation loss at the best epoch, as early stopping saw it
        assert r["val_score"] == dict(child.epochs())[r["best_epoch"]]
        assert child.params["weight_decay"] == r["weight_decay"] and child.params["train.lr"] == 0.02
        assert (None, {"val_score": r["val_score"], "best_epoch": r["best_epoch"],
                       "stopped_epoch": r["stopped_epoch"]}) in child.metrics
        assert child.tags == {search.TAG_CANDIDATE: str(r["candidate"]),
                              search.TAG_WINNER: "true" if r["candidate"] == index else "false"}
    chosen = search.candidates(GRID)[index - 1]
    assert run.tags[search.TAG_CHOSEN] == f"candidate {index}/4: {search.describe(chosen)}"

    plain = search.with_values(params, search.candidates(GRID)[index - 1])
    alone, plain_run = run_search(plain, tmp_path, folder="plain")
    assert alone.summary == {} and not plain_run.children
    assert same_tensors(trained.fitted.model, alone.fitted.model)
    assert trained.fitted.history == alone.fitted.history and trained.fitted.numbers == alone.fitted.numbers
    assert trained.fitted.spec == alone.fitted.spec
    assert run.epochs() == plain_run.epochs()  # the stage's own run: the winner's epochs, as a plain run logs them


@pytest.mark.parametrize("monitor, scores, winner", [
    ("val_loss", [0.5, 0.3, 0.3, 0.4], 2), ("val_accuracy", [0.8, 0.9, 0.9, 0.7], 2),
    ("val_auc", [float("nan"), 0.6, 0.7, 0.7], 3),
])
def test_ties_go_to_the_first_candidate_in_grid_order(monkeypatch, tmp_path, monitor, scores, winner):
    def fake(params, data, *, tracker, checkpoints, label="", log=print):
        score = scores[int(label.split()[1].split("/")[0]) - 1]
        return search.Fitted(spec={}, model=None, history=[], numbers={"best_epoch": 1, "stopped_epoch": 1},
                             n_val=1, choose_on=lambda: None, score=score)

    monkeypatch.setattr(search, "fit_recipe", fake)
    trained, _ = run_search(tiny_params(GRID, monitor=monitor), tmp_path)
    assert trained.summary["search_winner"]["candidate"] == winner
    assert trained.summary["search_monitor"] == monitor


def test_a_cross_validated_search_is_scored_out_of_fold(tmp_path):
    from goodfit.evaluation import classification_metrics

    params = parse_params({"seed": 1, "augment": {"copies": 0}, "report": {"language": "en"},
                           "train": {"hidden": [8], "max_epochs": 3, "batch_size": 32, "lr": 0.02, "folds": 2,
                                     "search": {"dropout": [0.0, 0.3]}},
                           "early_stopping": {"patience": 3, "verbose": False, "monitor": "val_accuracy"}})
    trained, run = run_search(params, tmp_path)
    y, proba = trained.fitted.choose_on()
    assert trained.summary["search_winner"]["val_score"] == classification_metrics(y, proba)["accuracy"]
    assert trained.fitted.spec["folds"] == 2 and any("val_loss_fold2" in m for _, m in run.children[0].metrics)


def test_a_searched_width_is_a_list_per_candidate_and_text_in_the_winner(tmp_path):
    trained, _ = run_search(tiny_params({"train.hidden": [[8], [4, 4]]}, max_epochs=2), tmp_path)
    assert [r["train.hidden"] for r in trained.summary["search_candidates"]] == [[8], [4, 4]]
    index = trained.summary["search_winner"]["candidate"]
    assert trained.summary["search_winner"]["train.hidden"] == str([[8], [4, 4]][index - 1])  # DVC shows no lists
    assert trained.fitted.spec["hidden"] == [[8], [4, 4]][index - 1]


def test_searching_conv_channels_of_an_mlp_is_refused_before_training(tmp_path):
    with pytest.raises(GoodfitError, match=r"train\.search lists train\.channels, but the model is an MLP \(tabular "
                                           r"data\), which has no conv channels: every candidate would be the same\. "
                                           r"Search train\.hidden instead\."):
        run_search(tiny_params({"train.channels": [[4], [8]]}), tmp_path)


def test_a_candidate_that_diverges_is_named(tmp_path):
    with pytest.raises(GoodfitError, match=r"^train\.search, candidate 2/2 \(train\.lr=1e\+30\): Training diverged"):
        run_search(tiny_params({"train.lr": [0.02, 1e30]}), tmp_path)


# ------------------------------------------------------------------ resume
def test_a_stopped_search_keeps_its_finished_candidates_and_ends_identical(tmp_path):
    params = tiny_params(GRID)
    whole, _ = run_search(params, tmp_path, folder="whole")
    lines = []
    with pytest.raises(KeyboardInterrupt):
        run_search(params, tmp_path, run=StopAt(stop=(2, 3)), lines=lines)
    names = sorted(p.name for p in (tmp_path / "ck").glob("*.pt"))
    assert names == ["candidate1.pt", "candidate2.pt"]
    resumed, run = run_search(params, tmp_path, lines=lines)
    assert any(line.startswith("train: resuming (candidate 1) after epoch") for line in lines)  # restored
    assert f"train: resuming (candidate 2) after epoch 2 from {tmp_path / 'ck' / 'candidate2.pt'}" in lines
    assert resumed.summary == whole.summary
    assert same_tensors(resumed.fitted.model, whole.fitted.model) and resumed.fitted.history == whole.fitted.history
    assert [step for step, _ in run.children[1].epochs()][:3] == [1, 2, 3]  # epochs 1-2 from the state, then on


def test_another_grid_discards_every_candidates_state(tmp_path):
    a, b = tiny_params(GRID), tiny_params({**GRID, "dropout": [0.0, 0.5]})
    assert fingerprint(as_flat_dict(a), [], []) != fingerprint(as_flat_dict(b), [], [])
    old = Checkpoints(fingerprint(as_flat_dict(a), [], []), folder=tmp_path / "ck", log=lambda line: None)
    old.candidate(1).save({"epoch": 2, "history": []})
    old.candidate(2).save({"epoch": 1, "history": []}, fold=1)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["candidate1.pt", "candidate2-fold1.pt"]
    lines = []
    new = Checkpoints(fingerprint(as_flat_dict(b), [], []), folder=tmp_path / "ck", log=lines.append)
    assert new.candidate(1).load() is None and new.candidate(2).load(1) is None
    assert len(lines) == 1 and "candidate1.pt" in lines[0] and "candidate2-fold1.pt" in lines[0]
    assert not list((tmp_path / "ck").iterdir())


# ------------------------------------------------------------------ the stage
SMALL = {"max_epochs": 3, "hidden": [16], "channels": [4, 8], "batch_size": 128}
STAGE_GRID = {"dropout": [0.3, 0.1], "weight_decay": [1e-3]}


def outputs(folder):
    return {p: (folder / p).read_bytes() for p in ("models/model.pt", "reports/train/history.csv")}


def test_the_stage_writes_the_winner_as_a_plain_run_would_and_logs_every_candidate(prepared, tmp_path,
                                                                                  mlflow_template):
    searched = clone_prepared(prepared, tmp_path / "searched")
    write_params(searched / "params.yaml", train={**SMALL, "search": STAGE_GRID})
    store = searched / "mlflow.db"
    result = run_stage_script("train", searched, env=fresh_store(mlflow_template, store))
    assert result.returncode == 0, result.stderr
    summary = json.loads((searched / "reports/train/summary.json").read_text())
    winner = summary["search_winner"]
    assert [r["candidate"] for r in summary["search_candidates"]] == [1, 2]
    assert f"train: search winner: candidate {winner['candidate']}/2" in result.stdout
    assert not (searched / "checkpoints").exists()

    plain = clone_prepared(prepared, tmp_path / "plain")
    write_params(plain / "params.yaml", weight_decay=winner["weight_decay"], dropout=winner["dropout"], train=SMALL)
    again = run_stage_script("train", plain, env=fresh_store(mlflow_template, plain / "mlflow.db"))
    assert again.returncode == 0, again.stderr
    assert outputs(searched) == outputs(plain)  # the same bytes: the evaluate stage's figures follow from them
    alone = json.loads((plain / "reports/train/summary.json").read_text())
    assert {k: v for k, v in summary.items() if not k.startswith("search_")} == alone

    c = MlflowClient(f"sqlite:///{store}")
    runs = c.search_runs([c.get_experiment_by_name("goodfit").experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags][0]
    train = [r for r in runs if r.info.run_name == "train"][0]
    candidates = sorted((r for r in runs if search.TAG_CANDIDATE in r.data.tags),
                        key=lambda r: int(r.data.tags[search.TAG_CANDIDATE]))
    assert len(candidates) == 2 and all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in candidates)
    assert train.data.tags["mlflow.parentRunId"] == parent.info.run_id
    for r, row in zip(candidates, summary["search_candidates"]):
        assert r.info.status == "FINISHED" and r.info.run_name.startswith(f"train candidate {row['candidate']}/2: ")
        assert float(r.data.params["dropout"]) == row["dropout"]
        assert float(r.data.params["weight_decay"]) == row["weight_decay"]
        assert r.data.metrics["val_score"] == row["val_score"] and r.data.metrics["best_epoch"] == row["best_epoch"]
        assert [m.step for m in c.get_metric_history(r.info.run_id, "val_loss")] == [1, 2, 3]
        assert r.data.tags[search.TAG_WINNER] == ("true" if row["candidate"] == winner["candidate"] else "false")
    for r in (train, parent):
        assert r.data.tags[search.TAG_CHOSEN].startswith(f"candidate {winner['candidate']}/2: dropout=")
        assert r.data.metrics["search_val_score"] == winner["val_score"]


def test_a_bad_grid_stops_the_stage_before_it_writes_anything(prepared, tmp_path):
    folder = clone_prepared(prepared, tmp_path / "bad")
    write_params(folder / "params.yaml", train={**SMALL, "search": {"augment.copies": [0, 4]}})
    result = run_stage_script("train", folder)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: params.yaml: train.search cannot search 'augment.copies'.")
    assert sorted(p.name for p in folder.iterdir()) == ["data", "params.yaml"]


@pytest.mark.slow
def test_dvc_exp_run_with_a_grid_shows_the_winner_in_exp_show(prepared, tmp_path):
    """A real `dvc exp run -S 'train.search=...'` (split and augment committed from prepared data, so only train and
    evaluate run) and the winner's values in `dvc exp show`."""
    root = copy_project(tmp_path / "repo")
    # DVC reads every param a stage lists: the sections write_params leaves to their defaults, written out
    write_params(root / "params.yaml", train={**SMALL, "folds": 1, "search": None}, mlflow={"experiment": "goodfit"},
                 repro={"portable": True}, evaluate={"bootstrap": 100}, diagnosis={"overfit_rise": 0.1})
    (root / "dvc.lock").unlink(missing_ok=True)
    shutil.copytree(prepared / "data", root / "data", dirs_exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env['PATH']}"

    def sh(cmd):
        out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600, shell=True)
        assert out.returncode == 0, f"{cmd}:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    sh("git init -q -b main && git config user.email t@example.com && git config user.name t && git add -A && "
       "git commit -qm project && dvc commit -f -q split augment && git add dvc.lock && git commit -qm data")
    out = sh("dvc exp run -S train.max_epochs=2 -S 'train.search={weight_decay:[0,1e-3],dropout:[0.1]}'")
    assert "Running stage 'train'" in out and "Running stage 'augment'" not in out  # the key is train's alone
    assert "train: search over 2 candidates (2 x 1)" in out
    summary = json.loads((root / "reports/train/summary.json").read_text())
    show = json.loads(sh("dvc exp show --json"))
    exp = [e for rev in show for e in (rev.get("experiments") or [])][0]["revs"][0]["data"]
    assert exp["params"]["params.yaml"]["data"]["train"]["search"] == {"weight_decay": [0, 0.001], "dropout": [0.1]}
    shown = exp["metrics"]["reports/train/summary.json"]["data"]["search_winner"]
    assert shown == summary["search_winner"] and set(shown) == {"candidate", "weight_decay", "dropout", "val_score"}
    assert "accuracy" in exp["metrics"]["reports/metrics.json"]["data"]["test"]
