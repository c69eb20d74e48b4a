import io
import pickle

import pytest
import torch

from goodfit.checkpoint import load_model, save_model
from goodfit.errors import GoodfitError
from goodfit.models import build_model, model_spec


def spec(hidden=(8,)):
    return model_spec(kind="mlp", modality="tabular", input_shape=[3], n_classes=2, hidden=list(hidden),
                      channels=[4], dropout=0.2, batch_norm=False, mean=[0.0] * 3, std=[1.0] * 3)


def test_round_trip_and_eval_mode(tmp_path):
    model = build_model(spec(), seed=1)
    save_model(tmp_path / "m.pt", model, spec())
    loaded, s = load_model(tmp_path / "m.pt")
    assert s == spec() and not loaded.training
    x = torch.rand(4, 3)
    model.eval()
    assert torch.equal(model(x), loaded(x))


def test_bytes_do_not_depend_on_file_name(tmp_path):
    model = build_model(spec(), seed=1)
    save_model(tmp_path / "a.pt", model, spec())
    save_model(tmp_path / "b.pt", model, spec())
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    buf = io.BytesIO()
    torch.save({"format": "goodfit-model-1", "spec": Evil(), "state_dict": {}}, buf)
    path.write_bytes(buf.getvalue())
    with pytest.raises(GoodfitError, match="refuses pickled code"):
        load_model(path)
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(GoodfitError, match="cannot be loaded safely"):
        load_model(path)


def test_shape_mismatch_names_the_layer(tmp_path):
    model = build_model(spec(hidden=(8,)), seed=1)
    save_model(tmp_path / "m.pt", model, spec(hidden=(5,)))  # description and weights disagree
    with pytest.raises(GoodfitError, match=r"layer 'net\.1\.weight' has shape \(8, 3\) in the checkpoint but the "
                                           r"model expects \(5, 3\)"):
        load_model(tmp_path / "m.pt")


def test_not_a_goodfit_checkpoint(tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(GoodfitError, match="is not a goodfit checkpoint"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(GoodfitError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_truncated_checkpoint(tmp_path):
    save_model(tmp_path / "m.pt", build_model(spec(), seed=1), spec())
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(GoodfitError, match=r"m\.pt is not a readable PyTorch checkpoint \(.*\); it may be truncated"):
        load_model(tmp_path / "m.pt")


def test_checkpoint_for_other_data_is_refused(tmp_path):
    save_model(tmp_path / "m.pt", build_model(spec(), seed=1), spec())
    load_model(tmp_path / "m.pt", input_shape=[3], n_classes=2)
    with pytest.raises(GoodfitError, match=r"was trained for n_classes 2, but the data has 10; it belongs to another "
                                           r"dataset or split\. Re-train it"):
        load_model(tmp_path / "m.pt", input_shape=[3], n_classes=10)
    with pytest.raises(GoodfitError, match=r"was trained for input_shape \[3\], but the data has \[1, 8, 8\]"):
        load_model(tmp_path / "m.pt", input_shape=(1, 8, 8))
    broken = dict(spec())
    del broken["hidden"]
    save_model(tmp_path / "b.pt", build_model(spec(), seed=1), broken)
    with pytest.raises(GoodfitError, match=r"describes a model goodfit cannot build \(KeyError\('hidden'\)\)"):
        load_model(tmp_path / "b.pt")


@pytest.mark.parametrize("threshold", [1.5, "high", True])
def test_checkpoint_with_a_bad_threshold_is_refused(tmp_path, threshold):
    model = build_model(spec(), seed=1)
    save_model(tmp_path / "m.pt", model, {**spec(), "threshold": threshold})
    with pytest.raises(GoodfitError, match=r"holds the decision threshold .* not a number between 0 and 1; re-train"):
        load_model(tmp_path / "m.pt")


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), "warm", True])
def test_checkpoint_with_a_bad_temperature_is_refused(tmp_path, temperature):
    model = build_model(spec())
    save_model(tmp_path / "m.pt", model, {**spec(), "temperature": temperature})
    with pytest.raises(GoodfitError, match=r"holds the calibration temperature .* not a number > 0; re-train"):
        load_model(tmp_path / "m.pt")


def test_threshold_travels_with_the_model(tmp_path):
    model = build_model(spec(), seed=1)
    save_model(tmp_path / "m.pt", model, {**spec(), "threshold": 0.3})
    assert load_model(tmp_path / "m.pt")[1]["threshold"] == 0.3
