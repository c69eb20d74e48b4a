import pytest

from goodfit.errors import GoodfitError
from goodfit.params import as_flat_dict, load_params, parse_params

from conftest import ROOT


def test_project_params_file_is_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.data.source == "digits"
    assert params.early_stopping.patience == 7


def test_register_as_is_off_by_default_and_takes_a_name():
    assert parse_params({}).mlflow.register_as is None
    assert parse_params({"mlflow": {"register_as": "goodfit-digits v2"}}).mlflow.register_as == "goodfit-digits v2"


def test_scientific_notation_is_a_float(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("weight_decay: 1e-3\nl1_lambda: 5e-5\n")
    params = load_params(path)
    assert params.weight_decay == pytest.approx(1e-3)
    assert params.l1_lambda == pytest.approx(5e-5)


@pytest.mark.parametrize("raw, match", [
    ({"early_stopping": {"patience": 0}}, r"early_stopping\.patience must be an integer >= 1, got 0"),
    ({"train": {"folds": 0}}, r"train\.folds must be an integer >= 1 and <= 20, got 0"),
    ({"evaluate": {"bootstrap": 10}}, r"evaluate\.bootstrap must be an integer >= 100 and <= 100000, got 10"),
    ({"evaluate": {"calibration_bins": 0}}, r"evaluate\.calibration_bins must be an integer >= 1 and <= 100, got 0"),
    ({"train": {"calibration": "platt"}}, r"train\.calibration must be one of .*none.*temperature.*got 'platt'"),
    ({"train": {"folds": 2.5}}, r"train\.folds must be an integer >= 1 and <= 20, got 2\.5"),
    ({"dropout": 1.0}, r"dropout must be a finite number >= 0 and < 1, got 1\.0"),
    ({"dropout": -0.1}, r"dropout must be a finite number >= 0 and < 1, got -0\.1"),
    ({"weight_decay": -1e-4}, r"weight_decay must be a finite number >= 0, got -0\.0001"),
    ({"l1_lambda": "lots"}, r"l1_lambda must be a finite number >= 0, got 'lots'"),
    ({"train": {"lr": 0}}, r"train\.lr must be a finite number > 0"),
    ({"train": {"max_epochs": 2.5}}, r"train\.max_epochs must be an integer >= 1, got 2\.5"),
    ({"train": {"optimizer": "adamax"}}, r"train\.optimizer must be one of 'adam', 'adamw', 'sgd', got 'adamax'"),
    ({"data": {"source": "mnist"}}, r"data\.source must be one of .*got 'mnist'"),
    ({"report": {"language": "fr"}}, r"report\.language must be one of 'ja', 'en', got 'fr'"),
    ({"early_stopping": {"verbose": "yes"}}, r"early_stopping\.verbose must be true or false, got 'yes'"),
    ({"train": {"hidden": []}}, r"train\.hidden must be a list of at least 1 integers >= 1"),
    ({"data": {"val_fraction": 0.5, "test_fraction": 0.45}}, r"val_fraction \+ data\.test_fraction must be < 0\.9"),
    ({"augment": {"image": {"scale_min": 1.2, "scale_max": 1.1}}}, r"scale_min must be <= augment\.image\.scale_max"),
    ({"data": {"source": "csv"}}, r"data\.path is required when data\.source is 'csv'"),
    ({"train": 3}, r"train must be a mapping"),
    ({"early_stopping": {"patience": "three"}}, r"early_stopping\.patience must be an integer >= 1, got 'three'"),
    ({"early_stopping": {"patience": True}}, r"early_stopping\.patience must be an integer >= 1, got True"),
    ({"l1_lambda": -1e-4}, r"l1_lambda must be a finite number >= 0, got -0\.0001"),
    ({"dropout": "0.5"}, r"dropout must be a finite number >= 0 and < 1, got '0\.5'"),
    ({"weight_decay": float("nan")}, r"weight_decay must be a finite number >= 0, got nan"),
    ({"data": {"val_fraction": 0}}, r"data\.val_fraction must be a finite number > 0 and < 1, got 0\.0"),
    ({"data": {"test_fraction": 1.0}}, r"data\.test_fraction must be a finite number > 0 and < 1, got 1\.0"),
    ({"data": {"val_fraction": 0.7, "test_fraction": 0.3}}, r"so the train split keeps at least 10% of the data, "
                                                           r"got 0\.7 \+ 0\.3 = 1\."),
    ([1, 2], r"the top level must be a mapping of keys to values, got \[1, 2\]"),
    ({"train": {"kernel_size": 4}}, r"train\.kernel_size must be an odd integer >= 1 and <= 31, got 4"),
    ({"train": {"label_smoothing": 1.0}}, r"train\.label_smoothing must be a finite number >= 0 and < 1, got 1\.0"),
    ({"train": {"ema_decay": 1.0}}, r"train\.ema_decay must be a finite number >= 0 and < 1, got 1\.0"),
    ({"train": {"ema_decay": -0.5}}, r"train\.ema_decay must be a finite number >= 0 and < 1, got -0\.5"),
    ({"train": {"warmup_epochs": 3, "lr_schedule": "plateau"}}, r"train\.warmup_epochs works with "
                                                                r"train\.lr_schedule constant or cosine, not plateau"),
    ({"train": {"warmup_epochs": 10, "max_epochs": 10}}, r"train\.warmup_epochs \(10\) must be smaller than "
                                                         r"train\.max_epochs \(10\)"),
    ({"train": {"warmup_epochs": -1}}, r"train\.warmup_epochs must be an integer >= 0"),
    ({"train": {"lr_schedule": "step"}}, r"train\.lr_schedule must be one of 'constant', 'plateau', 'cosine'"),
    ({"early_stopping": {"monitor": "auc"}}, r"early_stopping\.monitor must be one of 'val_loss', 'val_accuracy', 'val_auc'"),
    ({"train": {"lr_factor": 1}}, r"train\.lr_factor must be a finite number > 0 and < 1, got 1\.0"),
    ({"train": {"threshold": 1.0}}, r"train\.threshold must be a number > 0 and < 1, or one of 'val_accuracy', "
                                    r"got 1\.0"),
    ({"train": {"threshold": "best"}}, r"train\.threshold must be a number > 0 and < 1, or one of 'val_accuracy', "
                                       r"got 'best'"),
    ({"data": {"source": "ucr"}}, r"data\.name \(e\.g\. 'breastmnist' or 'ECG200'\) or data\.path is required"),
    ({"mlflow": {"register_as": "team/digits"}}, r"mlflow\.register_as must be null or a registered-model name "
                                                 r"without '/', ':' or '@' and without surrounding spaces, got 'team/digits'"),
    ({"mlflow": {"register_as": "digits@champion"}}, r"mlflow\.register_as must be null or .*got 'digits@champion'"),
    ({"mlflow": {"register_as": " digits"}}, r"mlflow\.register_as must be null or .*got ' digits'"),
    ({"mlflow": {"register_as": ""}}, r"mlflow\.register_as must be null or .*got ''"),
    ({"mlflow": {"register_as": 7}}, r"mlflow\.register_as must be null or .*got 7"),
])
def test_bad_values_name_key_range_and_value(raw, match):
    with pytest.raises(GoodfitError, match=match):
        parse_params(raw)


def test_unknown_key_suggests_near_miss():
    with pytest.raises(GoodfitError, match=r"unknown key 'weight_decy'.*Did you mean 'weight_decay'\?"):
        parse_params({"weight_decy": 1e-3})
    with pytest.raises(GoodfitError, match=r"unknown key 'train\.patience' in train\. Did you mean 'early_stopping\.patience'\?"):
        parse_params({"train": {"patience": 3}})


def test_malformed_yaml_reports_line_and_column(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\ntrain:\n  lr: [0.1\n  batch_size: 3\n")
    with pytest.raises(GoodfitError, match=r"not valid YAML at line \d+, column \d+"):
        load_params(path)


@pytest.mark.parametrize("text, match", [
    ("seed: 1\ntrain:\n  lr: 0.1\n  lr: 0.2\n", r"at line 4, column 3: the key 'lr' appears twice \(first on line 3\)"),
    ("seed: 1\ntrain:\n\tlr: 0.1\n", r"not valid YAML at line 3, column 1: found character '\\t'"),
    ("weight_decay: [1e-3\n", r"not valid YAML at line 2, column 1"),
])
def test_yaml_mistakes_report_line_and_column(tmp_path, text, match):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(GoodfitError, match=match):
        load_params(path)


def test_params_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes("seed: 1  # caf\u00e9\n".encode("latin-1"))
    with pytest.raises(GoodfitError, match=r"is not UTF-8 text \(byte 0xe9 at offset 14\); save it as UTF-8"):
        load_params(path)


def test_fractions_that_leave_a_split_empty_fail_at_split_time():
    from goodfit.params import DataParams
    from goodfit.sources import load_dataset
    from goodfit.splitting import make_splits

    params = parse_params({"data": {"val_fraction": 0.001}})  # valid range, but 2 of 1,797 samples for 10 classes
    ds = load_dataset(DataParams(source="digits"))
    with pytest.raises(GoodfitError, match=r"Cannot carve the validation split: .* needs at least one sample of "
                                           r"each of the 10 classes"):
        make_splits(ds, val_fraction=params.data.val_fraction, test_fraction=params.data.test_fraction, seed=0)


def test_missing_file(tmp_path):
    with pytest.raises(GoodfitError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")


def test_flat_dict_has_dotted_keys():
    flat = as_flat_dict(parse_params({}))
    assert flat["train.lr"] == pytest.approx(1e-3)
    assert flat["augment.image.rotation"] == 15.0
    assert flat["train.hidden"] == [64]
