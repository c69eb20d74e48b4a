"""Portable numerics: the same bits on every x86-64 CPU with AVX2 + FMA (``repro.portable``).

PyTorch and numpy choose their CPU kernels by instruction set when they first run
one: ATen's vectorised kernels (element-wise ops, reductions, pooling, the fused
Adam step) by its "CPU capability", oneDNN (convolutions) by the widest ISA it
finds, MKL (matrix products) by a code branch per CPU model and vendor, numpy by
its dispatch targets. Each sums floating-point numbers in its own order, so an
AVX-512 machine and an AVX2 machine train different models from the same seed.

:func:`pin` fixes each of them to a baseline every x86-64 CPU of the last decade has,
through the environment variables the libraries read at start-up. It must run
before torch or numpy is imported: every stage script calls it first (via
``stages/_goodfit.py``), which is why this module imports neither at module level.

What each setting changed, measured on an Intel Xeon with AVX-512 (benchmarks/README):
ATen's capability, oneDNN's ISA and MKL's branch each changed the trained model's
bits; numpy's dispatch and OpenBLAS's core type changed no output of the pipeline,
and are pinned all the same because sklearn's metrics and numpy's reductions run
through them on data other than the default.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping

PORTABLE_ENV: Mapping[str, str] = {
    # ATen: the AVX2 builds of its vectorised kernels, never the AVX-512 ones.
    "ATEN_CPU_CAPABILITY": "avx2",
    # oneDNN (convolutions, pooling through mkldnn): at most AVX2 JIT kernels. Both names: oneDNN 3 reads the
    # first, older releases the second.
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    # MKL (sgemm behind nn.Linear and the convolutions' matrix products): conditional numerical
    # reproducibility. MKL honours a named branch such as AVX2 on Intel CPUs only and falls back to its
    # automatic dispatch on AMD; COMPATIBLE is the one branch it keeps on every vendor's CPU.
    "MKL_CBWR": "COMPATIBLE",
    # numpy: no AVX-512 dispatch targets (X86_V4 is numpy 2's AVX-512 group; AVX512_ICL and AVX512_SPR lie
    # beyond it). Names a CPU lacks are ignored.
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    # OpenBLAS (numpy's and scipy's BLAS): the Haswell kernels, which every AVX2 CPU runs.
    "OPENBLAS_CORETYPE": "Haswell",
}

_LIBRARIES = ("torch", "numpy")


def portable_from_params(path: str | Path = "params.yaml") -> bool:
    """``repro.portable`` from a params file, ``True`` when absent or unreadable.

    Forgiving on purpose: it runs before the params are validated, and a malformed
    file is reported by :func:`goodfit.params.load_params` with its line and column.
    """
    try:
        import yaml

        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        value = raw["repro"]["portable"]
    except Exception:  # noqa: BLE001 - any problem is reported later, by the params loader
        return True
    return value if isinstance(value, bool) else True


def pin(portable: bool, environ: dict | None = None) -> dict[str, str]:
    """Set the environment so torch and numpy use portable kernels; ``portable=False`` leaves it alone.

    Args:
        portable: pin the kernels (``repro.portable``).
        environ: the environment to change (default ``os.environ``).

    Returns:
        The variables that were set (empty when ``portable`` is false).

    Raises:
        GoodfitError: torch or numpy was imported before, so the pin could not take effect.
    """
    if not portable:
        return {}
    env = os.environ if environ is None else environ
    if environ is None:
        loaded = [m for m in _LIBRARIES if m in sys.modules]
        if loaded and any(env.get(k) != v for k, v in PORTABLE_ENV.items()):
            from goodfit.errors import GoodfitError

            raise GoodfitError(
                f"repro.portable is true but {' and '.join(loaded)} was imported before goodfit.numerics.pin() "
                "ran, so its CPU kernels are already chosen. Call pin() first (stage scripts do, through "
                "stages/_goodfit.py), or set these variables before starting Python: "
                + " ".join(f"{k}={v!r}" for k, v in PORTABLE_ENV.items()))
    env.update(PORTABLE_ENV)
    return dict(PORTABLE_ENV)


def pin_for_stage(argv: list[str]) -> dict[str, str]:
    """:func:`pin` as ``repro.portable`` in the stage's params file (``--params``, default params.yaml) says."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--params", default="params.yaml")
    known, _ = parser.parse_known_args(argv)
    return pin(portable_from_params(known.params))


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of x86 bfloat16 units


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo`` (or the text given), ``None`` where there is none."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):  # x86 | Arm
            return set(line.split(":", 1)[1].split())
    return None


def bfloat16_cpu_problem(flags: set[str] | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """Why bfloat16 autocast would train slowly on this CPU, or ``None`` when nothing says so.

    On an x86 CPU without bfloat16 units (flags ``avx512_bf16`` / ``amx_bf16``), or with
    oneDNN capped below AVX-512 (``ONEDNN_MAX_CPU_ISA``, as portable numerics set it),
    PyTorch emulates bfloat16 convolutions and matrix products. On an AMD EPYC with
    AVX512-BF16 (one thread, a 28 x 28 CNN of 16 and 32 channels, batch 64, Adam) a
    bfloat16 step took 9.4 ms against 10.5 ms in float32, and 59 ms against 12 ms with
    oneDNN capped at AVX2; on an AMD EPYC without bfloat16 units the CNN's convolutions
    and pooling took ten times their float32 time (``benchmarks/bench_cnn_floor.py``).

    Args:
        flags: the CPU's flags (default: :func:`cpu_flags`); ``None`` where they cannot be read.
        environ: the environment (default ``os.environ``).
    """
    flags = cpu_flags() if flags is None else flags
    env = os.environ if environ is None else environ
    if flags is not None and "sse2" in flags and not flags.intersection(BFLOAT16_FLAGS):  # an x86 CPU
        return "this CPU has no bfloat16 units (its flags have neither avx512_bf16 nor amx_bf16)"
    cap = env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA")
    if cap and not cap.upper().startswith(("AVX512", "AVX10", "ALL", "DEFAULT")):
        return (f"oneDNN is capped at {cap} (ONEDNN_MAX_CPU_ISA; repro.portable: true sets it), whose kernels "
                "have no bfloat16 units")
    return None


def describe(portable: bool) -> dict[str, str]:
    """What the kernels run on, as MLflow tags (never written into a DVC output).

    Imports torch and numpy, so call it after :func:`pin`.
    """
    import numpy
    import torch

    try:  # numpy 2: the dispatch targets it was built with, and which of them this process may use
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
        targets = [t for t in __cpu_dispatch__ if __cpu_features__.get(t)]
    except ImportError:  # pragma: no cover - numpy 1
        targets = []
    return {
        "goodfit.numerics.portable": str(portable).lower(),
        "goodfit.numerics.cpu": cpu_model(),
        "goodfit.numerics.aten_capability": torch.backends.cpu.get_cpu_capability(),
        "goodfit.numerics.onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL (default)"),
        "goodfit.numerics.mkl_cbwr": os.environ.get("MKL_CBWR", "OFF (default)"),
        "goodfit.numerics.numpy_disabled": os.environ.get("NPY_DISABLE_CPU_FEATURES", "none"),
        "goodfit.numerics.numpy_dispatch": ",".join(targets) or "baseline only",
        "goodfit.numerics.torch": torch.__version__,
        "goodfit.numerics.numpy": numpy.__version__,
    }
