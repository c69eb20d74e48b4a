"""python -m goodfit.predict: every input format, the same numbers as the evaluate stage, and each input that
does not fit the model refused with a message naming the sample or column, writing nothing."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import clone_prepared, fresh_store, run_stage_script, write_params
from goodfit.checkpoint import save_model
from goodfit.inference import Predictor
from goodfit.models import build_model, model_spec
from goodfit.predict import main

UNPINNED = {"repro": {"portable": False}}  # the test process recomputes probabilities with its own kernels


@pytest.fixture(scope="module")
def trained(prepared, mlflow_template, tmp_path_factory):
    """Digits (split and augment of the shared tiny project), trained and evaluated with repro.portable off, the
    MLflow model registered as goodfit-test."""
    cwd = clone_prepared(prepared, tmp_path_factory.mktemp("predict"))
    write_params(cwd / "params.yaml", mlflow={"register_as": "goodfit-test"}, **UNPINNED)
    env = fresh_store(mlflow_template, cwd / "mlflow.db")
    for stage in ("train", "evaluate"):
        result = run_stage_script(stage, cwd, env=env)
        assert result.returncode == 0, result.stderr
        if stage == "train":
            assert "registered as goodfit-test version 1 (models:/goodfit-test@candidate)" in result.stdout
    return cwd, env


def run_predict(cwd, *args, env=None):
    return subprocess.run([sys.executable, "-m", "goodfit.predict", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_predict_reproduces_the_evaluate_stage(trained):
    cwd, env = trained
    result = run_predict(cwd, "data/split/test.npz", "--out", "out/predictions.csv", env=env)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(cwd / "out/predictions.csv", dtype={"id": str, "predicted": str})
    test = np.load(cwd / "data/split/test.npz")
    assert list(table.columns) == ["id"] + [f"prob_{k}" for k in range(10)] + ["predicted"]
    assert table["id"].tolist() == [str(i) for i in range(len(test["y"]))]
    metrics = json.loads((cwd / "reports/metrics.json").read_text())
    assert (table["predicted"].astype(int).to_numpy() == test["y"]).mean() == metrics["test"]["accuracy"]
    predictor = Predictor.from_checkpoint(cwd / "models/model.pt")
    assert np.array_equal(table[predictor.columns()].to_numpy(), predictor.proba(test["x"]))  # to the last bit
    assert f"predict: {len(test['y'])} samples of data/split/test.npz with models/model.pt -> out/predictions.csv" \
        in result.stdout


def test_an_mlflow_model_uri_gives_the_same_csv(trained):
    cwd, env = trained
    for model, out in (("models/model.pt", "a.csv"), ("models:/goodfit-test@candidate", "b.csv")):
        result = run_predict(cwd, "data/split/test.npz", "--model", model, "--out", out, env=env)
        assert result.returncode == 0, result.stderr
    assert (cwd / "a.csv").read_bytes() == (cwd / "b.csv").read_bytes()
    result = run_predict(cwd, "data/split/test.npz", "--model", "models:/goodfit-test@champion", "--out", "c.csv",
                         env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: Cannot load the MLflow model models:/goodfit-test@champion from sqlite:")
    assert not (cwd / "c.csv").exists()


def test_image_files_and_folders(trained, tmp_path):
    from PIL import Image

    cwd, _ = trained
    test = np.load(cwd / "data/split/test.npz")
    folder = tmp_path / "scans"
    for i, img in enumerate(test["x"][:40]):
        (folder / f"{i % 2}").mkdir(parents=True, exist_ok=True)  # class folders are allowed, not needed
        Image.fromarray(np.round(img[0] * 255).astype(np.uint8), mode="L").save(folder / f"{i % 2}" / f"{i:03d}.png")
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8), mode="RGB").save(tmp_path / "rgb.png")
    params = write_params(tmp_path / "params.yaml", **UNPINNED)
    out = tmp_path / "images.csv"
    assert main([str(folder), str(tmp_path / "rgb.png"), "--model", str(cwd / "models/model.pt"),
                 "--out", str(out), "--params", str(params)]) == 0
    table = pd.read_csv(out, dtype={"id": str, "predicted": str})
    assert table["id"].tolist()[:2] == [str(folder / "0" / "000.png"), str(folder / "0" / "002.png")]
    assert table["id"].tolist()[-1] == str(tmp_path / "rgb.png") and len(table) == 41
    # 8-bit PNGs hold the digits' 17 grey levels to within 1/510: the same classes as the arrays
    predictor = Predictor.from_checkpoint(cwd / "models/model.pt")
    order = [int(p.rsplit("/", 1)[1][:3]) for p in table["id"][:40]]
    expected = [predictor.class_names[k] for k in predictor.labels(predictor.proba(test["x"][order]))]
    assert np.mean(table["predicted"][:40].to_numpy() == np.array(expected)) >= 0.95


def test_other_image_sizes_need_resize(trained, tmp_path, capsys):
    from PIL import Image

    cwd, _ = trained
    Image.fromarray(np.zeros((16, 16), np.uint8), mode="L").save(tmp_path / "big.png")
    params = write_params(tmp_path / "params.yaml", **UNPINNED)
    args = [str(tmp_path / "big.png"), "--model", str(cwd / "models/model.pt"), "--params", str(params),
            "--out", str(tmp_path / "p.csv")]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'big.png'}: the image is 16x16, but the model ({cwd / 'models/model.pt'}) takes 8x8 "
        "images with 1 channel. Resize it to 8x8 first, or pass --resize to resize it as the split stage resized the "
        "training images (bilinear; right only for images of the training images' size).\n")
    assert not (tmp_path / "p.csv").exists()
    assert main(args + ["--resize"]) == 0 and len(pd.read_csv(tmp_path / "p.csv")) == 1


def test_medmnist_style_npz(tmp_path):
    """A MedMNIST-style file without labels; --split picks one split."""
    spec = model_spec(kind="cnn", modality="image", input_shape=[1, 8, 8], n_classes=2, hidden=[4], channels=[2],
                      dropout=0.0, batch_norm=False, mean=[0.5], std=[0.25], class_names=["benign", "malignant"])
    spec["threshold"] = 0.3
    save_model(tmp_path / "model.pt", build_model(spec, seed=0), spec)
    rng = np.random.default_rng(0)
    images = {"val_images": rng.integers(0, 256, (3, 8, 8), dtype=np.uint8),
              "test_images": rng.integers(0, 256, (5, 8, 8), dtype=np.uint8)}
    np.savez(tmp_path / "new.npz", **images)
    params = write_params(tmp_path / "params.yaml", **UNPINNED)
    base = ["--model", str(tmp_path / "model.pt"), "--params", str(params)]
    assert main([str(tmp_path / "new.npz"), "--out", str(tmp_path / "all.csv"), *base]) == 0
    table = pd.read_csv(tmp_path / "all.csv")
    assert table["id"].tolist() == ["val/0", "val/1", "val/2"] + [f"test/{i}" for i in range(5)]
    assert list(table.columns) == ["id", "prob_benign", "prob_malignant", "predicted"]
    p1 = table["prob_malignant"].to_numpy()
    assert table["predicted"].tolist() == ["malignant" if p > 0.3 else "benign" for p in p1]  # the saved threshold
    assert main([str(tmp_path / "new.npz"), "--split", "test", "--out", str(tmp_path / "test.csv"), *base]) == 0
    assert pd.read_csv(tmp_path / "test.csv")["id"].tolist() == [f"test/{i}" for i in range(5)]


def test_a_split_file_of_8_bit_levels_is_decoded_as_the_stages_decode_it(tmp_path):
    """data/split of an 8-bit source stores uint8 levels k meaning k / 255: the same predictions as the float32 file."""
    from goodfit.io import write_npz
    from goodfit.storage import to_float32

    spec = model_spec(kind="cnn", modality="image", input_shape=[1, 8, 8], n_classes=2, hidden=[4], channels=[2],
                      dropout=0.0, batch_norm=False, mean=[0.5], std=[0.25], class_names=["benign", "malignant"])
    save_model(tmp_path / "model.pt", build_model(spec, seed=0), spec)
    levels = np.random.default_rng(3).integers(0, 256, (6, 1, 8, 8), dtype=np.uint8)
    write_npz(tmp_path / "u8.npz", x=levels, y=np.zeros(6, np.int64))
    write_npz(tmp_path / "f32.npz", x=to_float32(levels), y=np.zeros(6, np.int64))
    params = write_params(tmp_path / "params.yaml", **UNPINNED)
    for name in ("u8", "f32"):
        assert main([str(tmp_path / f"{name}.npz"), "--out", str(tmp_path / f"{name}.csv"), "--model",
                     str(tmp_path / "model.pt"), "--params", str(params)]) == 0
    assert (tmp_path / "u8.csv").read_bytes() == (tmp_path / "f32.csv").read_bytes()


def tabular_model(folder, temperature=None):
    names = ["mean radius", "mean texture", "mean area"]
    spec = model_spec(kind="mlp", modality="tabular", input_shape=[3], n_classes=2, hidden=[4], channels=[1],
                      dropout=0.0, batch_norm=False, mean=[14.0, 19.0, 650.0], std=[3.5, 4.3, 350.0],
                      class_names=["malignant", "benign"], feature_names=names)
    spec["threshold"] = 0.4
    if temperature is not None:
        spec["temperature"] = temperature
    save_model(folder / "tab.pt", build_model(spec, seed=1), spec)
    return folder / "tab.pt", names


def test_csv_with_an_id_column_applies_temperature_and_threshold(tmp_path):
    from goodfit.calibration import apply_temperature
    from goodfit.evaluation import predict_proba

    path, names = tabular_model(tmp_path, temperature=1.7)
    rows = np.array([[12.1, 18.0, 450.0], [20.5, 25.1, 1300.0], [15.0, 15.0, 700.0]], dtype=np.float32)
    frame = pd.DataFrame(rows, columns=names)
    frame.insert(0, "patient", ["p-01", "p-02", "p-03"])
    frame[["mean area", "patient", "mean texture", "mean radius"]].to_csv(tmp_path / "new.csv", index=False)
    params = write_params(tmp_path / "params.yaml", **UNPINNED)
    assert main([str(tmp_path / "new.csv"), "--id-column", "patient", "--model", str(path), "--params", str(params),
                 "--out", str(tmp_path / "p.csv")]) == 0
    table = pd.read_csv(tmp_path / "p.csv")
    predictor = Predictor.from_checkpoint(path)
    expected = apply_temperature(predict_proba(predictor.model, rows), 1.7)
    assert table["id"].tolist() == ["p-01", "p-02", "p-03"]
    assert np.array_equal(table[["prob_malignant", "prob_benign"]].to_numpy(), expected)
    assert table["predicted"].tolist() == ["benign" if p > 0.4 else "malignant" for p in expected[:, 1]]


def series_model(folder, length=12):
    spec = model_spec(kind="cnn1d", modality="timeseries", input_shape=[1, length], n_classes=2, hidden=[4],
                      channels=[2], dropout=0.0, batch_norm=False, mean=[0.0], std=[1.0], class_names=["-1", "1"])
    spec["threshold"] = 0.5
    save_model(folder / "ts.pt", build_model(spec, seed=2), spec)
    return folder / "ts.pt"


def test_ucr_tsv_with_or_without_the_class_column(tmp_path):
    path = series_model(tmp_path)
    rng = np.random.default_rng(3)
    series = rng.normal(size=(4, 12))
    np.savetxt(tmp_path / "plain.tsv", series, delimiter="\t")
    np.savetxt(tmp_path / "NEW_TEST.tsv", np.column_stack([[1, -1, 1, 1], series]), delimiter="\t")
    params = write_params(tmp_path / "params.yaml", **UNPINNED)
    outs = []
    for name in ("plain.tsv", "NEW_TEST.tsv"):
        out = tmp_path / f"{name}.csv"
        assert main([str(tmp_path / name), "--model", str(path), "--params", str(params), "--out", str(out)]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert pd.read_csv(tmp_path / "plain.tsv.csv")["id"].tolist() == [1, 2, 3, 4]


def bad_inputs(tmp_path, digits_model):
    """(arguments, the exact error) for each input that does not fit its model."""
    from PIL import Image

    tab, _ = tabular_model(tmp_path)
    ts = series_model(tmp_path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "big.npz", x=rng.random((3, 1, 16, 16), dtype=np.float32))
    np.savez(tmp_path / "rgb.npz", test_images=rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8))
    x = rng.random((5, 1, 8, 8), dtype=np.float32)
    x[3, 0, 2, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=x)
    np.savez(tmp_path / "other.npz", images=x)
    Image.fromarray(np.zeros((10, 12), np.uint8), mode="L").save(tmp_path / "small.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "missing.csv").write_text("mean radius,mean area\n1,2\n")
    (tmp_path / "extra.csv").write_text("mean radius,mean texture,mean area,diagnosis\n1,2,3,M\n")
    (tmp_path / "nan.csv").write_text("mean radius,mean texture,mean area\n1,2,3\n4,,6\n")
    (tmp_path / "text.csv").write_text("mean radius,mean texture,mean area\n1,2,3\n4,high,6\n")
    np.savetxt(tmp_path / "short.tsv", rng.normal(size=(2, 10)), delimiter="\t")
    (tmp_path / "ragged.tsv").write_text("1\t0.1\t0.2\t0.3\n1\t0.1\n")
    d, t, s = str(digits_model), str(tab), str(ts)
    return [
        (["big.npz", "--model", d], f"big.npz: the samples are 16x16 images with 1 channel (shape [1, 16, 16] per "
         f"sample), but the model ({d}) takes 8x8 images with 1 channel (shape [1, 8, 8]). Give it data shaped like "
         "its training data."),
        (["rgb.npz", "--model", d], f"rgb.npz: the samples are 8x8 images with 3 channels (shape [3, 8, 8] per "
         f"sample), but the model ({d}) takes 8x8 images with 1 channel (shape [1, 8, 8]). Give it data shaped like "
         "its training data."),
        (["nan.npz", "--model", d], "nan.npz: sample 3 holds NaN or infinite values (1 sample(s) do); the model "
         "needs finite numbers. Impute or drop those samples."),
        (["other.npz", "--model", d], "other.npz holds no MedMNIST images (no array named <split>_images, e.g. "
         "test_images; it has ['images'])."),
        (["rgb.npz", "--split", "val", "--model", d], "rgb.npz has no val_images; it holds test_images."),
        (["small.png", "--model", d], f"small.png: the image is 12x10, but the model ({d}) takes 8x8 images with 1 "
         "channel. Resize it to 8x8 first, or pass --resize to resize it as the split stage resized the training "
         "images (bilinear; right only for images of the training images' size)."),
        (["empty", "--model", d], "empty holds no PNG/JPEG images (.png, .jpg, .jpeg)."),
        (["nowhere.npz", "--model", d], "nowhere.npz does not exist; give a .npz, .csv or .tsv file, PNG/JPEG images "
         "or a folder of them."),
        (["notes.txt", "--model", d], "notes.txt: goodfit cannot tell its format from its name; give a .npz, .csv or "
         ".tsv file, PNG/JPEG images or a folder of them."),
        (["nan.csv", "--model", d], f"The model ({d}) takes 8x8 images with 1 channel, not a table; give it a .npz "
         "file, PNG/JPEG images or a folder of them."),
        (["big.npz", "nan.csv", "--model", d], "Give one .npz, .csv or .tsv file at a time (or several images and "
         "folders of them); got big.npz, nan.csv."),
        (["missing.csv", "--model", t], f"missing.csv lacks the feature column(s) 'mean texture'; the model ({t}) "
         "takes 3 feature columns: 'mean radius', 'mean texture', 'mean area'."),
        (["extra.csv", "--model", t], f"extra.csv has column(s) 'diagnosis' that the model does not take; the model "
         f"({t}) takes 3 feature columns: 'mean radius', 'mean texture', 'mean area'. Drop them (a label column "
         "too), or name an id column with --id-column."),
        (["nan.csv", "--model", t], "nan.csv: column 'mean texture' has 1 missing value(s) (first in data row 2). "
         "Impute them or drop those rows before predicting."),
        (["text.csv", "--model", t], "text.csv: feature column 'mean texture' is not numeric (e.g. 'high'). Encode it "
         "as numbers (e.g. one-hot) or drop it; the model takes numbers only."),
        (["extra.csv", "--id-column", "patient", "--model", t], "--id-column 'patient' is not a column of extra.csv; "
         "its columns are 'mean radius', 'mean texture', 'mean area', 'diagnosis'."),
        (["short.tsv", "--model", s], f"short.tsv: each row holds 10 values, but the model ({s}) takes series of "
         "length 12 (13 values with the class in the first column, as UCR files have it)."),
        (["ragged.tsv", "--model", s], "ragged.tsv: row 2 has a missing value at column 3. The UCR archive pads "
         "series of unequal length with NaN; resample them to one length first (e.g. the archive's own "
         f"equal-length versions). (the model ({s}) takes series of length 12.)"),
        (["big.npz", "--model", t], f"big.npz: the samples each have shape [1, 16, 16], but the model ({t}) takes "
         "rows of 3 features (shape [3]). Give it data shaped like its training data."),
        (["big.npz", "--model", "nowhere.pt"], "nowhere.pt does not exist. Run the train stage first (dvc repro)."),
    ]


def test_each_bad_input_is_refused_by_name_and_nothing_is_written(trained, tmp_path, monkeypatch, capsys):
    cwd, _ = trained
    shutil.copy(cwd / "models/model.pt", tmp_path / "digits.pt")
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "params.yaml", **UNPINNED)
    cases = bad_inputs(tmp_path, "digits.pt")
    for args, message in cases:
        assert main([*args, "--params", str(params), "--out", "out/p.csv"]) == 2, args
        err = capsys.readouterr().err
        assert err == f"error: {message}\n", args
        assert not (tmp_path / "out").exists(), args
    assert len(cases) == 20


def test_predict_pins_the_kernels_like_the_stages(trained, tmp_path):
    """Without params (or with repro.portable true) predict runs the stages' portable kernels."""
    cwd, env = trained
    code = ("import sys, runpy; sys.argv = ['predict', 'data/split/test.npz', '--out', '" + str(tmp_path / "p.csv")
            + "', '--params', 'absent.yaml']\n"
            "try:\n    runpy.run_module('goodfit.predict', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "import os; print(os.environ.get('ATEN_CPU_CAPABILITY'), os.environ.get('MKL_CBWR'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("avx2 COMPATIBLE")
    assert (tmp_path / "p.csv").is_file()
