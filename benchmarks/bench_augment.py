"""Augmentation throughput: goodfit vs torchvision transforms applied image by image.

Reference: the straightforward approach, a torchvision ``Compose`` of
RandomHorizontalFlip, RandomRotation(15), RandomAffine(translate 0.1, scale
0.9-1.1) and ColorJitter(0.2, 0.2) applied to one float32 image tensor at a time
in a Python loop. goodfit: ``Augmenter`` configured with the same transforms
(flip p 0.5, blur off), materialising the copies chunk by chunk as the augment
stage does. Both run in this process, alternately, with the same torch thread
count; the ratio is of images per second, median of the runs.

Two comparisons per size: with torchvision's default resampling (nearest, so
goodfit is set to ``interpolation: nearest``) and with bilinear resampling on
both sides (goodfit's default).

    python benchmarks/bench_augment.py                 # 28 and 128 px, 10 copies of 2,000 images
    python benchmarks/bench_augment.py --sizes 28 --runs 7
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import conditions, fmt_times, interleaved, median  # noqa: E402


def reference_transform(interpolation: str):
    from torchvision import transforms as T

    mode = T.InterpolationMode(interpolation)
    return T.Compose([
        T.RandomHorizontalFlip(),
        T.RandomRotation(15, interpolation=mode),
        T.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.9, 1.1), interpolation=mode),
        T.ColorJitter(brightness=0.2, contrast=0.2),
    ])


def goodfit_augmenter(interpolation: str):
    from goodfit.augment import Augmenter
    from goodfit.params import AugmentParams, ImageAugmentParams

    image = ImageAugmentParams(rotation=15.0, translate=0.1, scale_min=0.9, scale_max=1.1, brightness=0.2,
                               contrast=0.2, hflip=0.5, blur_p=0.0, interpolation=interpolation)
    return Augmenter(modality="image", cfg=AugmentParams(image=image), seed=0, train_std=[1.0], clip=(0.0, 1.0))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[28, 128], help="image sizes in pixels")
    ap.add_argument("--images", type=int, default=2000, help="original images")
    ap.add_argument("--copies", type=int, default=10, help="augmented copies of each image")
    ap.add_argument("--ref-images", type=int, default=4000,
                    help="images the per-image reference augments per run (its cost per image is constant; "
                         "pass images x copies for the whole workload)")
    ap.add_argument("--chunk-size", type=int, default=2048, help="goodfit's augment.chunk_size")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(conditions(args.threads))
    modes = {"nearest": "torchvision's default nearest resampling", "bilinear": "bilinear resampling"}
    lines = []
    for size in args.sizes:
        x = np.random.default_rng(size).random((args.images, 1, size, size), dtype=np.float32)  # (N, 1, H, W)
        xt = torch.from_numpy(x)
        total = args.images * args.copies
        n_ref = min(args.ref_images, total)
        # Both write into output arrays allocated (and touched) once, so the timings
        # measure augmentation, not the allocator's first touch of fresh memory.
        ref_out = torch.zeros((n_ref, 1, size, size))
        gf_out = np.zeros((total, 1, size, size), dtype=np.float32)
        contenders = {}
        for mode in modes:
            ref_t, aug = reference_transform(mode), goodfit_augmenter(mode)

            def reference(_run, ref_t=ref_t):
                for i in range(n_ref):
                    ref_out[i] = ref_t(xt[i % args.images])

            def goodfit(_run, aug=aug):
                for copy in range(1, args.copies + 1):
                    for start in range(0, args.images, args.chunk_size):
                        stop = min(start + args.chunk_size, args.images)
                        row = (copy - 1) * args.images + start
                        aug.batch(x[start:stop], np.arange(start, stop), copy, out=gf_out[row:row + stop - start])

            goodfit(0)  # warm-up: first calls pay one-off set-up costs
            reference(0)
            contenders[f"reference {mode}"], contenders[f"goodfit {mode}"] = reference, goodfit
        times = interleaved(contenders, args.runs)
        for mode, title in modes.items():
            ref, gf = times[f"reference {mode}"], times[f"goodfit {mode}"]
            ref_rate, gf_rate = n_ref / median(ref), total / median(gf)
            print(f"{size}px, {title}: reference (per-image torchvision Compose) {n_ref} images per run "
                  f"{fmt_times(ref)} -> {ref_rate:,.0f} images/s; goodfit Augmenter {args.copies} copies x "
                  f"{args.images} = {total} images per run {fmt_times(gf)} -> {gf_rate:,.0f} images/s")
            lines.append(f"augment {size}px: {gf_rate / ref_rate:.1f}x faster than per-image torchvision "
                         f"({mode} resampling on both; median of {args.runs})")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
