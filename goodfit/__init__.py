"""goodfit: train models that neither overfit nor underfit, reproducibly."""

from goodfit.errors import GoodfitError

__all__ = ["GoodfitError"]
__version__ = "0.1.0"
