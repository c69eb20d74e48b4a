"""benchmarks/bench_quality_time.py: the baseline recipe's facts, on tiny synthetic data (the real run needs the
real data and an hour)."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_quality_time")


@pytest.fixture(autouse=True)
def _keep_torch_threads(monkeypatch):
    """One torch thread, as the benchmark trains (fast on a busy machine); main() also sets the stages' count.
    Both are put back afterwards."""
    threads = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, str(threads))
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_medmnist(path, *, n=(8, 4, 4), seed=0):
    """A MedMNIST-format .npz of 28 x 28 uint8 images, two classes, the class visible as brightness."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, size in zip(("train", "val", "test"), n):
        y = np.arange(size) % 2
        images = rng.integers(0, 120, size=(size, 28, 28)) + 100 * y[:, None, None]
        arrays[f"{split}_images"] = images.astype(np.uint8)
        arrays[f"{split}_labels"] = y.reshape(-1, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return path


def tiny_inputs(bench, tmp_path):
    splits = bench.load_breastmnist(tiny_medmnist(tmp_path / "tiny.npz"))
    return {s: (bench.to_inputs(images), labels) for s, (images, labels) in splits.items()}


def test_the_baseline_is_resnet18_for_28_px(bench):
    from torchvision.models import ResNet
    from torchvision.models.resnet import BasicBlock

    model = bench.resnet18_28(in_channels=1, n_classes=2)
    assert isinstance(model, ResNet)
    conv = model.conv1
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.bias) == (
        1, 64, (3, 3), (1, 1), (1, 1), None)
    assert isinstance(model.maxpool, nn.Identity)
    assert [len(layer) for layer in (model.layer1, model.layer2, model.layer3, model.layer4)] == [2, 2, 2, 2]
    assert all(isinstance(block, BasicBlock) for block in model.layer4)
    assert model.fc.out_features == 2
    shapes = {}
    model.layer4.register_forward_hook(lambda m, args, out: shapes.update(layer4=tuple(out.shape)))
    model.eval()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 2)
    assert shapes["layer4"] == (3, 512, 4, 4)  # 28 -> 28 -> 14 -> 7 -> 4: no stride-2 stem, no max-pool


def test_inputs_are_scaled_like_to_tensor_then_normalize(bench):
    from torchvision import transforms

    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28)).astype(np.uint8)
    reference = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean=[0.5], std=[0.5])])
    expected = torch.stack([reference(img) for img in images])
    x = bench.to_inputs(images)
    assert x.dtype == torch.float32 and x.shape == (3, 1, 28, 28)
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)
    assert bench.to_inputs(np.array([[[0, 255]]], np.uint8)).flatten().tolist() == [-1.0, 1.0]


@pytest.fixture(scope="module")
def scripted_fit(bench, tmp_path_factory):
    """One 4-epoch fit on tiny data whose validation AUCs are scripted, with the weights seen at each epoch's
    validation."""
    data = tiny_inputs(bench, tmp_path_factory.mktemp("tiny"))
    scripted = iter([0.6, 0.9, 0.7, 0.9])  # the first of two equal bests wins
    states = []
    predict = bench.predict_proba

    def recording(model, x, *args, **kwargs):
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return predict(model, x, *args, **kwargs)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "predict_proba", recording)
        patch.setattr(bench, "auc_accuracy", lambda y, proba: (next(scripted), 0.5))
        out = bench.fit_baseline(*data["train"], *data["val"], epochs=4, seed=0)
    torch.set_num_threads(threads)
    return out, states


def test_the_learning_rate_drops_tenfold_at_half_and_three_quarters(bench, scripted_fit):
    assert bench.lr_milestones(100) == [50, 75]
    out, _ = scripted_fit
    assert [row["lr"] for row in out["history"]] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5])


def test_the_model_is_the_epoch_with_the_best_validation_auc(scripted_fit):
    out, states = scripted_fit
    assert out["best_epoch"] == 2 and out["best_val_auc"] == 0.9
    assert [row["val_auc"] for row in out["history"]] == [0.6, 0.9, 0.7, 0.9]
    chosen = out["model"].state_dict()
    assert all(torch.equal(chosen[k], states[1][k]) for k in chosen)
    assert not all(torch.equal(chosen[k], states[3][k]) for k in chosen)


def test_validation_auc_is_scikit_learns(bench):
    from sklearn.metrics import roc_auc_score

    y = np.array([0, 1, 1, 0, 1])
    p1 = np.array([0.2, 0.7, 0.4, 0.1, 0.5])
    auc, acc = bench.auc_accuracy(y, np.stack([1 - p1, p1], axis=1))
    assert auc == roc_auc_score(y, p1)
    assert acc == pytest.approx(3 / 5)  # p1 > 0.5: 0.5 itself counts as class 0, as in the MedMNIST evaluator


def test_one_epoch_runs_end_to_end_and_writes_only_where_asked(bench, tmp_path, monkeypatch, capsys):
    data = tiny_medmnist(tmp_path / "tiny.npz")
    preset = {"recipe": "goodfit", "seed": 0, "test_roc_auc": 0.9, "test_accuracy": 0.8,
              "test_accuracy_at_0.5": 0.75, "wall_s": 1.0, "best_epoch": 1, "stopped_epoch": 1, "threshold": 0.5}
    monkeypatch.setattr(bench, "run_preset", lambda *args, **kwargs: dict(preset))  # the pipeline: slow test below
    monkeypatch.chdir(tmp_path)
    assert bench.main(["--data-path", str(data), "--epochs", "1"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.npz"]
    out = capsys.readouterr().out
    assert "smoke run: 1 epochs instead of 100" in out and "wall time, baseline / goodfit" in out
    assert bench.main(["--data-path", str(data), "--epochs", "1", "--output", "results/quality_time.json"]) == 0
    result = json.loads((tmp_path / "results" / "quality_time.json").read_text())
    baseline = next(r for r in result["runs"] if r["recipe"] == "baseline")
    assert baseline["epochs"] == 1 and baseline["best_epoch"] == 1 and 0.0 <= baseline["test_roc_auc"] <= 1.0
    assert result["ratio_baseline_to_goodfit"] == pytest.approx(baseline["wall_s"] / 1.0)
    assert set(result["machine"]) == {"cpu", "cores", "load_average_start", "load_average_end"}


def test_a_missing_data_file_says_what_it_is_and_where_to_get_it(bench, tmp_path, capsys):
    assert bench.main(["--data-path", str(tmp_path / "breastmnist.npz")]) == 2
    err = capsys.readouterr().err
    assert "breastmnist.npz does not exist" in err and "MedMNIST v2's BreastMNIST" in err
    assert "zenodo.org/records/10519652" in err and "--data-path" in err


@pytest.mark.slow
def test_both_recipes_run_on_tiny_data(bench, tmp_path, capsys):
    data = tiny_medmnist(tmp_path / "tiny.npz", n=(40, 12, 12))
    assert bench.main(["--data-path", str(data), "--epochs", "1", "--output", str(tmp_path / "out.json")]) == 0
    runs = json.loads((tmp_path / "out.json").read_text())["runs"]
    assert [r["recipe"] for r in runs] == ["goodfit", "baseline"]
    assert all(0.0 <= r["test_roc_auc"] <= 1.0 and r["wall_s"] > 0 for r in runs)
