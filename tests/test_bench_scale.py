"""benchmarks/bench_scale.py: the synthetic images it writes, and how it reports growth."""

import numpy as np
import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def scale():
    return load_benchmark("bench_scale")


def test_the_dataset_is_a_medmnist_file_with_the_official_split(scale, tmp_path):
    scale.write_dataset(tmp_path / "images.npz", 50)
    with np.load(tmp_path / "images.npz") as f:
        shapes = {k: f[k].shape for k in f.files}
        assert f["train_images"].dtype == np.uint8 and set(np.unique(f["train_labels"])) <= {0, 1}
    assert shapes == {"train_images": (40, 128, 128), "val_images": (5, 128, 128), "test_images": (5, 128, 128),
                      "train_labels": (40, 1), "val_labels": (5, 1), "test_labels": (5, 1)}


def test_images_are_the_same_whatever_the_chunk(scale):
    labels, chunks = scale.synthetic_images(10, seed=3, chunk=4)
    labels2, chunks2 = scale.synthetic_images(10, seed=3, chunk=4)
    np.testing.assert_array_equal(labels, labels2)
    np.testing.assert_array_equal(np.concatenate(list(chunks())), np.concatenate(list(chunks2())))


def test_growth_gives_the_ratio_and_the_cost_of_each_further_thousand_images(scale):
    def r(seconds, gib):
        return {"seconds": seconds, "data_gib": gib}

    results = {}
    for n, (t, d) in {10_000: (15.0, 1.0), 30_000: (35.0, 3.0), 100_000: (105.0, 10.0)}.items():
        for stage in scale.STAGES:
            results[(n, stage)] = r(t, d)
    lines = scale.growth(results, [100_000, 10_000, 30_000])
    assert lines[0] == "split: from 10,000 to 100,000 images, time x7.00, data/ x10.00 (linear: x10.00)"
    assert lines[1] == ("split: each further 1,000 images 10,000->30,000: 1.00 s, 102.4 MiB of data/, "
                        "30,000->100,000: 1.00 s, 102.4 MiB of data/")
    assert len(lines) == 2 * len(scale.STAGES)
    assert scale.growth(results, [10_000]) == []
