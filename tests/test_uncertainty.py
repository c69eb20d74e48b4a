"""Bootstrap intervals of the test metrics: the vectorised statistic against scikit-learn, the
bootstrap against a plain loop, stratification, determinism, and the refusals."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from goodfit import uncertainty
from goodfit.errors import GoodfitError
from goodfit.uncertainty import PER_CLASS_METRICS, bootstrap_intervals


def make_case(n_per_class, seed=0, signal=1.5, sharpen=1.0, ties=False):
    """Labels (class-sorted, then shuffled) and softmax probabilities that favour the true class."""
    rng = np.random.default_rng(seed)
    k = len(n_per_class)
    y = rng.permutation(np.repeat(np.arange(k), n_per_class))
    logits = rng.normal(size=(len(y), k))
    logits[np.arange(len(y)), y] += signal
    if ties:  # few distinct logits: many tied scores, and whole rows repeated
        logits = np.round(logits)
    e = np.exp(sharpen * (logits - logits.max(axis=1, keepdims=True)))
    return y, e / e.sum(axis=1, keepdims=True)


def names(k):
    return [f"c{i}" for i in range(k)]


def reference_ece(y, proba, n_bins=15):
    """torchmetrics' ECE written out bin by bin: bucketize(conf, linspace(0, 1, n_bins + 1), right=True) - 1."""
    if proba.shape[1] == 2:
        conf, hit = proba[:, 1], (y == 1).astype(float)
    else:
        conf, hit = proba.max(axis=1), (proba.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    slot = np.array([sum(1 for e in edges if e <= c) - 1 for c in conf])
    return sum(abs(hit[slot == b].mean() - conf[slot == b].mean()) * (slot == b).mean()
               for b in range(n_bins + 1) if (slot == b).any())


def reference(y, proba, threshold=0.5, n_bins=15):
    """Every metric by its definition, with scikit-learn wherever it has one."""
    from goodfit.evaluation import predict_labels

    k = proba.shape[1]
    labels = list(range(k))
    pred = predict_labels(proba, threshold)
    out = {"accuracy": skm.accuracy_score(y, pred), "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
           "f1_macro": skm.f1_score(y, pred, average="macro", labels=labels, zero_division=0),
           "log_loss": skm.log_loss(y, np.clip(proba, 1e-15, 1), labels=labels),
           "ece": reference_ece(y, proba, n_bins)}
    cm = skm.confusion_matrix(y, pred, labels=labels)

    def one_vs_rest(c):
        tp, fn, fp = cm[c, c], cm[c].sum() - cm[c, c], cm[:, c].sum() - cm[c, c]
        tn = cm.sum() - tp - fn - fp
        ratio = lambda a, b: a / b if b else 0.0  # noqa: E731
        return {"sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp),
                "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn)}

    if k == 2:
        out["roc_auc"] = skm.roc_auc_score(y, proba[:, 1])
        out["brier"] = skm.brier_score_loss(y, proba[:, 1])
        out.update(one_vs_rest(1))
        if threshold != 0.5:
            out["accuracy_at_default_threshold"] = skm.accuracy_score(y, predict_labels(proba))
    else:
        out["roc_auc"] = skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels)
        out["brier"] = skm.brier_score_loss(y, proba, labels=labels)
        for c in range(k):
            out.update({f"{c}/{m}": v for m, v in one_vs_rest(c).items()})
            out[f"{c}/roc_auc"] = skm.roc_auc_score(y == c, proba[:, c])
    return out


def full_sample(y, proba, threshold=0.5, n_bins=15):
    statistic = uncertainty._Statistic(y, proba, threshold=threshold, n_bins=n_bins)
    return dict(zip(statistic.names, statistic.values(np.ones((1, len(y))))[:, 0]))


CASES = {
    "binary": dict(n_per_class=[70, 86]),
    "binary-ties-threshold": dict(n_per_class=[40, 60], ties=True),
    "10-class": dict(n_per_class=[27] * 10),
    "10-class-ties": dict(n_per_class=[20, 35, 12, 30, 25, 28, 40, 22, 31, 27], ties=True, signal=0.5),
}


@pytest.mark.parametrize("case", CASES)
def test_full_sample_statistic_equals_scikit_learn(case):
    y, proba = make_case(**CASES[case])
    threshold = 0.3 if "threshold" in case else 0.5
    expected = reference(y, proba, threshold)
    got = full_sample(y, proba, threshold)
    assert sorted(got) == sorted(expected)
    for metric, value in expected.items():
        assert got[metric] == pytest.approx(value, abs=1e-12, rel=0), metric


@pytest.mark.parametrize("case", ["binary-ties-threshold", "10-class-ties"])
def test_statistic_on_resamples_with_repeats_equals_scikit_learn(case):
    y, proba = make_case(**CASES[case])
    threshold = 0.3 if "threshold" in case else 0.5
    statistic = uncertainty._Statistic(y, proba, threshold=threshold, n_bins=15)
    rng = np.random.default_rng(5)
    members = [np.flatnonzero(y == c) for c in range(proba.shape[1])]
    resampled = [rng.choice(m, size=(4, len(m))) for m in members]  # 4 stratified resamples
    got = statistic(*resampled)
    for r in range(4):
        idx = np.concatenate([s[r] for s in resampled])
        expected = reference(y[idx], proba[idx], threshold)
        for row, metric in enumerate(statistic.names):
            assert got[row, r] == pytest.approx(expected[metric], abs=1e-12, rel=0), (r, metric)


def test_ece_matches_the_torchmetrics_examples():
    binary = np.array([0.25, 0.25, 0.55, 0.75, 0.75])
    got = full_sample(np.array([0, 0, 1, 1, 1]), np.stack([1 - binary, binary], axis=1), n_bins=2)["ece"]
    assert got == pytest.approx(0.29, abs=1e-12)
    multi = np.array([[0.25, 0.20, 0.55], [0.55, 0.05, 0.40], [0.10, 0.30, 0.60], [0.90, 0.05, 0.05]])
    assert full_sample(np.array([0, 1, 2, 0]), multi, n_bins=3)["ece"] == pytest.approx(0.2, abs=1e-12)


def test_ece_gives_a_confidence_of_one_its_own_bin():
    # [1.0] alone: gap 0; merged into the last bin with 0.95 (wrong) it would be |0.5 - 0.975| * 2/3.
    p1 = np.array([0.05, 0.95, 1.0])
    y = np.array([0, 0, 1])
    got = full_sample(y, np.stack([1 - p1, p1], axis=1), n_bins=15)["ece"]
    assert got == pytest.approx(reference_ece(y, np.stack([1 - p1, p1], axis=1)), abs=1e-12)
    assert got == pytest.approx((0.05 + 0.95) / 3, abs=1e-12)


@pytest.mark.parametrize("case", ["binary", "10-class"])
def test_full_sample_ece_equals_the_calibration_module(case):
    calibration = pytest.importorskip("goodfit.calibration")
    y, proba = make_case(**CASES[case])
    assert full_sample(y, proba)["ece"] == pytest.approx(calibration.expected_calibration_error(y, proba, 15),
                                                         abs=1e-12, rel=0)


# --- the bootstrap against a plain loop -------------------------------------------------------

def loop_metrics(y, proba):
    """The metrics of one resample by their plain definitions (checked against scikit-learn below)."""
    k = proba.shape[1]
    pred = (proba[:, 1] > 0.5).astype(int) if k == 2 else proba.argmax(axis=1)

    def auc(positive, score):  # share of (positive, negative) pairs ordered right, ties one half
        s, t = score[positive][:, None], score[~positive][None, :]
        return ((s > t) + 0.5 * (s == t)).mean()

    if k == 2:
        out = {"roc_auc": auc(y == 1, proba[:, 1]), "brier": ((proba[:, 1] - y) ** 2).mean()}
    else:
        out = {"roc_auc": np.mean([auc(y == c, proba[:, c]) for c in range(k)]),
               "brier": ((proba - np.eye(k)[y]) ** 2).sum(axis=1).mean(),
               "1/sensitivity": (pred[y == 1] == 1).mean(), "1/roc_auc": auc(y == 1, proba[:, 1])}
    conf, hit = (proba[:, 1], y == 1) if k == 2 else (proba.max(axis=1), pred == y)
    slot = np.searchsorted(np.linspace(0, 1, 16), conf, side="right") - 1
    out["ece"] = sum(abs(hit[slot == b].mean() - conf[slot == b].mean()) * (slot == b).mean()
                     for b in np.unique(slot))
    out["accuracy"] = (pred == y).mean()
    return out


@pytest.mark.parametrize("n_per_class", [[35, 45], [30, 25, 35]])
def test_bootstrap_agrees_with_a_plain_resampling_loop(n_per_class):
    y, proba = make_case(n_per_class, seed=3, signal=1.0)
    expected = reference(y, proba)
    for metric, value in loop_metrics(y, proba).items():  # the loop's definitions are scikit-learn's
        assert value == pytest.approx(expected[metric], abs=1e-12), metric

    b = 4000
    rng = np.random.default_rng(12345)
    members = [np.flatnonzero(y == c) for c in range(len(n_per_class))]
    rows = []
    for _ in range(b):
        idx = np.concatenate([rng.choice(m, size=len(m), replace=True) for m in members])
        rows.append(loop_metrics(y[idx], proba[idx]))
    intervals, per_class = bootstrap_intervals(y, proba, class_names=names(len(n_per_class)), n_resamples=b)
    flat = {**intervals, **{f"{c[1:]}/{m}": v for c, ms in per_class.items() for m, v in ms.items()}}

    # Each bound is a Monte-Carlo estimate of a 2.5% / 97.5% quantile of the same bootstrap
    # distribution. For a roughly normal one with sd s, a quantile from B draws has standard
    # error sqrt(p(1-p)/B) / phi(1.96) * s = 0.042 s at B = 4000; the difference of two
    # independent estimates 0.060 s, so 0.3 s is 5 standard errors. A lattice-valued metric
    # (accuracy: steps of 1/N; a class's sensitivity: 1/n_c) may in addition land one step
    # apart when the quantile level falls at the edge of an atom.
    n = len(y)
    steps = {"accuracy": 1 / n, "1/sensitivity": 1 / n_per_class[1] if len(n_per_class) > 2 else 0}
    for metric in rows[0]:
        values = np.array([r[metric] for r in rows])
        low, high = np.percentile(values, [2.5, 97.5])
        tol = 0.3 * values.std() + steps.get(metric, 0.0)
        assert flat[metric]["low"] == pytest.approx(low, abs=tol), metric
        assert flat[metric]["high"] == pytest.approx(high, abs=tol), metric


# --- stratification, determinism, coverage ------------------------------------------------------

def test_every_resample_keeps_the_class_counts(monkeypatch):
    y, proba = make_case([30, 12, 1, 20], seed=1)  # class 2 has a single test sample
    counts = np.bincount(y)
    seen = []
    original = uncertainty._resample_weights

    def recording(indices, n):
        w = original(indices, n)
        seen.append((indices.copy(), w))
        return w

    monkeypatch.setattr(uncertainty, "_resample_weights", recording)
    monkeypatch.setattr(uncertainty, "_BATCH_SAMPLES", 63 * len(y))  # several batches, the last one short
    bootstrap_intervals(y, proba, class_names=names(4), n_resamples=200)
    assert sum(len(indices) for indices, _ in seen) == 200
    assert len(seen) == 4
    for indices, w in seen:
        assert indices.shape[1] == len(y)
        for row in indices:
            assert (np.bincount(y[row], minlength=4) == counts).all()
        for c in range(4):
            assert (w[:, y == c].sum(axis=1) == counts[c]).all()
        assert (w[:, y == 2] == 1).all()  # a lone sample is in every resample, once
        assert (w.sum(axis=1) == len(y)).all()


def test_same_seed_same_bits_other_seed_other_bounds():
    y, proba = make_case([40, 30, 50], seed=2)
    first = bootstrap_intervals(y, proba, class_names=names(3), seed=7)
    assert first == bootstrap_intervals(y, proba, class_names=names(3), seed=7)
    other = bootstrap_intervals(y, proba, class_names=names(3), seed=8)
    assert other != first
    assert first[0]["roc_auc"] != other[0]["roc_auc"]
    for bounds in [*first[0].values(), *(b for per in first[1].values() for b in per.values())]:
        assert type(bounds["low"]) is float and type(bounds["high"]) is float


@pytest.mark.parametrize("n_per_class, threshold", [([120, 180], 0.5), ([120, 180], 0.4), ([60, 80, 70, 90], 0.5)])
def test_intervals_contain_the_point_estimates(n_per_class, threshold):
    # sharpen > 1: an over-confident model, whose ECE sits well above its resampling noise
    y, proba = make_case(n_per_class, seed=4, sharpen=2.0)
    k = len(n_per_class)
    intervals, per_class = bootstrap_intervals(y, proba, threshold=threshold, class_names=names(k))
    point = full_sample(y, proba, threshold)
    expected = set(uncertainty.METRICS) | (set(uncertainty.BINARY_METRICS) if k == 2 else set())
    assert set(intervals) == expected | ({"accuracy_at_default_threshold"} if threshold != 0.5 else set())
    assert list(per_class) == ([] if k == 2 else names(k))
    for metric, bounds in intervals.items():
        assert bounds["low"] <= point[metric] <= bounds["high"], metric
        assert bounds["low"] < bounds["high"], metric
    for c, name in enumerate(per_class):
        assert list(per_class[name]) == list(PER_CLASS_METRICS)
        for metric, bounds in per_class[name].items():
            assert bounds["low"] <= point[f"{c}/{metric}"] <= bounds["high"], (name, metric)


def test_four_times_the_samples_halve_the_width():
    def widths(n_per_class):
        y, proba = make_case(n_per_class, seed=6)
        intervals, _ = bootstrap_intervals(y, proba, class_names=names(2), n_resamples=2000)
        return {m: b["high"] - b["low"] for m, b in intervals.items()}

    small, large = widths([150, 100]), widths([600, 400])
    for metric in ("accuracy", "balanced_accuracy", "roc_auc", "log_loss", "brier", "sensitivity"):
        assert 0.35 < large[metric] / small[metric] < 0.65, (metric, large[metric] / small[metric])


def test_a_metric_constant_over_the_resamples_gets_that_value_and_no_warning():
    y = np.repeat([0, 1, 2], [10, 15, 12])
    proba = np.full((len(y), 3), 0.05)
    proba[np.arange(len(y)), y] = 0.9  # always right, always 0.9 sure
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        intervals, per_class = bootstrap_intervals(y, proba, class_names=names(3), n_resamples=200)
    assert intervals["accuracy"] == {"low": 1.0, "high": 1.0}
    assert intervals["roc_auc"] == {"low": 1.0, "high": 1.0}
    assert intervals["ece"]["low"] == pytest.approx(0.1, abs=1e-12)
    assert intervals["ece"]["high"] == pytest.approx(0.1, abs=1e-12)
    assert per_class["c1"]["ppv"] == {"low": 1.0, "high": 1.0}


def test_one_test_sample_per_class_gives_the_point_estimate():
    proba = np.array([[0.8, 0.2], [0.3, 0.7]])
    intervals, _ = bootstrap_intervals(np.array([0, 1]), proba, class_names=names(2), n_resamples=100)
    assert intervals["accuracy"] == {"low": 1.0, "high": 1.0}
    assert intervals["brier"]["low"] == intervals["brier"]["high"] == pytest.approx((0.2 ** 2 + 0.3 ** 2) / 2)


# --- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(n_resamples=99), "n_resamples is 99"),
    (dict(n_resamples=1000.0), "n_resamples is 1000.0"),
    (dict(n_resamples=True), "n_resamples is True"),
    (dict(confidence=0.0), "confidence is 0.0"),
    (dict(confidence=1.0), "confidence is 1.0"),
    (dict(confidence=95), "strictly between 0 and 1"),
    (dict(class_names=["a", "b"]), "proba has shape (20, 3)"),
    (dict(class_names=["a", "b", "c", "d"]), "(N, 4)"),
    (dict(threshold=0.3), "two-class tasks only"),
])
def test_bad_arguments_are_refused(kwargs, message):
    y, proba = make_case([6, 7, 7], seed=0)
    args = {"class_names": names(3), **kwargs}
    with pytest.raises(GoodfitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bootstrap_intervals(y, proba, **args)


def test_proba_rows_must_match_the_labels():
    y, proba = make_case([6, 7, 7], seed=0)
    with pytest.raises(GoodfitError, match=r"one row per test sample"):
        bootstrap_intervals(y[:-1], proba, class_names=names(3))


def test_a_class_without_a_test_sample_is_named():
    y, proba = make_case([6, 7, 7], seed=0)
    y[y == 1] = 0
    with pytest.raises(GoodfitError, match=r"class 'c1' has no test sample.*stratified"):
        bootstrap_intervals(y, proba, class_names=names(3))


@pytest.mark.parametrize("change, message", [
    (lambda y, p: (y + 5, p), "integer classes 0..2"),
    (lambda y, p: (y.astype(float), p), "integer classes 0..2"),
    (lambda y, p: (y, np.where(p > 0.5, np.nan, p)), "finite numbers in"),
    (lambda y, p: (y, p * 2), r"in \[0, 1\]"),
])
def test_labels_and_probabilities_are_checked(change, message):
    y, proba = change(*make_case([6, 7, 7], seed=0))
    with pytest.raises(GoodfitError, match=message):
        bootstrap_intervals(y, proba, class_names=names(3))


def test_import_loads_no_heavy_library():
    code = ("import sys, goodfit.uncertainty\n"
            "print(','.join(m for m in ('torch', 'mlflow', 'matplotlib', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_bins=True), "n_bins is True"),
    (dict(n_bins=2.5), "n_bins is 2.5"),
    (dict(n_bins=0), "n_bins is 0"),
    (dict(class_names=["c0", "c1", "c1"]), "must name two or more distinct classes"),
])
def test_bins_and_class_names_are_checked(kwargs, message):
    y, proba = make_case([6, 7, 7], seed=0)
    with pytest.raises(GoodfitError, match=message):
        bootstrap_intervals(y, proba, **{"class_names": names(3), **kwargs})


def test_one_class_name_is_refused():
    with pytest.raises(GoodfitError, match="must name two or more distinct classes"):
        bootstrap_intervals(np.zeros(3, dtype=np.int64), np.ones((3, 1)), class_names=["only"])


@pytest.mark.parametrize("change, message", [
    (lambda y, p: (y[:, None], p), r"y_true \(20, 1\)"),  # labels as a column
    (lambda y, p: (np.where(y == 2, 3, y), p), "integer classes 0..2"),  # a label one past the last class
])
def test_label_shape_and_range_are_checked(change, message):
    y, proba = change(*make_case([6, 7, 7], seed=0))
    with pytest.raises(GoodfitError, match=message):
        bootstrap_intervals(y, proba, class_names=names(3))


def test_certain_probabilities_of_zero_and_one_are_accepted_and_one_bin_is_enough():
    y = np.array([0, 0, 1, 1, 1])
    proba = np.eye(2)[[0, 1, 1, 1, 0]]
    intervals, _ = bootstrap_intervals(y, proba, class_names=names(2), n_resamples=100, n_bins=1)
    assert intervals["ece"]["low"] <= intervals["ece"]["high"]


@pytest.mark.parametrize("labels, missing", [([0, 1, 1, 0], "class 'c2' has no test sample"),
                                             ([0, 0, 0, 0], "classes 'c1', 'c2' ha(s|ve) no test sample")])
def test_every_class_without_a_test_sample_is_named(labels, missing):
    """The last class, and several at once, are named too."""
    y = np.array(labels)
    with pytest.raises(GoodfitError, match=missing):
        bootstrap_intervals(y, np.full((4, 3), 1 / 3), class_names=names(3))


def test_the_defaults_are_1000_resamples_seeded_0_at_95_percent():
    y, proba = make_case([20, 25], seed=1)
    default, _ = bootstrap_intervals(y, proba, class_names=names(2))
    explicit, _ = bootstrap_intervals(y, proba, class_names=names(2), n_resamples=1000, seed=0, confidence=0.95)
    assert default == explicit


def test_a_lower_confidence_gives_a_narrower_interval():
    y, proba = make_case([40, 40], seed=2)
    wide, _ = bootstrap_intervals(y, proba, class_names=names(2), n_resamples=200)
    narrow, _ = bootstrap_intervals(y, proba, class_names=names(2), n_resamples=200, confidence=0.5)
    for metric in ("accuracy", "log_loss", "brier"):
        assert wide[metric]["low"] < narrow[metric]["low"] <= narrow[metric]["high"] < wide[metric]["high"], metric


def test_float32_probabilities_get_the_bounds_of_the_same_values_in_float64():
    y, proba = make_case([15, 18], seed=3)
    p32 = proba.astype(np.float32)
    low_precision, _ = bootstrap_intervals(y, p32, class_names=names(2), n_resamples=100)
    assert low_precision == bootstrap_intervals(y, p32.astype(np.float64), class_names=names(2), n_resamples=100)[0]


def test_a_test_set_larger_than_one_batch_of_resamples_is_bootstrapped():
    """Resamples are drawn in batches of at most 2,000,000 resampled samples: 25,000 test samples give
    batches of 80 resamples, and the bounds still come out (same bits on every call)."""
    y, proba = make_case([12_000, 13_000], seed=5)
    first, _ = bootstrap_intervals(y, proba, class_names=names(2), n_resamples=100)
    assert first["accuracy"]["low"] < first["accuracy"]["high"]
    assert first == bootstrap_intervals(y, proba, class_names=names(2), n_resamples=100)[0]


def test_a_class_with_one_test_sample_is_in_every_resample_beside_resampled_classes():
    """A class with a single test sample is drawn once in every resample, the others are resampled:
    its sensitivity (right or wrong in every resample) has an interval of one point."""
    y = np.array([0, 1, 1, 1, 1, 1, 1])
    proba = two_class_rows([0.2, 0.9, 0.8, 0.3, 0.7, 0.6, 0.4])
    intervals, _ = bootstrap_intervals(y, proba, class_names=names(2), n_resamples=200)
    assert intervals["specificity"] == {"low": 1.0, "high": 1.0}  # class 0's one sample, predicted right
    assert intervals["sensitivity"]["low"] < intervals["sensitivity"]["high"]


def two_class_rows(p1):
    p1 = np.asarray(p1, dtype=np.float64)
    return np.stack([1 - p1, p1], axis=1)


def test_statistic_on_resamples_with_none_or_one_predicted_positive_and_a_certain_mistake():
    """Resamples in which no sample, or a single one, is predicted positive (PPV 0 by zero_division=0,
    and 1), a true class given probability 0 (log loss clipped at 1e-15, as scikit-learn does) and a
    confidence exactly on a bin edge (the upper bin's, as torchmetrics bins): every metric equals
    scikit-learn's on the resample, without a warning."""
    edge = np.linspace(0.0, 1.0, 16)[3]
    y = np.array([0, 0, 0, 1, 1, 1])
    proba = two_class_rows([0.1, edge, 0.3, 0.0, 0.25, 0.9])  # only the last sample is predicted positive
    statistic = uncertainty._Statistic(y, proba, threshold=0.5, n_bins=15)
    weights = np.array([[1, 1, 1, 2, 1, 0], [1, 1, 1, 1, 1, 1], [2, 1, 0, 1, 0, 2]], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = statistic.values(weights)
    for r, w in enumerate(weights.astype(int)):
        idx = np.repeat(np.arange(len(y)), w)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn on a resample without a predicted positive
            expected = reference(y[idx], proba[idx])
        for row, metric in enumerate(statistic.names):
            assert got[row, r] == pytest.approx(expected[metric], abs=1e-12, rel=0), (r, metric)


@pytest.mark.parametrize("budget, per_batch", [(1, 1), (0.5, 1), (3.5, 3)])  # in test sets' worth of samples
def test_a_batch_of_resamples_stays_within_the_memory_budget_and_holds_at_least_one(monkeypatch, budget, per_batch):
    """A batch holds as many whole resamples as fit in ``_BATCH_SAMPLES`` resampled samples, at least
    one (a test set larger than the budget is still bootstrapped, a resample at a time)."""
    y, proba = make_case([30, 20], seed=3)
    sizes = []
    original = uncertainty._resample_weights

    def recording(indices, n):
        sizes.append(indices.shape[0])
        return original(indices, n)

    monkeypatch.setattr(uncertainty, "_resample_weights", recording)
    monkeypatch.setattr(uncertainty, "_BATCH_SAMPLES", int(budget * len(y)))
    bootstrap_intervals(y, proba, class_names=names(2), n_resamples=100)
    assert sum(sizes) == 100 and max(sizes) == per_batch
