"""Presets: merged into params.yaml in place (comments kept), validated first, shipped presets valid."""

import subprocess
import sys

import pytest

from goodfit.errors import GoodfitError
from goodfit.params import load_params
from goodfit.preset import apply_preset, available

from conftest import ROOT


@pytest.fixture
def project(tmp_path):
    (tmp_path / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    (tmp_path / "presets").mkdir()
    return tmp_path


def test_merge_keeps_comments_and_other_keys(project):
    (project / "presets" / "tiny.yaml").write_text(
        "dropout: 0.5\ndata:\n  source: ucr\n  name: ECG200\ntrain:\n  channels: [8, 16]\n")
    changed = apply_preset("tiny", params_path=project / "params.yaml", presets_dir=project / "presets")
    assert changed == ["dropout", "data.source", "data.name", "train.channels"]
    text = (project / "params.yaml").read_text()
    assert "# L2: optimizer weight decay on weights (not biases); >= 0" in text  # comments survive
    params = load_params(project / "params.yaml")
    assert params.dropout == 0.5 and params.data.name == "ECG200" and params.train.channels == (8, 16)
    assert params.weight_decay == load_params(ROOT / "params.yaml").weight_decay  # untouched keys stay


def test_invalid_preset_writes_nothing(project):
    before = (project / "params.yaml").read_bytes()
    (project / "presets" / "bad.yaml").write_text("train:\n  kernel_size: 4\n")
    with pytest.raises(GoodfitError, match=r"Preset 'bad' gives invalid params, nothing was written: .*"
                                           r"train\.kernel_size must be an odd integer"):
        apply_preset("bad", params_path=project / "params.yaml", presets_dir=project / "presets")
    (project / "presets" / "broken.yaml").write_text("train: [\n")
    with pytest.raises(GoodfitError, match=r"broken\.yaml is not valid YAML"):
        apply_preset("broken", params_path=project / "params.yaml", presets_dir=project / "presets")
    with pytest.raises(GoodfitError, match=r"There is no preset 'nope' .*available: bad, broken"):
        apply_preset("nope", params_path=project / "params.yaml", presets_dir=project / "presets")
    assert (project / "params.yaml").read_bytes() == before


@pytest.mark.parametrize("name", available(ROOT / "presets"))
def test_shipped_presets_are_valid_and_name_no_path(project, name):
    apply_preset(name, params_path=project / "params.yaml", presets_dir=ROOT / "presets")
    params = load_params(project / "params.yaml")
    assert params.data.source in ("medmnist", "ucr") and params.data.path is None


def test_command_line(project):
    (project / "presets" / "tiny.yaml").write_text("seed: 7\n")
    run = lambda *a: subprocess.run([sys.executable, "-m", "goodfit.preset", *a], cwd=project,  # noqa: E731
                                    capture_output=True, text=True)
    assert run("--list").stdout.split() == ["tiny"]
    ok = run("tiny")
    assert ok.returncode == 0 and "preset tiny: 1 key(s) changed in params.yaml: seed" in ok.stdout
    bad = run("missing")
    assert bad.returncode == 2 and "There is no preset 'missing'" in bad.stderr and "Traceback" not in bad.stderr
