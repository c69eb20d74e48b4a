"""Where datasets come from.

Every loader returns a :class:`~goodfit.sources.base.Dataset`: float32 features,
int64 labels ``0..K-1``, the modality (image | timeseries | tabular), class names,
and the source's official split when it has one. Later stages only look at the
modality, never at the source name.
"""

from __future__ import annotations

import importlib

from goodfit.errors import GoodfitError
from goodfit.sources.base import Dataset, validate_dataset

# ``data.source`` -> "module:function"; imported on demand so a stage pays only
# for the loader it uses.
LOADERS = {
    "digits": "goodfit.sources.builtin:load_digits",
    "breast_cancer": "goodfit.sources.builtin:load_breast_cancer",
    "medmnist": "goodfit.sources.medmnist:load_medmnist",
    "imagefolder": "goodfit.sources.imagefolder:load_imagefolder",
    "csv": "goodfit.sources.csvfile:load_csv",
    "ucr": "goodfit.sources.ucr:load_ucr",
}


def load_dataset(data_params) -> Dataset:
    """Load and validate the dataset that ``data_params.source`` names.

    Raises:
        GoodfitError: unknown source, unreadable files, or invalid arrays.
    """
    target = LOADERS.get(data_params.source)
    if target is None:
        raise GoodfitError(
            f"params.yaml: data.source {data_params.source!r} is not available; "
            f"choose one of {', '.join(sorted(LOADERS))}."
        )
    module, func = target.split(":")
    loader = getattr(importlib.import_module(module), func)
    return validate_dataset(loader(data_params))


__all__ = ["Dataset", "LOADERS", "load_dataset", "validate_dataset"]
