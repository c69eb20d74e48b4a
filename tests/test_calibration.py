import math

import numpy as np
import pytest

from goodfit.calibration import (T_MAX, T_MIN, apply_temperature, brier_score, confidence_and_outcome,
                                 expected_calibration_error, fit_temperature)
from goodfit.errors import GoodfitError
from goodfit.evaluation import classification_metrics, per_class_metrics, predict_labels


def two_class(p1):
    p1 = np.asarray(p1, dtype=np.float64)
    return np.stack([1 - p1, p1], axis=1)


def test_binary_ece_by_hand():
    # torchmetrics' BinaryCalibrationError example, n_bins=2: bin [0, .5): P(1) .25, .25, both class 0
    # -> |0 - .25| x 2/5 = .1; bin [.5, 1): .55, .75, .75, all class 1 -> |1 - .6833| x 3/5 = .19; ECE .29
    proba = two_class([0.25, 0.25, 0.55, 0.75, 0.75])
    assert expected_calibration_error(np.array([0, 0, 1, 1, 1]), proba, n_bins=2) == pytest.approx(0.29)


def test_multiclass_ece_by_hand():
    # torchmetrics' MulticlassCalibrationError example, n_bins=3: top confidences .55 (right), .55 (wrong),
    # .60 (right), .90 (right): bin [1/3, 2/3): acc 2/3, conf .5667 -> .1 x 3/4; bin [2/3, 1): |1 - .9| x 1/4
    proba = np.array([[0.25, 0.20, 0.55], [0.55, 0.05, 0.40], [0.10, 0.30, 0.60], [0.90, 0.05, 0.05]])
    assert expected_calibration_error(np.array([0, 1, 2, 0]), proba, n_bins=3) == pytest.approx(0.2)


def test_ece_bin_edges_and_certainty():
    # a confidence on an inner edge opens the upper bin; 1.0 gets a slot of its own, as torchmetrics does
    proba = two_class([0.5, 0.5, 1.0])
    # bin [.5, 1): two samples, P .5, one of class 1 -> 0; slot 1.0: class 0 -> |0 - 1| x 1/3
    assert expected_calibration_error(np.array([1, 0, 0]), proba, n_bins=2) == pytest.approx(1 / 3)
    perfect = two_class([0.0, 1.0])
    assert expected_calibration_error(np.array([0, 1]), perfect) == 0.0
    with pytest.raises(GoodfitError, match="calibration bins must be an integer >= 1, got 0"):
        expected_calibration_error(np.array([0, 1]), perfect, n_bins=0)


def test_ece_is_zero_for_frequencies_matching_the_probability():
    # 10 samples at P(1) = .3 of which 3 are class 1, 10 at .8 of which 8: perfectly calibrated
    proba = two_class([0.3] * 10 + [0.8] * 10)
    y = np.array([1] * 3 + [0] * 7 + [1] * 8 + [0] * 2)
    assert expected_calibration_error(y, proba) == pytest.approx(0.0, abs=1e-12)


def test_brier_against_the_formula():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=50)
    y = rng.integers(0, 4, 50)
    assert brier_score(y, p) == pytest.approx(((p - np.eye(4)[y]) ** 2).sum(axis=1).mean())
    p2 = two_class(rng.uniform(size=30))
    y2 = rng.integers(0, 2, 30)
    assert brier_score(y2, p2) == pytest.approx(((p2[:, 1] - y2) ** 2).mean())


def test_confidence_and_outcome():
    conf, outcome = confidence_and_outcome(np.array([0, 2]), np.array([[0.7, 0.2, 0.1], [0.5, 0.1, 0.4]]))
    assert conf.tolist() == [0.7, 0.5] and outcome.tolist() == [1.0, 0.0]
    conf, outcome = confidence_and_outcome(np.array([0, 1]), two_class([0.2, 0.9]))
    assert conf.tolist() == [0.2, 0.9] and outcome.tolist() == [0.0, 1.0]


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_temperature_equals_dividing_the_logits_and_keeps_the_predicted_class():
    rng = np.random.default_rng(1)
    z = rng.normal(scale=3.0, size=(40, 5))
    for t in (0.5, 1.0, 2.5):
        scaled = apply_temperature(softmax(z), t)
        assert np.allclose(scaled, softmax(z / t), atol=1e-12)
        assert (scaled.argmax(1) == z.argmax(1)).all()
    p = two_class(rng.uniform(size=40))
    assert (predict_labels(apply_temperature(p, 3.0)) == predict_labels(p)).all()


@pytest.mark.parametrize("true_t", [0.6, 2.0])
def test_fitted_temperature_recovers_the_one_that_generated_the_labels(true_t):
    # labels drawn from softmax(z / T): the model's softmax(z) is over- (T > 1) or under-confident (T < 1),
    # and the log-loss-optimal temperature is T, up to the sampling noise of 20000 labels
    rng = np.random.default_rng(2)
    z = rng.normal(scale=2.0, size=(20000, 3))
    p_true = softmax(z / true_t)
    y = (rng.uniform(size=(20000, 1)) > p_true.cumsum(axis=1)).sum(axis=1)
    fitted = fit_temperature(y, softmax(z))
    assert fitted == pytest.approx(true_t, rel=0.05)
    before = classification_metrics(y, softmax(z))["log_loss"]
    after = classification_metrics(y, apply_temperature(softmax(z), fitted))["log_loss"]
    assert after < before
    assert expected_calibration_error(y, apply_temperature(softmax(z), fitted)) < expected_calibration_error(
        y, softmax(z))


def test_temperature_of_a_perfectly_separated_split_stops_at_the_bound_and_bad_splits_are_refused():
    p = two_class([0.1, 0.2, 0.8, 0.9])
    assert fit_temperature(np.array([0, 0, 1, 1]), p) == pytest.approx(T_MIN, rel=1e-3)
    assert T_MIN < 1 < T_MAX
    with pytest.raises(GoodfitError, match="at least two classes, and this one has 2 sample.* of 1 class"):
        fit_temperature(np.array([1, 1]), p[2:])


def test_binary_ppv_npv_against_sklearn():
    from sklearn.metrics import precision_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)
    p = two_class(np.clip(y * 0.4 + rng.uniform(size=80) * 0.6, 0, 1))
    m = classification_metrics(y, p, threshold=0.55)
    pred = (p[:, 1] > 0.55).astype(int)
    assert m["ppv"] == pytest.approx(precision_score(y, pred, pos_label=1))
    assert m["npv"] == pytest.approx(precision_score(y, pred, pos_label=0))
    assert {"sensitivity", "specificity", "ece", "brier"} <= set(m)


def test_per_class_against_sklearn_one_vs_rest():
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 120)
    p = rng.dirichlet(np.ones(3), size=120)
    p[np.arange(120), y] += 0.5
    p /= p.sum(axis=1, keepdims=True)
    names = ["normal", "benign", "malignant"]
    out = per_class_metrics(y, p, names)
    assert list(out) == names
    pred = p.argmax(1)
    for c, name in enumerate(names):
        pos, hit = y == c, pred == c
        assert out[name]["sensitivity"] == pytest.approx(recall_score(pos, hit))
        assert out[name]["specificity"] == pytest.approx(recall_score(~pos, ~hit))
        assert out[name]["ppv"] == pytest.approx(precision_score(pos, hit))
        assert out[name]["npv"] == pytest.approx(precision_score(~pos, ~hit))
        assert out[name]["roc_auc"] == pytest.approx(roc_auc_score(pos, p[:, c]))
    assert per_class_metrics(y % 2, two_class(p[:, 1]), ["a", "b"]) == {}


def test_per_class_without_a_sample_of_the_class_has_no_auc_and_zero_ratios():
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    out = per_class_metrics(y, p, ["a", "b", "c"])
    assert "roc_auc" not in out["c"] and out["c"]["sensitivity"] == 0.0 and out["c"]["ppv"] == 0.0
    assert math.isclose(out["c"]["specificity"], 3 / 4)


def test_ece_with_one_bin_is_the_gap_between_mean_confidence_and_frequency():
    proba = two_class([0.1, 0.4, 0.7, 0.9])
    y = np.array([0, 1, 1, 1])
    assert expected_calibration_error(y, proba, n_bins=1) == pytest.approx(abs(0.75 - np.mean([0.1, 0.4, 0.7, 0.9])))
    with pytest.raises(GoodfitError, match="calibration bins must be an integer >= 1, got True"):
        expected_calibration_error(y, proba, n_bins=True)


def test_ece_bins_are_n_equal_widths():
    """With two bins the cut is at 0.5 exactly: 0.45 and 0.55 fall on either side, 0.3 and 0.45 together."""
    y = np.array([0, 1, 1])
    proba = two_class([0.3, 0.45, 0.55])
    by_hand = (abs(0.5 - 0.375) * 2 + abs(1 - 0.55)) / 3
    assert expected_calibration_error(y, proba, n_bins=2) == pytest.approx(by_hand)


def test_brier_of_more_classes_counts_the_classes_the_test_split_lacks():
    """A class absent from the labels still has its column: its probability is all error."""
    p = np.array([[0.6, 0.1, 0.3], [0.2, 0.5, 0.3], [0.7, 0.2, 0.1]])
    y = np.array([0, 1, 0])  # no sample of class 2
    assert brier_score(y, p) == pytest.approx(((p - np.eye(3)[y]) ** 2).sum(axis=1).mean())


def test_temperature_one_returns_the_probabilities_unchanged_and_another_rescales_them():
    """T = 1 leaves every bit as it was; T = 2 is softmax(log p / 2); both in float64 from float32."""
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(3), size=20)
    assert np.array_equal(apply_temperature(p, 1.0), p)
    assert np.allclose(apply_temperature(p, 2.0), softmax(np.log(p) / 2), rtol=1e-12, atol=0)
    for t in (1.0, 2.0):
        assert apply_temperature(p.astype(np.float32), t).dtype == np.float64


def test_a_probability_of_zero_is_scaled_and_fitted_without_warnings():
    """A class with probability exactly 0 (a saturated softmax) gives finite, warning-free results."""
    import warnings

    p = two_class([0.0, 1.0, 0.3, 0.8])
    y = np.array([1, 0, 0, 1])  # the first two are certain and wrong
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaled = apply_temperature(p, 2.0)
        t = fit_temperature(y, p)
    assert np.isfinite(scaled).all() and (scaled > 0).all()
    assert T_MIN <= t <= T_MAX


def test_two_validation_samples_of_two_classes_are_enough_for_a_temperature():
    t = fit_temperature(np.array([0, 1]), two_class([0.3, 0.6]))
    assert T_MIN <= t <= T_MAX and t == float(f"{t:.6g}")


@pytest.mark.parametrize("value, ok", [(1, True), (2.5, True), (0, False), (-1.0, False), (math.inf, False),
                                       (math.nan, False), (True, False), ("2", False)])
def test_a_saved_temperature_must_be_a_positive_finite_number(value, ok):
    from goodfit.calibration import check_temperature

    if ok:
        assert check_temperature(value, "models/model.pt") == value
        assert type(check_temperature(value, "models/model.pt")) is float
    else:
        with pytest.raises(GoodfitError, match=r"models/model\.pt holds the calibration temperature .*, which is "
                                               r"not a number > 0; re-train the model"):
            check_temperature(value, "models/model.pt")


@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")  # float32 rows, off by rounding
def test_float32_probabilities_are_scored_in_double_precision():
    """A model's float32 probabilities get the Brier score of the same values held in float64."""
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(3), size=200).astype(np.float32)
    y = rng.integers(0, 3, 200)
    assert brier_score(y, p) == brier_score(y, p.astype(np.float64))
    assert brier_score(y % 2, two_class(p[:, 1]).astype(np.float32)) == brier_score(y % 2, two_class(p[:, 1]))
