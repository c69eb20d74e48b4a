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
