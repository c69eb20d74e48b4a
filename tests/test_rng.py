import numpy as np

from goodfit import rng


def test_uniform_is_a_pure_function_of_indices():
    a = rng.uniform(7, np.arange(1000), 3)
    b = rng.uniform(7, np.arange(500, 1000), 3)
    assert np.array_equal(a[500:], b)


def test_uniform_statistics():
    u = rng.uniform(0, np.arange(200_000))
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005
    hist = np.histogram(u, bins=10, range=(0, 1))[0] / len(u)
    assert np.abs(hist - 0.1).max() < 0.005


def test_normal_statistics_and_independence():
    z = rng.normal(1, np.arange(200_000))
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    other = rng.normal(1, np.arange(200_000), 1)
    assert abs(np.corrcoef(z, other)[0, 1]) < 0.01


def test_seed_matters():
    assert not np.array_equal(rng.uniform(0, np.arange(10)), rng.uniform(1, np.arange(10)))
