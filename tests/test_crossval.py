"""k-fold cross-validation ensembles (train.folds > 1)."""

import numpy as np
import pytest
import torch

from goodfit.crossval import assign_folds, fit_cross_validated, originals, summarize
from goodfit.errors import GoodfitError
from goodfit.models import Ensemble, build_model, model_spec


def spec(n_features=3):
    return model_spec(kind="mlp", modality="tabular", input_shape=[n_features], n_classes=2, hidden=[8],
                      channels=[4], dropout=0.0, batch_norm=False, mean=[0.0] * n_features, std=[1.0] * n_features)


def test_folds_are_stratified_seeded_and_cover_every_sample_once():
    y = np.array([0] * 30 + [1] * 12)
    fold = assign_folds(y, 4, seed=3)
    assert sorted(set(fold)) == [0, 1, 2, 3] and len(fold) == len(y)
    for j in range(4):
        assert sorted(np.bincount(y[fold == j], minlength=2)) in ([3, 7], [3, 8], [4, 7])  # 12/4 and ~30/4 each
    assert np.array_equal(fold, assign_folds(y, 4, seed=3))
    assert not np.array_equal(fold, assign_folds(y, 4, seed=4))


def test_a_class_smaller_than_the_fold_count_is_refused():
    with pytest.raises(GoodfitError, match="train.folds is 5, but class 1 has only 4 samples .* at most 4"):
        assign_folds(np.array([0] * 20 + [1] * 4), 5, seed=0)


def test_augmented_rows_must_be_a_multiple_of_the_copies():
    assert originals(12, 2, "x") == 4
    with pytest.raises(GoodfitError, match="x has 10 rows, not a multiple of augment.copies \\+ 1 = 3"):
        originals(10, 2, "x")


def test_no_member_trains_on_a_copy_of_a_sample_it_is_validated_on(monkeypatch):
    import goodfit.training as training

    # feature 0 is the sample's id; an augmented copy is the id + 0.25 (its floor is still the id)
    rng = np.random.default_rng(0)
    n_tr, n_va, copies = 30, 10, 2
    ids_tr, ids_va = np.arange(n_tr, dtype=np.float32), np.arange(n_tr, n_tr + n_va, dtype=np.float32)
    y_tr, y_va = rng.integers(0, 2, n_tr), rng.integers(0, 2, n_va)
    y_tr[:4], y_va[:2] = 1, 0

    def layout(ids, y):
        x = np.stack([np.concatenate([ids + 0.25 * c for c in range(copies + 1)]),
                      *rng.normal(size=(2, len(ids) * (copies + 1)))], axis=1).astype(np.float32)
        return x, np.tile(y, copies + 1).astype(np.int64)

    (x_tr, yy_tr), (x_va, yy_va) = layout(ids_tr, y_tr), layout(ids_va, y_va)
    seen = []
    real_fit = training.fit

    def spy(model, **kw):
        seen.append((np.floor(kw["x_train"][:, 0]), kw["x_val"][:, 0], kw["seed"]))
        return real_fit(model, **kw)

    monkeypatch.setattr(training, "fit", spy)
    cv = fit_cross_validated(spec(), x_train=x_tr, y_train=yy_tr, x_val=x_va, y_val=yy_va, copies=copies, folds=4,
                             seed=7, fit_kwargs=dict(max_epochs=2, patience=5, verbose=False))
    validated = np.concatenate([v for _, v, _ in seen])
    assert sorted(validated) == list(range(n_tr + n_va))  # each pooled original validates exactly once
    for trained, val_ids, _ in seen:
        assert not set(trained) & set(val_ids)  # neither the sample nor any copy of it
        rest = sorted(set(range(n_tr + n_va)) - set(val_ids))
        assert sorted(trained) == sorted(rest * (copies + 1))  # everything else, with all its copies
    assert [s for _, _, s in seen] == [7, 8, 9, 10]
    assert isinstance(cv.model, Ensemble) and len(cv.model.members) == 4
    assert np.allclose(cv.oof_proba.sum(axis=1), 1.0) and np.array_equal(cv.y_pool, np.concatenate([y_tr, y_va]))
    numbers = summarize(cv)
    assert numbers["best_epoch"] == int(np.median(numbers["fold_best_epochs"])) and len(
        numbers["fold_stopped_epochs"]) == 4


def test_ensemble_averages_the_members_probabilities_and_round_trips(tmp_path):
    from goodfit.checkpoint import load_model, save_model

    members = [build_model(spec(), seed=s).eval() for s in range(3)]
    ensemble = Ensemble(members).eval()
    x = torch.randn(5, 3)
    expected = torch.stack([torch.softmax(m(x), dim=1) for m in members]).mean(0)
    assert torch.allclose(torch.softmax(ensemble(x), dim=1), expected, atol=1e-6)
    save_model(tmp_path / "m.pt", ensemble, {**spec(), "folds": 3})
    loaded, loaded_spec = load_model(tmp_path / "m.pt", input_shape=[3], n_classes=2)
    assert isinstance(loaded, Ensemble) and loaded_spec["folds"] == 3
    assert torch.equal(loaded(x), ensemble(x))


def test_diagnosis_and_figure_of_a_cross_validated_history(tmp_path):
    from goodfit import plots
    from goodfit.evaluation import diagnose_fit

    falling = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.0 / e} for e in range(1, 9)]
    turning = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 0.3 + abs(e - 3) * 0.2} for e in range(1, 9)]
    history = ([{"fold": 1, **r} for r in turning] + [{"fold": 2, **r} for r in falling]
               + [{"fold": 3, **r} for r in turning])
    fit = diagnose_fit(history, baseline_loss=0.69)
    assert fit["fold_verdicts"] == ["overfitting", "good_fit", "overfitting"]
    assert fit["verdict"] == "overfitting" and fit["reason"].startswith("2 of 3 folds: ")
    assert fit["best_epoch"] == 3
    plots.learning_curve(history, tmp_path / "curve.png", best_epoch=3, verdict=fit["verdict"], language="ja")
    assert (tmp_path / "curve.png").stat().st_size > 10_000


def test_preset_figure_draws_one_line_pair_per_member(tmp_path, monkeypatch):
    from goodfit import plots

    drawn = []
    real = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (drawn.append(len(fig.axes[0].lines)), real(fig, path)))
    rows = [{"fold": f, "epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e} for f in (1, 2, 3) for e in (1, 2)]
    plots.learning_curve_comparison({"cv": [rows, rows]}, tmp_path / "c.png", language="en")
    assert drawn == [12]  # 2 seeds x 3 members x (train, val)
