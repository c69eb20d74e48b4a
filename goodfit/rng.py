"""Counter-based random numbers: a pure function of (seed, indices).

Written by hand rather than drawn from ``numpy.random.Generator`` because the
value for sample ``i``, copy ``c`` must not depend on how many samples there are,
on the chunk it is processed in, or on the thread count; a stateful generator
would need one generator per sample (slow) to give that guarantee, while this
hash is vectorised over any array of indices. The mixer is SplitMix64's
finaliser (Steele et al. 2014), which passes BigCrush as a counter-based generator.
"""

from __future__ import annotations

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = z + _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def counter_bits(seed: int, *indices) -> np.ndarray:
    """64 random bits for every combination of broadcast ``indices`` under ``seed``."""
    h = _mix(np.asarray(seed, dtype=np.uint64))
    for idx in indices:
        h = _mix(h ^ np.asarray(idx, dtype=np.uint64))
    return h


def uniform(seed: int, *indices) -> np.ndarray:
    """Uniform floats in [0, 1), float64, shaped like the broadcast of ``indices``."""
    return (counter_bits(seed, *indices) >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def normal(seed: int, *indices) -> np.ndarray:
    """Standard normal floats (Box-Muller on two independent counter streams)."""
    u1 = uniform(seed, *indices, 0)
    u2 = uniform(seed, *indices, 1)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
