import pytest

from goodfit.errors import GoodfitError
from goodfit.params import as_flat_dict, load_params, parse_params

from conftest import ROOT


def test_project_params_file_is_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.data.source == "digits"
    assert params.early_stopping.patience == 7


def test_scientific_notation_is_a_float(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("weight_decay: 1e-3\nl1_lambda: 5e-5\n")
    params = load_params(path)
    assert params.weight_decay == pytest.approx(1e-3)
    assert params.l1_lambda == pytest.approx(5e-5)


@pytest.mark.parametrize("raw, match", [
    ({"early_stopping": {"patience": 0}}, r"early_stopping\.patience must be an integer >= 1, got 0"),
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


def test_missing_file(tmp_path):
    with pytest.raises(GoodfitError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")


def test_flat_dict_has_dotted_keys():
    flat = as_flat_dict(parse_params({}))
    assert flat["train.lr"] == pytest.approx(1e-3)
    assert flat["augment.image.rotation"] == 15.0
    assert flat["train.hidden"] == [64]
