import numpy as np
import pytest

from goodfit.augment import (Augmenter, augment_image_batch, gallery_indices, gallery_variants,
                             image_transform_params, write_augmented)
from goodfit.errors import GoodfitError
from goodfit.io import open_npz_array, read_npz, write_npz
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


@pytest.mark.parametrize("size", [28, 192])
def test_same_output_whatever_the_block_and_thread_count(size, monkeypatch):
    # 192 px: one image alone is large enough for torch to split its mean over
    # threads, which would change the rounding if it were allowed to.
    import torch

    import goodfit.augment as augment

    monkeypatch.setattr(augment, "BLOCK_VALUES", 2 * size * size)  # 2 images per block: 3 blocks
    n = 5
    x = images(n, size=size, seed=4)
    cfg = ImageAugmentParams(blur_p=0.5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        ref = augment_image_batch(x, np.arange(n), 1, cfg, 5, (0, 1))
        torch.set_num_threads(2)
        assert np.array_equal(augment_image_batch(x, np.arange(n), 1, cfg, 5, (0, 1)), ref)
        assert torch.get_num_threads() == 2  # the caller's setting is restored
        for i in range(n):
            assert np.array_equal(augment_image_batch(x[i:i + 1], np.array([i]), 1, cfg, 5, (0, 1))[0], ref[i])
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 20, 36)])
def test_grid_sample_reads_the_planar_grid_as_it_reads_an_interleaved_copy(mode, shape):
    import torch
    import torch.nn.functional as F

    from goodfit.augment import _affine_theta, _pixel_centres, _sampling_grid, image_transform_params

    b, _, h, w = shape
    p = image_transform_params(ImageAugmentParams(hflip=0.5), 3, np.arange(b), 1)
    theta = torch.from_numpy(_affine_theta(p, h, w).astype(np.float32))
    grid = _sampling_grid(theta, _pixel_centres(w), _pixel_centres(h))
    assert grid.shape == (b, h, w, 2) and not grid.is_contiguous()  # a view of the two coordinate planes
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    args = dict(mode=mode, padding_mode="zeros", align_corners=False)
    assert torch.equal(F.grid_sample(x, grid, **args), F.grid_sample(x, grid.contiguous(), **args))
    # and it is the grid of the affine maps (affine_grid's matmul rounds differently)
    assert torch.allclose(grid, F.affine_grid(theta, [b, shape[1], h, w], align_corners=False), atol=1e-5)


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
    from scipy import stats

    cfg = ImageAugmentParams(rotation=15, translate=0.1, scale_min=0.9, scale_max=1.1, brightness=0.2,
                             contrast=0.2, hflip=0.3, blur_p=0.2, blur_sigma_max=0.8)
    n = 20000
    p = image_transform_params(cfg, 0, np.arange(n), 1)
    uniform = {"angle": (-15, 30), "tx": (-0.1, 0.2), "ty": (-0.1, 0.2), "scale": (0.9, 0.2),
               "brightness": (0.8, 0.4), "contrast": (0.8, 0.4)}  # (low, width), as torchvision draws them
    for name, (low, width) in uniform.items():
        assert low <= p[name].min() and p[name].max() <= low + width, name
        assert stats.kstest(p[name], "uniform", args=(low, width)).pvalue > 1e-3, name
    blurred = p["sigma"] > 0
    assert stats.kstest(p["sigma"][blurred], "uniform", args=(0.1, 0.7)).pvalue > 1e-3
    assert stats.binomtest(int(blurred.sum()), n, 0.2).pvalue > 1e-3
    assert set(np.unique(p["flip"])) == {0.0, 1.0}
    assert stats.binomtest(int(p["flip"].sum()), n, 0.3).pvalue > 1e-3
    # Independent draws: across parameters, and across copies of the same sample (|r| < 5 sd).
    corr = np.corrcoef([p[k] for k in uniform])
    assert np.abs(corr - np.eye(len(uniform))).max() < 5 / np.sqrt(n)
    q = image_transform_params(cfg, 0, np.arange(n), 2)
    assert all(abs(np.corrcoef(p[k], q[k])[0, 1]) < 5 / np.sqrt(n) for k in uniform)


def test_images_move_and_brighten_by_the_drawn_amounts():
    # The realised transform, measured on the images, matches the drawn parameters.
    n, size = 400, 33
    x = np.zeros((n, 1, size, size), dtype=np.float32)
    x[:, :, 14:19, 14:19] = 0.5  # a centred square, far from the border
    still = dict(rotation=0, scale_min=1, scale_max=1, contrast=0, hflip=0, blur_p=0)
    cfg = ImageAugmentParams(translate=0.1, brightness=0.4, **still)
    p = image_transform_params(cfg, 3, np.arange(n), 1)
    out = augment_image_batch(x, np.arange(n), 1, cfg, 3, (0, 1))[:, 0]
    cols = np.arange(size)
    mass = out.sum(axis=(1, 2))
    cx = (out.sum(axis=1) * cols).sum(axis=1) / mass
    cy = (out.sum(axis=2) * cols).sum(axis=1) / mass
    np.testing.assert_allclose(cx - 16, p["tx"] * size, atol=0.05)
    np.testing.assert_allclose(cy - 16, p["ty"] * size, atol=0.05)
    np.testing.assert_allclose(mass / x[0, 0].sum(), p["brightness"], rtol=1e-4)


def test_nearest_interpolation_only_moves_pixels():
    # torchvision's default for RandomRotation / RandomAffine: no new values, only moved ones (or zero fill).
    still = dict(brightness=0, contrast=0, blur_p=0, hflip=0.5)
    x = images(20, size=16)

    def distance_to_nearest_input_value(out):  # per image, the largest distance of an output value to the input's
        values = [np.append(x[i].ravel(), 0.0) for i in range(len(x))]
        return np.array([np.abs(out[i].ravel()[:, None] - values[i][None, :]).min(axis=1).max()
                         for i in range(len(x))])

    nearest = augment_image_batch(x, np.arange(20), 1, ImageAugmentParams(interpolation="nearest", **still), 0, (0, 1))
    assert distance_to_nearest_input_value(nearest).max() < 1e-6 and not np.array_equal(nearest, x)
    bilinear = augment_image_batch(x, np.arange(20), 1, ImageAugmentParams(**still), 0, (0, 1))
    assert (distance_to_nearest_input_value(bilinear) > 1e-3).all()


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
    # Reading the input from disk chunk by chunk gives the same file.
    write_npz(tmp_path / "in.npz", x=x, y=y)
    on_disk = open_npz_array(tmp_path / "in.npz", "x")
    write_augmented(tmp_path / "b.npz", on_disk, y, aug, copies=2, chunk_size=3)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert rows == 21 and data["x"].shape == (21, 1, 8, 8)
    assert np.array_equal(data["x"], np.concatenate(list(aug.iter_chunks(x, 2, chunk_size=3))))
    assert np.array_equal(data["y"], np.tile(y, 3))  # labels preserved
    idx = gallery_indices(y, rows=3)
    variants = gallery_variants(x, idx, aug, 2)
    assert np.array_equal(variants[:, 0], data["x"][7 + idx])  # the gallery shows the materialised copies


@pytest.mark.parametrize("modality, shape", [("image", (6, 1, 8, 8)), ("tabular", (6, 3))])
def test_batch_writes_into_a_given_array(modality, shape):
    x = np.random.default_rng(2).random(shape, dtype=np.float32)
    aug = Augmenter(modality=modality, cfg=AugmentParams(), seed=0, train_std=np.ones(shape[1]), clip=(0, 1))
    big = np.zeros((10, *shape[1:]), dtype=np.float32)
    got = aug.batch(x, np.arange(6), 1, out=big[2:8])
    assert np.shares_memory(got, big) and np.array_equal(big[2:8], aug.batch(x, np.arange(6), 1))
    with pytest.raises(GoodfitError, match="'out' array must be a writable C-contiguous float32 array"):
        aug.batch(x, np.arange(6), 1, out=np.zeros(shape, dtype=np.float64))


def test_unknown_modality():
    with pytest.raises(GoodfitError, match="'modality' parameter must be image, timeseries or tabular"):
        Augmenter(modality="video", cfg=AugmentParams(), seed=0, train_std=[1.0], clip=(0, 1))


def series_augmenter(train_std=(1.0,), seed=0, **cfg):
    off = dict(noise_std=0.0, scale_std=0.0, warp_strength=0.0, mask_p=0.0)
    return Augmenter(modality="timeseries", cfg=AugmentParams(timeseries=SeriesAugmentParams(**{**off, **cfg})),
                     seed=seed, train_std=list(train_std), clip=(0, 1))


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


# ------------------------------------------------ the draws, pinned across versions
# An augmented set is a pure function of (seed, sample, copy, parameter stream): the stream ids in
# goodfit.augment are fixed forever so that the same params reproduce the same data (and dvc.lock
# hashes) in every later version. These values were computed once; a change that alters them alters
# every user's augmented data, which needs a deliberate decision, not a passing edit.
def test_series_and_tabular_draws_are_the_same_in_every_version():
    ones = np.ones((3, 2, 8), dtype=np.float32)
    amp = series_augmenter((1.0, 1.0), scale_std=0.1, seed=7).batch(ones, np.arange(3), 1)[:, 0, 0]
    np.testing.assert_allclose(amp, [0.82158875, 0.85640728, 1.04232252], rtol=1e-6)
    noise = series_augmenter((1.0, 1.0), noise_std=0.1, seed=7).batch(ones, np.arange(3), 1)[0] - 1
    np.testing.assert_allclose(noise[:, :4], [[0.159415, -0.0227637, 0.0978788, 0.0417562],
                                              [-0.0047656, -0.0316831, -0.1963854, -0.0732992]], atol=2e-7)
    quadratic = (np.linspace(0, 1, 8, dtype=np.float32) ** 2)[None, None].repeat(2, axis=0)
    warped = series_augmenter(warp_strength=0.3, seed=7).batch(quadratic, np.arange(2), 1)[:, 0]
    np.testing.assert_allclose(warped, [[0.0, 0.0164227, 0.0417271, 0.115102, 0.2495674, 0.411969, 0.6480953, 1.0],
                                        [0.0, 0.0195571, 0.0638672, 0.1380209, 0.2480498, 0.3941099, 0.628375, 1.0]],
                               atol=2e-7)
    masked = series_augmenter(mask_p=0.5, mask_fraction=0.25, seed=7).batch(np.ones((8, 1, 8), np.float32),
                                                                           np.arange(8), 1)[:, 0]
    assert [np.flatnonzero(row == 0).tolist() for row in masked] == [[], [3, 4], [], [], [], [6, 7], [1, 2], [5, 6]]
    table = Augmenter(modality="tabular", cfg=AugmentParams(), seed=7, train_std=[1.0, 2.0, 3.0], clip=(0, 1))
    np.testing.assert_allclose(table.batch(np.zeros((2, 3), np.float32), np.arange(2), 1),
                               [[0.0727725, 0.0414951, 0.1300561], [0.0212471, -0.113345, 0.1276979]], atol=2e-7)


def test_image_colour_draws_are_the_same_in_every_version():
    p = image_transform_params(ImageAugmentParams(), 7, np.arange(3), 1)
    np.testing.assert_allclose(p["brightness"], [1.0152922033, 1.0274820025, 0.9054118285], rtol=1e-9)
    np.testing.assert_allclose(p["contrast"], [0.9648803301, 0.9728596844, 0.8464886307], rtol=1e-9)


def test_validation_seed_is_fixed_and_unrelated_to_the_training_seed():
    from goodfit.augment import val_seed

    assert (val_seed(0), val_seed(1)) == (3964924996, 1189033389)  # the same in every version (see above)
    seeds = [val_seed(s) for s in range(200)]
    assert len(set(seeds)) == 200 and all(v != s for s, v in zip(range(200), seeds))


# ------------------------------------------------ series and tables: what each parameter does
@pytest.mark.parametrize("transform", [dict(scale_std=0.2), dict(noise_std=0.1), dict(warp_strength=0.3),
                                       dict(mask_p=0.5, mask_fraction=0.2)])
def test_every_series_transform_depends_on_the_seed_and_the_copy(transform):
    x = np.random.default_rng(1).normal(size=(64, 2, 30)).astype(np.float32)
    first = series_augmenter((1.0, 1.0), seed=0, **transform).batch(x, np.arange(64), 1)
    assert not np.array_equal(first, series_augmenter((1.0, 1.0), seed=1, **transform).batch(x, np.arange(64), 1))
    assert not np.array_equal(first, series_augmenter((1.0, 1.0), seed=0, **transform).batch(x, np.arange(64), 2))


def test_series_jitter_is_independent_across_channels_and_time_steps():
    x = np.zeros((2000, 2, 16), dtype=np.float32)
    noise = series_augmenter((1.0, 1.0), noise_std=1.0).batch(x, np.arange(2000), 1)
    corr = np.corrcoef(noise.reshape(2000, -1), rowvar=False)  # 32 x 32: every (channel, time step) pair
    assert np.abs(corr - np.eye(32)).max() < 5 / np.sqrt(2000)


def test_a_warp_resamples_between_neighbours_and_keeps_both_ends():
    x = np.random.default_rng(3).normal(size=(200, 1, 25)).astype(np.float32)
    warped = series_augmenter(warp_strength=0.5).batch(x, np.arange(200), 1)
    assert np.array_equal(warped[..., 0], x[..., 0]) and np.allclose(warped[..., -1], x[..., -1], atol=1e-6)
    # Linear interpolation between two neighbouring samples: never outside the series' range (an
    # extrapolation past either end would be).
    assert (warped >= x.min(axis=2, keepdims=True) - 1e-6).all()
    assert (warped <= x.max(axis=2, keepdims=True) + 1e-6).all()
    assert not np.allclose(warped, x, atol=1e-3)


def test_warp_strength_sets_how_far_samples_move():
    ramp = np.linspace(0, 1, 50, dtype=np.float32)[None, None, :].repeat(500, axis=0)
    shift = {w: np.abs(series_augmenter(warp_strength=w).batch(ramp, np.arange(500), 1) - ramp).mean()
             for w in (0.05, 0.2, 0.6)}
    # On a ramp the value is the warped position: it moves about in proportion to the strength.
    assert 0 < shift[0.05] < shift[0.2] < shift[0.6]
    assert shift[0.2] / shift[0.05] == pytest.approx(4, rel=0.3)
    one = series_augmenter(warp_strength=0.5, warp_knots=1).batch(ramp, np.arange(500), 1)
    assert not np.allclose(one, ramp, atol=1e-3)  # one knot: a speed that changes linearly over the series


def test_a_series_of_one_time_step_is_left_as_it_is_by_the_warp():
    x = np.full((4, 1, 1), 0.5, dtype=np.float32)
    assert np.array_equal(series_augmenter(warp_strength=0.5).batch(x, np.arange(4), 1), x)


def test_masking_zeroes_one_whole_window_that_can_start_anywhere():
    n, length = 3000, 20
    out = series_augmenter(mask_p=1.0, mask_fraction=0.25).batch(np.ones((n, 1, length), np.float32),
                                                                  np.arange(n), 1)[:, 0]
    zero = out == 0
    assert (zero.sum(axis=1) == 5).all()  # every window lies inside the series, 25 % of it
    starts = zero.argmax(axis=1)
    assert all(zero[i, s:s + 5].all() for i, s in enumerate(starts[:100]))  # one contiguous window
    assert set(starts.tolist()) == set(range(length - 5 + 1))  # every start from 0 to L - width
    assert np.bincount(starts).min() > n / 16 / 2  # roughly uniformly


def test_mask_width_is_at_least_one_step_and_zero_fraction_masks_nothing():
    x = np.ones((50, 1, 40), dtype=np.float32)
    tiny = series_augmenter(mask_p=1.0, mask_fraction=0.01).batch(x, np.arange(50), 1)
    assert ((tiny == 0).sum(axis=2) == 1).all()  # 0.4 steps round to 0: one step is still masked
    assert np.array_equal(series_augmenter(mask_p=1.0, mask_fraction=0.0).batch(x, np.arange(50), 1), x)
    assert np.array_equal(series_augmenter(mask_p=0.0, mask_fraction=0.5).batch(x, np.arange(50), 1), x)
    half = series_augmenter(mask_p=0.3, mask_fraction=0.1).batch(np.ones((4000, 1, 40), np.float32),
                                                                 np.arange(4000), 1)
    assert (half == 0).any(axis=2).mean() == pytest.approx(0.3, abs=0.03)  # mask_p: the share of series masked


@pytest.mark.parametrize("seed, copy", [(1, 1), (0, 2)])
def test_tabular_jitter_depends_on_seed_copy_and_feature(seed, copy):
    x = np.zeros((2000, 4), dtype=np.float32)
    aug = lambda s: Augmenter(modality="tabular", cfg=AugmentParams(), seed=s, train_std=np.ones(4), clip=(0, 1))  # noqa: E731
    first = aug(0).batch(x, np.arange(2000), 1)
    assert not np.array_equal(first, aug(seed).batch(x, np.arange(2000), copy))
    corr = np.corrcoef(first, rowvar=False)  # the features get independent noise
    assert np.abs(corr - np.eye(4)).max() < 5 / np.sqrt(2000)


def test_reused_buffer_holds_one_chunk_at_a_time():
    x = np.random.default_rng(0).normal(size=(10, 2, 12)).astype(np.float32)
    aug = series_augmenter((1.0, 1.0), noise_std=0.1)
    expected = [c.copy() for c in aug.iter_chunks(x, copies=2, chunk_size=4)]
    seen, got = set(), []
    for i, chunk in enumerate(aug.iter_chunks(x, copies=2, chunk_size=4, reuse_buffer=True)):
        got.append(chunk.copy())
        if i >= 3:  # the augmented chunks: all written into one buffer, whose memory stays bounded
            seen.add(chunk.__array_interface__["data"][0])
    assert len(seen) == 1
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))


@pytest.mark.parametrize("modality, shape", [("timeseries", (200, 2, 16)), ("tabular", (200, 2))])
def test_training_std_gives_the_same_bits_as_a_list_or_a_float32_array(modality, shape):
    # meta.json gives the stage a list of floats; a caller of the library may pass np.std of a float32 array.
    x = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    std = np.array([0.7, 1.3], dtype=np.float32)
    cfg = AugmentParams(timeseries=SeriesAugmentParams(noise_std=0.3))
    got = [Augmenter(modality=modality, cfg=cfg, seed=0, train_std=s, clip=(0, 1)).batch(x, np.arange(200), 1)
           for s in (std.tolist(), std)]
    assert np.array_equal(got[0], got[1])
