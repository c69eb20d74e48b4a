import math

import numpy as np
import pytest

from goodfit.errors import GoodfitError
from goodfit.evaluation import (GOOD_FIT, OVERFITTING, UNDERFITTING, check_threshold, choose_threshold,
                                classification_metrics, confusion, diagnose_fit, per_class_metrics, predict_labels,
                                prior_loss)


def history(train, val):
    return [{"epoch": i + 1, "train_loss": t, "val_loss": v} for i, (t, v) in enumerate(zip(train, val))]


BASE = math.log(2)  # binary, balanced


def test_overfitting_curve():
    train = [0.6, 0.4, 0.3, 0.2, 0.12, 0.08, 0.05, 0.03]
    val = [0.6, 0.45, 0.38, 0.40, 0.45, 0.50, 0.55, 0.60]
    d = diagnose_fit(history(train, val), baseline_loss=BASE)
    assert d["verdict"] == OVERFITTING
    assert d["best_epoch"] == 3
    assert d["val_rise"] > 0.1


def test_underfitting_curve():
    train = [0.70, 0.69, 0.68, 0.68, 0.675]
    val = [0.70, 0.695, 0.69, 0.69, 0.688]
    d = diagnose_fit(history(train, val), baseline_loss=BASE)
    assert d["verdict"] == UNDERFITTING


def test_good_fit_curve():
    train = [0.6, 0.4, 0.3, 0.25, 0.22, 0.21]
    val = [0.58, 0.42, 0.33, 0.29, 0.28, 0.285]
    d = diagnose_fit(history(train, val), baseline_loss=BASE)
    assert d["verdict"] == GOOD_FIT


def test_diagnosis_compares_the_eval_mode_training_loss_when_the_history_has_it():
    # As trained, the training loss sits above validation (augmented copies, dropout on); in eval mode
    # on the originals it falls below and keeps falling while validation turns up: overfitting, which
    # the as-trained curve (flat after epoch 3) would hide.
    as_trained = [0.7, 0.6, 0.55, 0.55, 0.55, 0.55, 0.55]
    eval_mode = [0.6, 0.4, 0.3, 0.2, 0.12, 0.08, 0.05]
    val = [0.6, 0.45, 0.38, 0.40, 0.45, 0.50, 0.55]
    rows = [{**r, "train_eval_loss": e} for r, e in zip(history(as_trained, val), eval_mode)]
    d = diagnose_fit(rows, baseline_loss=BASE)
    assert d["train_measure"] == "train_eval_loss"
    assert d["verdict"] == OVERFITTING
    assert d["gap_at_best"] == pytest.approx(0.38 - 0.3)
    assert d["min_train_loss"] == pytest.approx(0.05)
    old = diagnose_fit(history(as_trained, val), baseline_loss=BASE)  # a history from before train_eval_loss
    assert old["train_measure"] == "train_loss"
    assert old["verdict"] == GOOD_FIT and old["gap_at_best"] == pytest.approx(0.38 - 0.55)


def test_small_noisy_rise_on_tiny_loss_is_not_overfitting():
    train = [0.5, 0.2, 0.1, 0.09, 0.085, 0.08]
    val = [0.4, 0.1, 0.017, 0.019, 0.019, 0.019]  # +12 % but 0.002 absolute
    d = diagnose_fit(history(train, val), baseline_loss=math.log(10))
    assert d["verdict"] == GOOD_FIT


def test_prior_loss_is_entropy():
    assert prior_loss([50, 50]) == pytest.approx(math.log(2))
    assert prior_loss([10] * 10) == pytest.approx(math.log(10))


def test_binary_metrics_include_sensitivity_and_specificity():
    y = np.array([0, 0, 1, 1, 1])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    m = classification_metrics(y, proba)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert 0 <= m["roc_auc"] <= 1
    assert confusion(y, proba).tolist() == [[1, 1], [1, 2]]


def test_multiclass_metrics():
    y = np.array([0, 1, 2, 2])
    proba = np.eye(3)[[0, 1, 2, 1]] * 0.9 + 0.1 / 3
    m = classification_metrics(y, proba)
    assert m["accuracy"] == pytest.approx(0.75)
    assert "sensitivity" not in m
    assert m["roc_auc"] > 0.5


def binary(p1):
    p1 = np.asarray(p1, dtype=np.float64)
    return np.stack([1 - p1, p1], axis=1)


def test_default_threshold_agrees_with_argmax():
    rng = np.random.default_rng(0)
    proba = binary(np.concatenate([rng.random(200), [0.5, 0.5]]))
    assert np.array_equal(predict_labels(proba), proba.argmax(axis=1))


def test_threshold_moves_the_decision_and_the_metrics():
    y = np.array([0, 0, 1, 1])
    proba = binary([0.1, 0.35, 0.4, 0.9])
    at_default = classification_metrics(y, proba)
    at_03 = classification_metrics(y, proba, threshold=0.3)
    assert at_default["accuracy"] == 0.75 and at_03["accuracy"] == 0.75
    assert at_default["sensitivity"] == 0.5 and at_03["sensitivity"] == 1.0
    assert at_03["specificity"] == 0.5
    assert at_default["roc_auc"] == at_03["roc_auc"] and at_default["log_loss"] == at_03["log_loss"]
    assert confusion(y, proba, threshold=0.38).tolist() == [[2, 0], [0, 2]]


def test_chosen_threshold_maximises_accuracy_between_samples():
    y = np.array([0, 0, 0, 1, 1, 1])
    proba = binary([0.05, 0.1, 0.2, 0.3, 0.4, 0.95])  # every positive below 0.5 except one
    t = choose_threshold(y, proba)
    assert t == pytest.approx(0.25)  # midway between the highest negative and the lowest positive
    assert classification_metrics(y, proba, t)["accuracy"] == 1.0


def test_chosen_threshold_stays_at_default_when_default_is_best():
    y = np.array([0, 0, 1, 1])
    assert choose_threshold(y, binary([0.1, 0.2, 0.8, 0.9])) == 0.5


def test_chosen_threshold_prefers_the_candidate_nearest_default_among_ties():
    y = np.array([0, 1, 0, 1])
    proba = binary([0.1, 0.2, 0.7, 0.8])  # 0.15 and 0.75 both give 3 of 4
    assert choose_threshold(y, proba) == pytest.approx(0.75)
    rng = np.random.default_rng(1)
    y, p1 = rng.integers(0, 2, 300), rng.random(300)
    t = choose_threshold(y, binary(p1))
    grid = np.linspace(0.001, 0.999, 999)
    assert classification_metrics(y, binary(p1), t)["accuracy"] >= max(
        (predict_labels(binary(p1), g) == y).mean() for g in grid)


def test_threshold_on_more_than_two_classes_is_refused():
    proba = np.full((3, 3), 1 / 3)
    with pytest.raises(GoodfitError, match=r"train\.threshold is 'val_accuracy', but a decision threshold applies to "
                                           r"two-class tasks only and this dataset has 3 classes; set train\.threshold "
                                           r"to 0\.5"):
        check_threshold("val_accuracy", 3)
    check_threshold(0.5, 3)
    with pytest.raises(GoodfitError, match=r"A decision threshold \(0\.3\) applies to two-class tasks only, and "
                                           r"this one has 3 classes"):
        predict_labels(proba, 0.3)
    with pytest.raises(GoodfitError, match=r"two-class tasks only, and this one has 3 classes"):
        choose_threshold(np.array([0, 1, 2]), proba)


@pytest.mark.parametrize("train, val", [
    ([0.6, 0.3, 0.1, 0.05, 0.03], [0.69, 0.66, 0.65, 0.66, 0.68]),  # training loss low, validation high
    ([0.69, 0.68, 0.68, 0.67, 0.67], [0.6, 0.3, 0.2, 0.21, 0.2]),  # validation low, training high
])
def test_a_run_with_one_low_loss_is_never_underfitting(train, val):
    """Underfitting needs both losses high: a run whose training (or validation) loss fell well below
    the class-prior loss learnt something, whatever the other curve did."""
    d = diagnose_fit(history(train, val), baseline_loss=BASE)
    assert max(min(train), min(val)) >= 0.7 * BASE  # one curve stays high ...
    assert min(min(train), min(val)) < 0.7 * BASE  # ... and the other does not
    assert d["verdict"] != UNDERFITTING


def test_both_losses_exactly_at_the_underfit_line_is_underfitting():
    """"Stayed at or above underfit_ratio x the class-prior loss": the line itself counts as high."""
    d = diagnose_fit(history([0.8, 0.75, 0.75], [0.8, 0.75, 0.75]), baseline_loss=1.0, underfit_ratio=0.75)
    assert d["verdict"] == UNDERFITTING
    d = diagnose_fit(history([0.8, 0.75, 0.74], [0.8, 0.75, 0.75]), baseline_loss=1.0, underfit_ratio=0.75)
    assert d["verdict"] != UNDERFITTING


def test_a_validation_rise_while_training_loss_stays_flat_is_not_overfitting():
    """Overfitting is validation loss turning up *while training loss keeps falling*: with the training
    loss flat after the best epoch the same rise is not overfitting; with it falling, it is."""
    val = [0.6, 0.45, 0.38, 0.45, 0.5, 0.55]
    flat = diagnose_fit(history([0.6, 0.4, 0.3, 0.3, 0.3, 0.3], val), baseline_loss=BASE)
    assert flat["val_rise"] > 0.1 and flat["train_drop_after_best"] == 0
    assert flat["verdict"] == GOOD_FIT
    falling = diagnose_fit(history([0.6, 0.4, 0.3, 0.29, 0.28, 0.27], val), baseline_loss=BASE)
    assert falling["verdict"] == OVERFITTING


def test_a_rise_of_exactly_the_thresholds_is_not_overfitting():
    """"Rose by more than overfit_rise and by more than noise_floor x the baseline": a rise of exactly
    either is not overfitting, a little more of both is."""
    train = [0.8, 0.6, 0.5, 0.4, 0.3, 0.2]
    val = [0.7, 0.6, 0.5, 0.5625, 0.5625, 0.5625]  # +0.0625 absolute, +12.5 % relative (exact in binary)
    d = diagnose_fit(history(train, val), baseline_loss=2.0, overfit_rise=0.125, noise_floor=0.01)
    assert d["val_rise"] == 0.125 and d["verdict"] == GOOD_FIT
    d = diagnose_fit(history(train, val), baseline_loss=2.0, overfit_rise=0.1, noise_floor=0.03125)
    assert d["val_rise_abs"] == 0.0625 and d["verdict"] == GOOD_FIT
    d = diagnose_fit(history(train, val), baseline_loss=2.0, overfit_rise=0.1, noise_floor=0.03)
    assert d["verdict"] == OVERFITTING


def test_prior_loss_leaves_out_empty_classes_and_keeps_single_samples():
    """A class with no training sample adds nothing to the prior's entropy; one with a single sample counts."""
    assert prior_loss([5, 0, 5]) == pytest.approx(math.log(2))
    assert prior_loss([1, 1]) == pytest.approx(math.log(2))


def test_the_diagnosis_reports_the_numbers_behind_its_verdict():
    """Every number of the diagnosis, recomputed here from the curves: the best epoch is the lowest
    validation loss, the rise is measured on the mean of the last three epochs after it."""
    train = [0.9, 0.5, 0.35, 0.3, 0.28, 0.26, 0.25, 0.2]
    val = [0.8, 0.5, 0.4, 0.42, 0.44, 0.5, 0.52, 0.54]
    d = diagnose_fit(history(train, val), baseline_loss=BASE)
    end = np.mean(val[-3:])
    assert d == {
        "verdict": OVERFITTING, "reason": d["reason"], "baseline_loss": BASE, "best_epoch": 3,
        "min_val_loss": 0.4, "min_train_loss": 0.2, "final_train_loss": 0.2, "final_val_loss": 0.54,
        "val_rise": pytest.approx((end - 0.4) / 0.4), "val_rise_abs": pytest.approx(end - 0.4),
        "train_drop_after_best": pytest.approx((0.35 - 0.2) / 0.35), "gap_at_best": pytest.approx(0.4 - 0.35),
        "train_measure": "train_loss"}
    assert f"rose {(end - 0.4) / 0.4:.0%} above its minimum (epoch 3)" in d["reason"]


@pytest.mark.parametrize("val, after_best", [
    ([0.8, 0.5, 0.4, 0.45], [0.45]),  # fewer than three epochs after the best: those there are
    ([0.8, 0.5, 0.4, 0.45, 0.5, 0.6, 0.7], [0.5, 0.6, 0.7]),  # otherwise the last three
    ([0.8, 0.5, 0.4], []),  # best at the last epoch: no rise
])
def test_the_rise_is_measured_on_the_epochs_after_the_best(val, after_best):
    train = list(np.linspace(0.9, 0.2, len(val)))
    d = diagnose_fit(history(train, val), baseline_loss=BASE)
    expected = (np.mean(after_best) - 0.4) / 0.4 if after_best else 0.0
    assert d["val_rise"] == pytest.approx(expected)


def test_a_perfect_validation_loss_does_not_divide_by_zero():
    """Relative numbers against a best validation (or training) loss of 0 stay finite."""
    d = diagnose_fit(history([0.5, 0.0, 0.0, 0.0], [0.3, 0.0, 0.01, 0.01]), baseline_loss=BASE)
    assert d["val_rise"] == pytest.approx(0.01 / 1e-12) and d["train_drop_after_best"] == 0.0


def test_an_epoch_with_a_non_finite_loss_is_left_out_of_the_diagnosis():
    """A diverged epoch (either loss NaN or infinite) does not enter the diagnosis."""
    rows = history([0.6, 0.4, 0.3, math.nan], [0.6, 0.45, 0.38, 0.37])
    d = diagnose_fit(rows, baseline_loss=BASE)
    assert d["final_train_loss"] == 0.3 and d["final_val_loss"] == 0.38 and d["best_epoch"] == 3
    rows = history([0.6, 0.4, 0.3, 0.2], [0.6, 0.45, 0.38, math.inf])
    assert diagnose_fit(rows, baseline_loss=BASE)["final_train_loss"] == 0.3


def test_a_history_without_a_finite_epoch_is_underfitting():
    d = diagnose_fit(history([math.nan], [math.nan]), baseline_loss=BASE)
    assert d == {"verdict": UNDERFITTING, "reason": "no epoch with finite losses", "baseline_loss": BASE,
                 "train_measure": "train_loss"}


def folds(*members):
    """One history with a ``fold`` column from the members' (train, val) curves."""
    return [{**row, "fold": f} for f, (train, val) in enumerate(members, start=1) for row in history(train, val)]


OVERFIT = ([0.6, 0.4, 0.3, 0.2, 0.12, 0.08], [0.6, 0.45, 0.38, 0.45, 0.5, 0.55])
GOOD = ([0.6, 0.4, 0.3, 0.25, 0.22, 0.21], [0.58, 0.42, 0.33, 0.29, 0.28, 0.285])


def test_a_cross_validation_history_gets_the_commonest_member_verdict():
    """Each member is diagnosed alone; the commonest verdict wins, with the numbers of its first member."""
    d = diagnose_fit(folds(GOOD, OVERFIT, OVERFIT), baseline_loss=BASE)
    first_overfitting = diagnose_fit(history(*OVERFIT), baseline_loss=BASE)
    assert d["fold_verdicts"] == [GOOD_FIT, OVERFITTING, OVERFITTING]
    assert d["verdict"] == OVERFITTING and d["reason"] == f"2 of 3 folds: {first_overfitting['reason']}"
    assert {k: v for k, v in d.items() if k not in ("reason", "fold_verdicts")} == \
        {k: v for k, v in first_overfitting.items() if k != "reason"}
    tie = diagnose_fit(folds(GOOD, OVERFIT), baseline_loss=BASE)
    assert tie["verdict"] == GOOD_FIT  # a tie goes to the first member's verdict


@pytest.mark.parametrize("setting", [dict(baseline_loss=0.2), dict(overfit_rise=0.5), dict(noise_floor=0.5),
                                     dict(underfit_ratio=0.3)])
def test_each_member_is_diagnosed_with_the_given_thresholds(setting):
    kw = {"baseline_loss": BASE, **setting}
    d = diagnose_fit(folds(OVERFIT, GOOD), **kw)
    assert d["fold_verdicts"] == [diagnose_fit(history(*m), **kw)["verdict"] for m in (OVERFIT, GOOD)]
    assert d["fold_verdicts"] != [OVERFITTING, GOOD_FIT]  # the setting changes a verdict


def test_confusion_keeps_a_row_and_column_for_every_class():
    """A class that is neither present nor predicted still has its (zero) row and column."""
    y = np.array([0, 1, 1])
    proba = np.eye(3)[[0, 1, 0]] * 0.8 + 0.2 / 3
    assert confusion(y, proba).tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]


@pytest.mark.parametrize("y, p1, expected", [
    ([1, 1, 1], [0.2, 0.3, 0.4], 0.1),  # everything positive: midway between 0 and the lowest probability
    ([0, 0, 0], [0.6, 0.7, 0.8], 0.9),  # everything negative: midway between the highest and 1
])
def test_a_threshold_beyond_every_sample_sits_midway_to_the_end_of_the_range(y, p1, expected):
    assert choose_threshold(np.array(y), binary(p1)) == pytest.approx(expected)


def test_choosing_a_threshold_for_more_than_two_classes_is_refused():
    with pytest.raises(GoodfitError, match=r"train\.threshold: val_accuracy applies to two-class tasks only"):
        choose_threshold(np.array([0, 1, 2]), np.full((3, 3), 1 / 3))


def test_per_class_numbers_are_each_class_against_the_rest():
    """For more than two classes, each class's sensitivity, specificity, PPV, NPV (counted here sample by
    sample) and ROC AUC against the rest, by class name; a class without a test sample has no ROC AUC."""
    from sklearn.metrics import roc_auc_score

    from goodfit.evaluation import per_class_metrics

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 60)
    proba = rng.dirichlet(np.ones(4), 60)  # four classes, the last never in y
    pred = proba.argmax(axis=1)
    out = per_class_metrics(y, proba, ["a", "b", "c", "d"])
    assert list(out) == ["a", "b", "c", "d"]
    for c, name in enumerate(out):
        tp, fn = np.sum((y == c) & (pred == c)), np.sum((y == c) & (pred != c))
        fp, tn = np.sum((y != c) & (pred == c)), np.sum((y != c) & (pred != c))
        ratio = lambda a, b: a / b if b else 0.0  # noqa: E731
        expected = {"sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp),
                    "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn)}
        if c < 3:
            expected["roc_auc"] = roc_auc_score(y == c, proba[:, c])
        assert out[name] == pytest.approx(expected), name
    only_a = per_class_metrics(np.zeros(60, dtype=np.int64), proba, ["a", "b", "c", "d"])
    assert "roc_auc" not in only_a["a"]  # no sample of the rest to rank against
    assert per_class_metrics(y % 2, binary(proba[:, 0]), ["a", "b"]) == {}


@pytest.mark.filterwarnings("ignore:A single label was found")  # scikit-learn, on the split with class 0 only
def test_a_ratio_without_cases_is_zero():
    """No predicted positive: PPV is 0.0 (scikit-learn's zero_division=0), not NaN or 1; a split with
    class 0 only still gets the binary numbers of class 1."""
    m = classification_metrics(np.array([0, 1, 1]), binary([0.1, 0.2, 0.3]))
    assert (m["ppv"], m["sensitivity"], m["specificity"], m["npv"]) == (0.0, 0.0, 1.0, pytest.approx(1 / 3))
    only_negatives = classification_metrics(np.array([0, 0]), binary([0.1, 0.2]))
    assert (only_negatives["sensitivity"], only_negatives["specificity"], only_negatives["ppv"]) == (0.0, 1.0, 0.0)


def test_calibration_numbers_use_fifteen_bins_unless_told():
    from goodfit.calibration import brier_score, expected_calibration_error

    y = np.array([0, 1, 1, 0, 1, 1, 0, 1])
    proba = binary([0.05, 0.3, 0.52, 0.49, 0.7, 0.93, 0.61, 0.88])
    assert expected_calibration_error(y, proba, 15) != expected_calibration_error(y, proba, 16)
    m = classification_metrics(y, proba)
    assert m["ece"] == expected_calibration_error(y, proba, 15) and m["brier"] == brier_score(y, proba)
    assert classification_metrics(y, proba, n_bins=16)["ece"] == expected_calibration_error(y, proba, 16)


def test_a_probability_of_one_half_counts_as_class_0_when_the_threshold_is_chosen():
    """Choosing judges a cut as applying it does (class 1 only above it), so a sample at exactly 0.5
    is class 0 at the threshold 0.5."""
    y, proba = np.array([0, 1]), binary([0.5, 0.9])
    assert choose_threshold(y, proba) == 0.5
    assert classification_metrics(y, proba, 0.5)["accuracy"] == 1.0


def test_binary_metrics_have_the_keys_users_read_and_agree_with_their_definitions():
    # metrics.json's keys: `dvc metrics diff`, MLflow and users' scripts read them by these names.
    y = np.array([0, 0, 0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    m = classification_metrics(y, proba)
    assert set(m) == {"accuracy", "balanced_accuracy", "f1_macro", "log_loss", "roc_auc", "sensitivity",
                      "specificity", "ppv", "npv", "ece", "brier"}
    # predictions 0 0 1 0 1 0: class 0 recall 3/4, class 1 recall 1/2
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    f1_0, f1_1 = 2 * 3 / (2 * 3 + 1 + 1), 2 * 1 / (2 * 1 + 1 + 1)  # 2 TP / (2 TP + FP + FN)
    assert m["f1_macro"] == pytest.approx((f1_0 + f1_1) / 2)
    true_class = proba[np.arange(6), y]
    assert m["log_loss"] == pytest.approx(-np.log(true_class).mean())


def test_a_zero_probability_for_the_true_class_costs_a_bounded_log_loss():
    # P = 0 for the true class is clipped to 1e-15, so one such sample adds -log(1e-15) / n, not infinity.
    m = classification_metrics(np.array([0, 1]), np.array([[0.0, 1.0], [0.5, 0.5]]))
    assert m["log_loss"] == pytest.approx((-math.log(1e-15) - math.log(0.5)) / 2)


def test_a_class_without_samples_or_predictions_still_counts_in_the_macro_f1(recwarn):
    # Three classes, class 2 neither present nor predicted: its F1 is 0 (scikit-learn's zero_division=0,
    # silently), so the macro mean is over all three classes the model knows.
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    m = classification_metrics(y, proba)
    assert m["f1_macro"] == pytest.approx(2 / 3)
    assert not [w for w in recwarn if "zero_division" in str(w.message) or "ill-defined" in str(w.message)]
    per_class = per_class_metrics(y, proba, ["a", "b", "c"])
    assert per_class["c"] == {"sensitivity": 0.0, "specificity": 1.0, "ppv": 0.0, "npv": 1.0}  # no AUC: no sample
    assert per_class["a"]["sensitivity"] == 1.0 and per_class["a"]["roc_auc"] == 1.0


def test_a_class_with_a_single_sample_gets_its_roc_auc():
    y = np.array([0, 0, 1, 1, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.3, 0.5, 0.2], [0.2, 0.2, 0.6]])
    assert per_class_metrics(y, proba, ["a", "b", "c"])["c"]["roc_auc"] == 1.0


@pytest.mark.parametrize("k", [2, 3])
def test_predicted_labels_are_integers(k):
    proba = np.full((4, k), 1 / k)
    proba[:, 1] += 0.1
    labels = predict_labels(proba / proba.sum(axis=1, keepdims=True))
    assert labels.dtype == np.int64 and labels.tolist() == [1, 1, 1, 1]


def test_each_verdict_gives_its_reason_in_words():
    under = diagnose_fit(history([0.70, 0.69, 0.68], [0.70, 0.695, 0.69]), baseline_loss=BASE)
    assert under["reason"] == f"train and validation loss stayed >= 0.7 x the class-prior loss {BASE:.3f}"
    good = diagnose_fit(history([0.6, 0.4, 0.3, 0.25], [0.58, 0.42, 0.33, 0.30]), baseline_loss=BASE)
    assert good["reason"] == "both losses fell well below the class-prior loss and validation did not turn up"
