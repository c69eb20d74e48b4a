"""Saving and loading models: weights plus a plain-value description, never a pickle.

Loading uses ``torch.load(weights_only=True)``, which refuses pickled code.
``torch.save`` to a file embeds the file's name in the archive, so the bytes are
built in memory and written atomically under the final name.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import torch
from torch import nn

from goodfit.errors import GoodfitError
from goodfit.io import atomic_write_bytes
from goodfit.models import build_model

FORMAT = "goodfit-model-1"


def save_model(path: str | os.PathLike, model: nn.Module, spec: dict) -> None:
    """Write ``{"format", "spec", "state_dict"}`` to ``path`` atomically and byte-reproducibly."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "spec": spec, "state_dict": state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_model(path: str | os.PathLike, *, input_shape=None, n_classes: int | None = None) -> tuple[nn.Module, dict]:
    """Load a model saved by :func:`save_model`, in eval mode.

    Args:
        path: the checkpoint.
        input_shape, n_classes: when given, the data the model will see; a model
            trained on other data is refused instead of failing later.

    Raises:
        GoodfitError: the file is missing, is not a goodfit checkpoint, contains
            pickled code, or its weights do not fit the described model (the
            message names the mismatched layer).
    """
    path = Path(path)
    if not path.is_file():
        raise GoodfitError(f"{path} does not exist. Run the train stage first (dvc repro).")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise GoodfitError(
            f"{path} cannot be loaded safely as weights ({str(exc).splitlines()[0][:200]}). goodfit loads with "
            "weights_only=True and refuses pickled code; re-create the checkpoint with the train stage."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, ... for damaged files
        raise GoodfitError(
            f"{path} is not a readable PyTorch checkpoint ({str(exc).splitlines()[0][:200]}); it may be "
            "truncated. Re-create it with the train stage (dvc repro -f train)."
        ) from exc
    if (not isinstance(blob, dict) or blob.get("format") != FORMAT or not isinstance(blob.get("spec"), dict)
            or not isinstance(blob.get("state_dict"), dict)):
        raise GoodfitError(
            f"{path} is not a goodfit checkpoint (expected keys format, spec, state_dict); "
            "re-create it with the train stage."
        )
    spec = blob["spec"]
    wanted = {"input_shape": None if input_shape is None else [int(v) for v in input_shape], "n_classes": n_classes}
    for key, want in wanted.items():
        if want is not None and spec.get(key) != want:
            raise GoodfitError(
                f"{path} was trained for {key} {spec.get(key)}, but the data has {want}; it belongs to another "
                "dataset or split. Re-train it (dvc repro)."
            )
    threshold = spec.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
        raise GoodfitError(f"{path} holds the decision threshold {threshold!r}, which is not a number between 0 and "
                           "1; re-train the model (dvc repro -f train).")
    if "temperature" in spec:  # train.calibration: temperature
        from goodfit.calibration import check_temperature

        check_temperature(spec["temperature"], str(path))
    try:
        model = build_model(spec)
    except (KeyError, TypeError, ValueError) as exc:
        raise GoodfitError(f"{path} describes a model goodfit cannot build ({exc!r}); re-train it.") from exc
    expected = model.state_dict()
    state = blob["state_dict"]
    for name, tensor in expected.items():
        if name not in state:
            raise GoodfitError(f"{path}: the checkpoint has no weights for layer {name!r}; re-train the model.")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise GoodfitError(
                f"{path}: layer {name!r} has shape {tuple(state[name].shape)} in the checkpoint but the model "
                f"expects {tuple(tensor.shape)}; the checkpoint was trained with other settings. Re-train it."
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise GoodfitError(f"{path}: the checkpoint has weights for unknown layer {extra[0]!r}; re-train the model.")
    model.load_state_dict(state)
    model.eval()
    return model, spec
