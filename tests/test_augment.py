import numpy as np
import pytest

from goodfit.augment import (Augmenter, augment_image_batch, gallery_indices, gallery_variants,
                             image_transform_params, write_augmented)
from goodfit.errors import GoodfitError
from goodfit.io import read_npz
from goodfit.params import AugmentParams, ImageAugmentParams, SeriesAugmentParams


def images(n=12, size=8, seed=0):
    return np.random.default_rng(seed).random((n, 1, size, size), dtype=np.float32)


@pytest.mark.parametrize("modality, shape", [("image", (10, 1, 8, 8)), ("timeseries", (10, 2, 40)),
                                             ("tabular", (10, 5))])
def test_same_output_whatever_the_chunk_size(modality, shape):
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    aug = Augmenter(modality=modality, cfg=AugmentParams(), seed=3, train_std=np.ones(shape[1]), clip=(0, 1))
    full = np.concatenate(list(aug.iter_chunks(x, copies=3, chunk_size=100)))
    for chunk in (1, 3, 7):
        assert np.array_equal(np.concatenate(list(aug.iter_chunks(x, copies=3, chunk_size=chunk))), full)


def test_sample_does_not_depend_on_its_batch_mates():
    x = images(20)
    cfg = ImageAugmentParams()
    alone = augment_image_batch(x[5:6], np.array([5]), 2, cfg, 9, (0, 1))
    together = augment_image_batch(x, np.arange(20), 2, cfg, 9, (0, 1))
    assert np.array_equal(alone[0], together[5])


def test_originals_come_first_and_copies_differ():
    x = images(6)
    aug = Augmenter(modality="image", cfg=AugmentParams(), seed=0, train_std=[1.0], clip=(0, 1))
    out = np.concatenate(list(aug.iter_chunks(x, copies=2, chunk_size=4)))
    assert out.shape == (18, 1, 8, 8)
    assert np.array_equal(out[:6], x)
    assert not np.allclose(out[6:12], x)
    assert not np.allclose(out[6:12], out[12:18])


def test_seed_changes_result():
    x = images(4)
    cfg = ImageAugmentParams()
    a = augment_image_batch(x, np.arange(4), 1, cfg, 1, (0, 1))
    b = augment_image_batch(x, np.arange(4), 1, cfg, 2, (0, 1))
    assert not np.allclose(a, b)


def test_identity_config_is_identity():
    cfg = ImageAugmentParams(rotation=0, translate=0, scale_min=1, scale_max=1, brightness=0, contrast=0,
                             hflip=0, blur_p=0)
    x = images(5)
    out = augment_image_batch(x, np.arange(5), 1, cfg, 0, (0, 1))
    np.testing.assert_allclose(out, x, atol=1e-5)


def test_flip_always_mirrors():
    cfg = ImageAugmentParams(rotation=0, translate=0, scale_min=1, scale_max=1, brightness=0, contrast=0,
                             hflip=1.0, blur_p=0)
    x = images(3)
    out = augment_image_batch(x, np.arange(3), 1, cfg, 0, (0, 1))
    np.testing.assert_allclose(out, x[..., ::-1], atol=1e-5)


def test_transform_parameters_match_configured_ranges():
    cfg = ImageAugmentParams(rotation=15, translate=0.1, scale_min=0.9, scale_max=1.1, brightness=0.2,
                             contrast=0.2, hflip=0.3, blur_p=0.2)
    p = image_transform_params(cfg, 0, np.arange(20000), 1)
    assert p["angle"].min() >= -15 and p["angle"].max() <= 15
    assert abs(p["angle"].mean()) < 0.3 and p["angle"].std() == pytest.approx(15 / np.sqrt(3), rel=0.03)
    assert p["tx"].min() >= -0.1 and p["tx"].max() <= 0.1
    assert p["scale"].min() >= 0.9 and p["scale"].max() <= 1.1
    assert p["flip"].mean() == pytest.approx(0.3, abs=0.015)
    assert (p["sigma"] > 0).mean() == pytest.approx(0.2, abs=0.015)
    assert p["brightness"].min() >= 0.8 and p["brightness"].max() <= 1.2


def test_rotation_moves_mass_around_the_centre():
    # A bright dot right of centre ends up above/below it after a 90 degree rotation.
    cfg = ImageAugmentParams(rotation=90, translate=0, scale_min=1, scale_max=1, brightness=0, contrast=0,
                             hflip=0, blur_p=0)
    x = np.zeros((1, 1, 9, 9), dtype=np.float32)
    x[0, 0, 4, 7] = 1.0
    p = image_transform_params(cfg, 0, np.array([0]), 1)
    out = augment_image_batch(x, np.array([0]), 1, cfg, 0, (0, 1))[0, 0]
    ys, xs = np.nonzero(out > 0.05)
    angle = np.deg2rad(p["angle"][0])
    cy, cx = np.average(ys, weights=out[ys, xs]), np.average(xs, weights=out[ys, xs])
    # Centre of mass stays 3 px from the centre, at the rotated angle.
    assert np.hypot(cy - 4, cx - 4) == pytest.approx(3, abs=0.5)
    assert np.arctan2(-(cy - 4), cx - 4) == pytest.approx(angle, abs=0.2)


def test_series_transforms():
    cfg = SeriesAugmentParams(noise_std=0.0, scale_std=0.0, warp_strength=0.0, mask_p=1.0, mask_fraction=0.25)
    x = np.ones((4, 1, 40), dtype=np.float32)
    aug = Augmenter(modality="timeseries", cfg=AugmentParams(timeseries=cfg), seed=0, train_std=[1.0], clip=(0, 1))
    out = aug.batch(x, np.arange(4), 1)
    assert ((out == 0).sum(axis=2) == 10).all()  # one window of 25 % zeroed per series
    warp = Augmenter(modality="timeseries", seed=0, train_std=[1.0], clip=(0, 1),
                     cfg=AugmentParams(timeseries=SeriesAugmentParams(noise_std=0, scale_std=0, mask_p=0,
                                                                      warp_strength=0.5)))
    ramp = np.linspace(0, 1, 50, dtype=np.float32)[None, None, :].repeat(3, axis=0)
    warped = warp.batch(ramp, np.arange(3), 1)
    assert np.allclose(warped[:, :, 0], 0, atol=1e-6) and np.allclose(warped[:, :, -1], 1, atol=1e-6)
    assert (np.diff(warped, axis=2) >= -1e-6).all()  # a warp keeps time order
    assert not np.allclose(warped, ramp, atol=1e-3)


def test_tabular_jitter_scales_with_feature_std():
    x = np.zeros((5000, 2), dtype=np.float32)
    aug = Augmenter(modality="tabular", cfg=AugmentParams(), seed=0, train_std=[1.0, 10.0], clip=(0, 1))
    out = aug.batch(x, np.arange(5000), 1)
    np.testing.assert_allclose(out.std(axis=0), [0.05, 0.5], rtol=0.05)


def test_write_augmented_streams_originals_and_copies(tmp_path):
    x, y = images(7), np.arange(7) % 3
    aug = Augmenter(modality="image", cfg=AugmentParams(), seed=0, train_std=[1.0], clip=(0, 1))
    rows = write_augmented(tmp_path / "a.npz", x, y, aug, copies=2, chunk_size=3)
    data = read_npz(tmp_path / "a.npz")
    assert rows == 21 and data["x"].shape == (21, 1, 8, 8)
    assert np.array_equal(data["y"], np.tile(y, 3))  # labels preserved
    idx = gallery_indices(y, rows=3)
    variants = gallery_variants(x, idx, aug, 2)
    assert np.array_equal(variants[:, 0], data["x"][7 + idx])  # the gallery shows the materialised copies


def test_unknown_modality():
    with pytest.raises(GoodfitError, match="'modality' parameter must be image, timeseries or tabular"):
        Augmenter(modality="video", cfg=AugmentParams(), seed=0, train_std=[1.0], clip=(0, 1))


def series_augmenter(train_std=(1.0,), **cfg):
    off = dict(noise_std=0.0, scale_std=0.0, warp_strength=0.0, mask_p=0.0)
    return Augmenter(modality="timeseries", cfg=AugmentParams(timeseries=SeriesAugmentParams(**{**off, **cfg})),
                     seed=0, train_std=list(train_std), clip=(0, 1))


def test_series_jitter_and_amplitude_scaling_follow_their_params():
    x = np.ones((4000, 2, 24), dtype=np.float32)
    out = series_augmenter(train_std=(1.0, 3.0), noise_std=0.1).batch(x, np.arange(4000), 1)
    np.testing.assert_allclose((out - x).std(axis=(0, 2)), [0.1, 0.3], rtol=0.03)  # jitter in training-std units
    scaled = series_augmenter(scale_std=0.2).batch(x, np.arange(4000), 1)
    assert np.allclose(scaled, scaled[:, :1, :1])  # one factor per series, for every channel and time step
    assert scaled[:, 0, 0].mean() == pytest.approx(1.0, abs=0.01)
    assert scaled[:, 0, 0].std() == pytest.approx(0.2, rel=0.05)


def test_series_identity_when_every_transform_is_off():
    x = np.random.default_rng(0).normal(size=(5, 1, 30)).astype(np.float32)
    np.testing.assert_allclose(series_augmenter().batch(x, np.arange(5), 1), x, atol=1e-6)
