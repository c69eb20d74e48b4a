"""Label-preserving, seeded, vectorised data augmentation.

Every random draw is a pure function of ``(seed, sample index, copy index, parameter)``
(see :mod:`goodfit.rng`), so an augmented sample is the same whatever the chunk
size, the number of samples or the thread count.

Images: rotation, translation and scale (and an optional horizontal flip) are
composed into one affine matrix per sample and the whole chunk is resampled at
once with ``grid_sample``; brightness / contrast jitter and Gaussian blur follow.
Each operation is element-wise per sample, so batching never changes a result.
The image semantics follow torchvision's RandomRotation, RandomAffine,
ColorJitter, RandomHorizontalFlip and GaussianBlur (resampling is bilinear unless
``interpolation: nearest``, torchvision's default, is asked for).

Time series: amplitude scaling, smooth time warping, additive noise (jitter)
and masking of a random window.

Tables: Gaussian jitter scaled by each feature's training standard deviation.
"""

from __future__ import annotations

import contextlib
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from goodfit import rng, storage
from goodfit.errors import GoodfitError

# Parameter stream ids: fixed forever, so results stay reproducible across versions.
_ANGLE, _TX, _TY, _SCALE, _FLIP, _BRIGHT, _CONTRAST, _BLUR, _SIGMA = range(9)
_AMP, _WARP, _NOISE, _MASK_ON, _MASK_AT = range(10, 15)
_JITTER = 20


# ----------------------------------------------------------------- images
def image_transform_params(cfg, seed: int, idx: np.ndarray, copy: int) -> dict[str, np.ndarray]:
    """Per-sample transform parameters for samples ``idx`` and augmented copy ``copy`` (>= 1).

    Returns a dict of float64 arrays of shape ``(len(idx),)``: angle (degrees),
    tx, ty (fractions of width/height), scale, flip (0/1), brightness and
    contrast factors, blur sigma (0 means no blur).
    """
    u = lambda stream: rng.uniform(seed, idx, copy, stream)  # noqa: E731
    blur_on = u(_BLUR) < cfg.blur_p
    return {
        "angle": (2 * u(_ANGLE) - 1) * cfg.rotation,
        "tx": (2 * u(_TX) - 1) * cfg.translate,
        "ty": (2 * u(_TY) - 1) * cfg.translate,
        "scale": cfg.scale_min + u(_SCALE) * (cfg.scale_max - cfg.scale_min),
        "flip": (u(_FLIP) < cfg.hflip).astype(np.float64),
        "brightness": 1 + (2 * u(_BRIGHT) - 1) * cfg.brightness,
        "contrast": 1 + (2 * u(_CONTRAST) - 1) * cfg.contrast,
        "sigma": np.where(blur_on, 0.1 + u(_SIGMA) * (cfg.blur_sigma_max - 0.1), 0.0),
    }


def _affine_theta(p: dict[str, np.ndarray], h: int, w: int) -> np.ndarray:
    """Inverse affine maps (output -> input) in grid_sample's normalised coordinates, ``(B, 2, 3)``."""
    # Positive angles turn the image counter-clockwise on screen, as in torchvision
    # (pixel rows grow downwards, hence the minus sign).
    a = -np.deg2rad(p["angle"])
    cos, sin = np.cos(a), np.sin(a)
    f = 1 - 2 * p["flip"]  # -1 flips x
    s = p["scale"]
    # In pixel units centred on the image: p_in = F R(-a) (p_out - T) / s.
    m00, m01 = f * cos / s, f * sin / s
    m10, m11 = -sin / s, cos / s
    tx, ty = p["tx"] * w, p["ty"] * h
    # Normalised coords n = D^-1 p with D = diag(w/2, h/2).
    theta = np.empty((len(s), 2, 3))
    theta[:, 0, 0] = m00
    theta[:, 0, 1] = m01 * h / w
    theta[:, 1, 0] = m10 * w / h
    theta[:, 1, 1] = m11
    theta[:, 0, 2] = -(m00 * tx + m01 * ty) * 2 / w
    theta[:, 1, 2] = -(m10 * tx + m11 * ty) * 2 / h
    return theta


def _blur(x: torch.Tensor, sigma: np.ndarray, k: int) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma; sigma 0 leaves a sample unchanged.

    A sum of shifted copies (not a grouped convolution) so each output element is
    computed the same way whatever the batch size.
    """
    r = k // 2
    t = np.arange(-r, r + 1, dtype=np.float64)
    safe = np.where(sigma > 0, sigma, 1.0)[:, None]
    wts = np.exp(-(t[None, :] ** 2) / (2 * safe**2))
    wts /= wts.sum(axis=1, keepdims=True)
    wts[sigma <= 0] = (t == 0).astype(np.float64)
    wt = torch.from_numpy(wts.astype(np.float32))[:, :, None, None, None]  # (B, k, 1, 1, 1)
    _, _, h, w = x.shape
    xp = F.pad(x, (r, r, 0, 0), mode="reflect")
    x = sum(wt[:, j] * xp[..., :, j:j + w] for j in range(k))
    xp = F.pad(x, (0, 0, r, r), mode="reflect")
    return sum(wt[:, j] * xp[..., j:j + h, :] for j in range(k))


def _pixel_centres(n: int) -> torch.Tensor:
    """Pixel centres in grid_sample's normalised coordinates (align_corners=False), ``(n,)``."""
    return (torch.arange(n, dtype=torch.float32) * 2 + 1) / n - 1


def _sampling_grid(theta: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """The sampling grid ``(B, H, W, 2)`` of the affine maps ``theta`` ``(B, 2, 3)``.

    Built element-wise, not with ``affine_grid`` (a batched matmul whose kernel and
    rounding can depend on the batch size). Each coordinate plane is written
    contiguously and the grid is a permuted view of the two planes: ``grid_sample``
    reads a grid through its strides, with the same result bit for bit as from an
    interleaved copy (test), so no pass is spent interleaving.
    """
    b, h, w = len(theta), len(ys), len(xs)
    planes = torch.empty((b, 2, h, w))
    for k in range(2):
        torch.add(theta[:, k, 0, None, None] * xs[None, None, :], theta[:, k, 1, None, None] * ys[None, :, None],
                  out=planes[:, k])
    planes.add_(theta[:, :, 2, None, None])
    return planes.permute(0, 2, 3, 1)


def _augment_image_block(x: torch.Tensor, out: torch.Tensor, theta: torch.Tensor, bright: torch.Tensor,
                         contrast: torch.Tensor, sigma: np.ndarray, *, centres: tuple[torch.Tensor, torch.Tensor],
                         mode: str, blur_k: int, clip: tuple[float, float]) -> None:
    """Augment one block of images ``x`` ``(B, C, H, W)`` into ``out`` (same shape), in place."""
    grid = _sampling_grid(theta, *centres)
    resampled = F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
    lo, hi = clip
    # ColorJitter: brightness, then contrast around each image's mean, clamped to the data's range.
    torch.mul(resampled, bright[:, None, None, None], out=out).clamp_(lo, hi)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out.sub_(mean).mul_(contrast[:, None, None, None]).add_(mean).clamp_(lo, hi)
    blurred = np.flatnonzero(sigma > 0)
    if blur_k >= 3 and len(blurred):
        sel = torch.from_numpy(blurred)
        out[sel] = _blur(out[sel], sigma[blurred], blur_k)


# Images are augmented in blocks of about this many values. A block's input, grid
# and output then stay in the CPU cache, several times faster than whole-chunk
# tensor ops; every operation is per sample, so the block size never changes a result.
BLOCK_VALUES = 1 << 18


@contextlib.contextmanager
def _serial_torch_ops() -> Iterator[int]:
    """Run torch ops single-threaded inside; yields the thread count that was set.

    Blocks are spread over that many Python threads instead (torch ops release the
    GIL): each reduction then runs in one fixed order, so the thread count never
    changes a result, and idle cores pick up work when others are busy.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)


def augment_image_batch(x: np.ndarray, idx: np.ndarray, copy: int, cfg, seed: int,
                        clip: tuple[float, float], out: np.ndarray | None = None) -> np.ndarray:
    """Augment images ``x`` ``(B, C, H, W)`` whose global sample indices are ``idx``.

    Args:
        x: float32 images.
        idx: int64 global indices (they, not positions in the batch, seed the draws).
        copy: the augmented copy number (>= 1).
        cfg: :class:`goodfit.params.ImageAugmentParams`.
        seed: the augmentation seed.
        clip: value range to clamp to after colour jitter (the training data's range).
        out: a C-contiguous float32 array shaped like ``x`` to write into (a new one if
            ``None``): reusing memory spares the page faults of a fresh allocation.

    Returns:
        ``out``. Uses ``torch.get_num_threads()`` threads.
    """
    b, c, h, w = x.shape
    p = image_transform_params(cfg, seed, idx, copy)
    theta = torch.from_numpy(_affine_theta(p, h, w).astype(np.float32))
    bright = torch.from_numpy(p["brightness"].astype(np.float32))
    contrast = torch.from_numpy(p["contrast"].astype(np.float32))
    blur_k = min(2 * math.ceil(2 * cfg.blur_sigma_max) + 1, 2 * ((min(h, w) - 1) // 2) + 1)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    out = _output_array(out, x.shape)
    ot = torch.from_numpy(out)
    step = max(1, BLOCK_VALUES // (c * h * w))
    centres = (_pixel_centres(w), _pixel_centres(h))

    def block(start: int) -> None:
        s = slice(start, start + step)
        _augment_image_block(xt[s], ot[s], theta[s], bright[s], contrast[s], p["sigma"][s], centres=centres,
                             mode=cfg.interpolation, blur_k=blur_k, clip=clip)

    with _serial_torch_ops() as threads:
        starts = range(0, b, step)
        if threads == 1 or len(starts) == 1:
            for start in starts:
                block(start)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(block, starts))
    return out


def _output_array(out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if out.shape != tuple(shape) or out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable:
        raise GoodfitError(f"The 'out' array must be a writable C-contiguous float32 array of shape {tuple(shape)}, "
                           f"got {out.dtype} {out.shape}; pass a slice along the first axis of such an array.")
    return out


# ------------------------------------------------------------ time series
def augment_series_batch(x: np.ndarray, idx: np.ndarray, copy: int, cfg, seed: int,
                         noise_scale: np.ndarray) -> np.ndarray:
    """Augment series ``x`` ``(B, C, L)``: scaling, time warp, jitter, masking.

    Args:
        noise_scale: per-channel training standard deviation ``(C,)``; jitter is
            ``cfg.noise_std`` times it.
    """
    b, c, length = x.shape
    col = idx[:, None]
    amp = 1 + cfg.scale_std * rng.normal(seed, col, copy, _AMP)  # (B, 1)
    out = x.astype(np.float64) * amp[:, :, None]
    if cfg.warp_strength > 0 and length > 1:
        knots = np.arange(cfg.warp_knots + 1)[None, :]
        speed = np.clip(1 + cfg.warp_strength * rng.normal(seed, col, copy, _WARP, knots), 0.1, None)
        # Smooth speed curve over time, integrated to warped positions in [0, L-1].
        grid = np.linspace(0, cfg.warp_knots, length)
        lo = np.minimum(np.floor(grid).astype(int), cfg.warp_knots - 1) if cfg.warp_knots > 0 else 0
        frac = grid - lo
        v = speed[:, lo] * (1 - frac) + speed[:, np.minimum(lo + 1, cfg.warp_knots)] * frac  # (B, L)
        pos = np.cumsum(v, axis=1) - v[:, :1]
        pos = pos / pos[:, -1:] * (length - 1)
        i0 = np.clip(np.floor(pos).astype(np.int64), 0, length - 2)
        f = (pos - i0)[:, None, :]
        i0 = np.broadcast_to(i0[:, None, :], out.shape)
        out = np.take_along_axis(out, i0, axis=2) * (1 - f) + np.take_along_axis(out, i0 + 1, axis=2) * f
    if cfg.noise_std > 0:
        t = np.arange(length)[None, None, :]
        ch = np.arange(c)[None, :, None]
        out = out + cfg.noise_std * noise_scale[None, :, None] * rng.normal(seed, idx[:, None, None], copy, _NOISE, ch, t)
    if cfg.mask_p > 0 and cfg.mask_fraction > 0:
        width = max(1, int(round(cfg.mask_fraction * length)))
        on = rng.uniform(seed, idx, copy, _MASK_ON) < cfg.mask_p
        start = np.floor(rng.uniform(seed, idx, copy, _MASK_AT) * (length - width + 1)).astype(np.int64)
        t = np.arange(length)[None, :]
        window = on[:, None] & (t >= start[:, None]) & (t < start[:, None] + width)
        out = np.where(window[:, None, :], 0.0, out)
    return out.astype(np.float32)


# ----------------------------------------------------------------- tables
def augment_tabular_batch(x: np.ndarray, idx: np.ndarray, copy: int, cfg, seed: int,
                          feature_std: np.ndarray) -> np.ndarray:
    """Gaussian jitter ``x + noise_scale * std_f * N(0, 1)`` for tables ``(B, F)``."""
    f = np.arange(x.shape[1])[None, :]
    noise = rng.normal(seed, idx[:, None], copy, _JITTER, f)
    return (x + cfg.noise_scale * feature_std[None, :] * noise).astype(np.float32)


# ------------------------------------------------------------------ driver
class Augmenter:
    """Augments one modality with the configured transforms.

    Args:
        modality: ``image``, ``timeseries`` or ``tabular`` (from meta.json).
        cfg: :class:`goodfit.params.AugmentParams`.
        seed: the augmentation seed.
        train_std: per-channel / per-feature training standard deviation.
        clip: value range of the training data (images are clamped to it).
    """

    def __init__(self, *, modality: str, cfg, seed: int, train_std, clip: tuple[float, float]):
        if modality not in ("image", "timeseries", "tabular"):
            raise GoodfitError(f"The 'modality' parameter must be image, timeseries or tabular, got {modality!r}.")
        self.modality = modality
        self.cfg = cfg
        self.seed = int(seed)
        self.std = np.asarray(train_std, dtype=np.float64)
        self.clip = (float(clip[0]), float(clip[1]))

    def batch(self, x: np.ndarray, idx: np.ndarray, copy: int, out: np.ndarray | None = None) -> np.ndarray:
        """Augmented copy ``copy`` (>= 1) of the samples ``x`` with global indices ``idx``.

        ``out``: optional C-contiguous float32 array shaped like ``x`` to write into.
        """
        idx = np.asarray(idx, dtype=np.int64)
        if self.modality == "image":
            return augment_image_batch(x, idx, copy, self.cfg.image, self.seed, self.clip, out=out)
        if self.modality == "timeseries":
            result = augment_series_batch(x, idx, copy, self.cfg.timeseries, self.seed, self.std)
        else:
            result = augment_tabular_batch(x, idx, copy, self.cfg.tabular, self.seed, self.std)
        if out is None:
            return result
        out = _output_array(out, result.shape)
        out[...] = result
        return out

    def iter_chunks(self, x, copies: int, chunk_size: int, *, reuse_buffer: bool = False) -> Iterator[np.ndarray]:
        """Yield the augmented set in order: all originals, then copy 1 of every sample, then copy 2, ...

        ``x`` is an array or a :class:`goodfit.io.NpzArray` (rows read from disk per
        chunk), so memory stays bounded by ``chunk_size`` samples at a time; stored
        features (uint8 levels, float16) are decoded per chunk and chunks are float32.
        ``reuse_buffer``: augmented chunks are written into one buffer, each valid
        only until the next is requested (for consumers that write chunks out).
        """
        n = len(x)
        buffer = None
        for copy in range(copies + 1):
            for start in range(0, n, chunk_size):
                chunk = storage.to_float32(x[start:start + chunk_size])
                if copy == 0:
                    yield chunk
                    continue
                if reuse_buffer and buffer is None:
                    buffer = np.empty((min(chunk_size, n), *x.shape[1:]), dtype=np.float32)
                out = buffer[:len(chunk)] if reuse_buffer else None
                yield self.batch(chunk, np.arange(start, start + len(chunk)), copy, out=out)


def val_seed(seed: int) -> int:
    """The augmentation seed of the validation split (``train.folds > 1``): unrelated to the
    training split's, so sample i of the two splits is not transformed alike."""
    return int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0])


def write_augmented(path, x, y: np.ndarray, augmenter: Augmenter, *, copies: int,
                    chunk_size: int) -> int:
    """Write the originals plus ``copies`` augmented copies of ``x`` to ``path`` (``.npz``: x, y).

    Rows are streamed to disk chunk by chunk, so memory stays bounded for large inputs.
    They are stored as ``x`` is (:mod:`goodfit.storage`): augmented 8-bit images are
    rounded to the nearest level.

    Returns:
        The number of rows written, ``len(x) * (copies + 1)``.
    """
    from goodfit.io import write_npz_streamed

    total = len(x) * (copies + 1)
    dtype = storage.dtype_name(x)
    chunks = (storage.encode(c, dtype) for c in augmenter.iter_chunks(x, copies, chunk_size, reuse_buffer=True))
    write_npz_streamed(path, {"y": np.tile(np.asarray(y, dtype=np.int64), copies + 1)},
                       {"x": ((total, *x.shape[1:]), chunks, dtype)})
    return total


def gallery_indices(y: np.ndarray, rows: int = 4) -> np.ndarray:
    """The first sample of each of up to ``rows`` classes (then further samples if fewer classes)."""
    first = [int(np.flatnonzero(y == c)[0]) for c in np.unique(y)][:rows]
    rest = [i for i in range(len(y)) if i not in first][: max(0, rows - len(first))]
    return np.array(sorted(first + rest), dtype=np.int64)


def gallery_variants(x: np.ndarray, idx: np.ndarray, augmenter: Augmenter, n_variants: int) -> np.ndarray:
    """The first ``n_variants`` augmented copies of samples ``idx``: ``(R, V, ...)``, float32.

    They are exactly the copies materialised in the augmented training set (rounded as
    that file stores them, :func:`write_augmented`).
    """
    dtype = storage.dtype_name(x)
    rows = storage.to_float32(x[idx])
    return np.stack([storage.to_float32(storage.encode(augmenter.batch(rows, idx, c), dtype))
                     for c in range(1, n_variants + 1)], axis=1)
