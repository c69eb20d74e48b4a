import math

import numpy as np
import pytest

from goodfit.evaluation import (GOOD_FIT, OVERFITTING, UNDERFITTING, classification_metrics, confusion,
                                diagnose_fit, prior_loss)


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
