"""Compact storage: 8-bit images stay uint8 in data/split and data/augmented, float16 on request,
decoded to float32 a chunk or a batch at a time, with the values the float32 path had."""

import json

import numpy as np
import pytest
import torch

from goodfit import storage
from goodfit.augment import Augmenter, write_augmented
from goodfit.errors import GoodfitError
from goodfit.io import open_npz_array, write_json, write_npz
from goodfit.models import build_model, model_spec
from goodfit.params import parse_params
from goodfit.splitting import load_split, normalization_stats, _level_stats
from goodfit.training import fit

from conftest import run_stage_script, write_params
from test_source_medmnist import write_medmnist

LEVELS = np.arange(256, dtype=np.uint8)


def test_every_level_decodes_to_the_value_the_float_sources_gave():
    """uint8 k -> k / 255 exactly as `x.astype(float32) / 255.0` did, in numpy and in torch
    (long, channels-last tensors too: the fit loop decodes gathered rows of those)."""
    reference = LEVELS.astype(np.float32) / 255.0
    np.testing.assert_array_equal(storage.to_float32(LEVELS), reference)
    images = np.tile(LEVELS, 64 * 4).reshape(64, 4, 16, 16)
    expected = np.tile(reference, 64 * 4).reshape(64, 4, 16, 16)
    decoded = storage.to_float32_tensor(torch.from_numpy(images).to(memory_format=torch.channels_last))
    assert decoded.dtype == torch.float32 and decoded.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(decoded.numpy(), expected)


def test_float_features_decode_without_a_copy_and_float16_widens():
    x = np.linspace(-2, 2, 11, dtype=np.float32)
    assert storage.to_float32(x) is x
    np.testing.assert_array_equal(storage.to_float32(x.astype(np.float16)), x.astype(np.float16).astype(np.float32))


def test_encoding_rounds_to_the_nearest_level_and_clamps():
    """A decoded level encodes back to itself; other values go to the nearest level, out-of-range ones to 0 / 255."""
    np.testing.assert_array_equal(storage.encode(storage.to_float32(LEVELS), "uint8"), LEVELS)
    values = np.array([-0.3, 0.0, 0.4 / 255, 0.6 / 255, 100.4 / 255, 100.6 / 255, 1.0, 1.7], dtype=np.float32)
    np.testing.assert_array_equal(storage.encode(values, "uint8"), [0, 0, 0, 1, 100, 101, 255, 255])
    assert storage.encode(values, "float16").dtype == np.float16


@pytest.mark.parametrize("setting, u8, floats", [("auto", "uint8", "float32"), ("float16", "uint8", "float16"),
                                                 ("float32", "float32", "float32")])
def test_storage_setting_chooses_the_dtype(setting, u8, floats):
    assert storage.choose(setting, LEVELS) == u8
    assert storage.choose(setting, LEVELS.astype(np.float32)) == floats
    with pytest.raises(GoodfitError, match=r"data\.storage must be one of 'auto', 'float32', 'float16', got 'x'"):
        storage.choose("x", LEVELS)


def test_unknown_storage_setting_is_refused_with_the_choices():
    with pytest.raises(GoodfitError, match=r"data\.storage must be one of 'auto', 'float32', 'float16', got 'int8'"):
        parse_params({"data": {"storage": "int8"}})


def test_level_statistics_are_exact_and_do_not_depend_on_the_chunk():
    x = np.random.default_rng(0).integers(0, 256, (37, 3, 5, 7), dtype=np.uint8)
    axes = (0, 2, 3)
    mean, std = _level_stats(x, axes)
    again = _level_stats(x, axes, chunk=4)
    np.testing.assert_array_equal(mean, again[0])
    np.testing.assert_array_equal(std, again[1])
    exact = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, exact.mean(axis=axes), rtol=1e-13)
    np.testing.assert_allclose(std, exact.std(axis=axes), rtol=1e-12)
    stats = normalization_stats(x, "image")
    assert stats["mean"] == [float(v) for v in mean] and len(stats["std"]) == 3


def test_augmented_levels_are_the_float_augmentation_rounded(tmp_path):
    """The uint8 augmented file holds the originals unchanged, then each augmented copy of the
    float32 path rounded to the nearest level."""
    cfg = parse_params({"augment": {"copies": 2}}).augment
    x = np.random.default_rng(1).integers(0, 256, (9, 1, 12, 12), dtype=np.uint8)
    y = np.arange(9) % 2
    args = dict(modality="image", cfg=cfg, seed=3, train_std=[0.3], clip=(0.0, 1.0))
    write_npz(tmp_path / "u8.npz", x=x, y=y)
    write_npz(tmp_path / "f32.npz", x=storage.to_float32(x), y=y)
    for name in ("u8", "f32"):
        write_augmented(tmp_path / f"aug_{name}.npz", open_npz_array(tmp_path / f"{name}.npz", "x"), y,
                        Augmenter(**args), copies=2, chunk_size=4)
    u8 = np.load(tmp_path / "aug_u8.npz")["x"]
    f32 = np.load(tmp_path / "aug_f32.npz")["x"]
    assert u8.dtype == np.uint8 and f32.dtype == np.float32 and u8.shape == f32.shape == (27, 1, 12, 12)
    np.testing.assert_array_equal(u8[:9], x)
    np.testing.assert_array_equal(u8, storage.encode(f32, "uint8"))
    assert not np.array_equal(f32[9:18], storage.to_float32(u8[9:18]))  # rounding did happen ...
    assert np.abs(f32[9:] - storage.to_float32(u8[9:])).max() <= 0.5 / 255 + 1e-7  # ... to the nearest level


def test_training_on_levels_equals_training_on_their_float32_values():
    """The fit loop decodes uint8 rows per gathered chunk: the same model, bit for bit, as from float32 arrays."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (96, 1, 8, 8), dtype=np.uint8)
    y = (x.reshape(96, -1).mean(axis=1) > 127).astype(np.int64)
    xv, yv = x[:24], y[:24]
    stats = normalization_stats(x, "image")
    spec = model_spec(kind="cnn", modality="image", input_shape=[1, 8, 8], n_classes=2, hidden=[8], channels=[4],
                      dropout=0.1, batch_norm=True, kernel_size=3, global_pool=True, **stats)
    states, histories = [], []
    for train, val in ((x, xv), (storage.to_float32(x), storage.to_float32(xv))):
        model = build_model(spec, seed=0)
        result = fit(model, x_train=train, y_train=y, x_val=val, y_val=yv, batch_size=16, max_epochs=3,
                     seed=0, verbose=False, x_train_eval=train[:48], y_train_eval=y[:48])
        states.append(model.state_dict())
        histories.append(result.history)
    assert histories[0] == histories[1]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_a_split_file_whose_dtype_disagrees_with_meta_is_refused(tmp_path):
    meta = {"modality": "image", "class_names": ["a", "b"], "n_classes": 2, "input_shape": [1, 4, 4],
            "counts": {}, "normalization": {"mean": [0.5], "std": [0.2]}, "storage": "uint8"}
    write_json(tmp_path / "meta.json", meta)
    write_npz(tmp_path / "train.npz", x=np.zeros((4, 1, 4, 4), np.float32), y=np.array([0, 1, 0, 1]))
    with pytest.raises(GoodfitError, match=r"train\.npz: features are stored as float32 but meta\.json says uint8; "
                                           r"the files come from different runs\. Re-create it .*dvc repro -f"):
        load_split(tmp_path / "train.npz", meta)


def _pipeline(folder, stages=("split", "augment", "train"), **params):
    folder.mkdir()
    write_params(folder / "params.yaml", **params)
    for stage in stages:
        result = run_stage_script(stage, folder)
        assert result.returncode == 0, result.stderr
    return folder


def test_medmnist_pipeline_stores_levels_and_trains_as_the_float32_files_do(tmp_path):
    """data.storage auto vs float32 on an 8-bit source: a quarter of the bytes, the same decoded split,
    and, without augmented copies, the same trained model."""
    data = write_medmnist(tmp_path / "m.npz", sizes=(40, 12, 12), size=16)
    common = dict(data={"source": "medmnist", "path": str(data)}, augment={"copies": 0, "gallery_variants": 2},
                  train={"max_epochs": 2, "channels": [4], "hidden": [8], "batch_size": 16, "model": "cnn"})
    runs = {}
    for setting in ("auto", "float32"):
        params = {**common, "data": {**common["data"], "storage": setting}}
        runs[setting] = _pipeline(tmp_path / setting, **params)
    u8, f32 = (json.loads((runs[s] / "data/split/meta.json").read_text()) for s in ("auto", "float32"))
    assert u8["storage"] == "uint8" and f32["storage"] == "float32"
    assert u8["normalization"] == f32["normalization"]  # from the levels, exactly, either way
    for split in ("train", "val", "test"):
        a = np.load(runs["auto"] / f"data/split/{split}.npz")["x"]
        b = np.load(runs["float32"] / f"data/split/{split}.npz")["x"]
        assert a.dtype == np.uint8 and b.dtype == np.float32 and a.nbytes * 4 == b.nbytes
        np.testing.assert_array_equal(storage.to_float32(a), b)
    assert np.load(runs["auto"] / "data/augmented/train.npz")["x"].dtype == np.uint8
    for out in ("models/model.pt", "reports/train/history.csv"):
        assert (runs["auto"] / out).read_bytes() == (runs["float32"] / out).read_bytes(), out


def test_float16_storage_of_a_float_source(tmp_path):
    run = _pipeline(tmp_path / "f16", data={"source": "digits", "storage": "float16"},
                    train={"max_epochs": 1, "hidden": [8], "batch_size": 128})
    meta = json.loads((run / "data/split/meta.json").read_text())
    assert meta["storage"] == "float16"
    for path in ("data/split/train.npz", "data/split/test.npz", "data/augmented/train.npz"):
        assert np.load(run / path)["x"].dtype == np.float16, path
    assert (run / "models/model.pt").is_file()


def test_inference_takes_large_images_in_small_batches():
    """4,096 rows of small samples at once, fewer of large ones: 334 of 28 x 28 images, 16 of 128 x 128, one
    of a sample larger than the value budget; the rows of a DiskRows or NpzArray count by their shape alone."""
    assert storage.inference_rows(np.zeros((10, 64))) == 4096
    assert storage.inference_rows(np.zeros((10, 1, 8, 8))) == 4096
    assert storage.inference_rows(np.zeros((10, 1, 96))) == 2730
    assert storage.inference_rows(np.zeros((10, 1, 28, 28))) == 334
    assert storage.inference_rows(np.zeros((10, 1, 128, 128), np.uint8)) == 16
    assert storage.inference_rows(torch.zeros(3, 3, 512, 512)) == 1
    assert storage.inference_rows(np.zeros(7)) == 4096


def test_validation_loss_and_probabilities_are_computed_a_bounded_batch_at_a_time(monkeypatch):
    """With the value budget at 3 images, evaluate_loss and predict_proba feed the model at most 3 rows at a
    time and give the numbers of a single batch (each row is computed alone in eval mode)."""
    from goodfit.evaluation import predict_proba
    from goodfit.training import evaluate_loss

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(10, 1, 16, 16, generator=gen)
    y = torch.randint(0, 2, (10,), generator=gen)
    spec = model_spec(kind="cnn", modality="image", input_shape=(1, 16, 16), n_classes=2, hidden=[8], channels=[4],
                      dropout=0.0, batch_norm=False, mean=[0.5], std=[0.25])
    model = build_model(spec, seed=0).eval()
    whole_loss, whole_acc = evaluate_loss(model, x, y)
    whole_proba = predict_proba(model, x.numpy())
    seen = []
    model.register_forward_hook(lambda m, args, out: seen.append(len(args[0])))
    monkeypatch.setattr(storage, "INFERENCE_VALUES", 3 * 16 * 16)
    loss, acc = evaluate_loss(model, x, y)
    proba = predict_proba(model, x.numpy())
    assert seen == [3, 3, 3, 1] * 2
    assert loss == pytest.approx(whole_loss, rel=1e-6) and acc == whole_acc
    np.testing.assert_allclose(proba, whole_proba, rtol=1e-6)
