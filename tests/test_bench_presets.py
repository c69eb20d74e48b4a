"""benchmarks/presets.py's command line: --set KEY=VALUE overrides (the runs themselves need the real data)."""

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("presets")


def test_set_builds_nested_overrides(bench):
    assert bench._override("train.kernel_size=5") == {"train": {"kernel_size": 5}}
    assert bench._override("weight_decay=5e-2") == {"weight_decay": 0.05}  # YAML 1.2 float, as params.yaml
    assert bench._override("train.channels=[16, 32]") == {"train": {"channels": [16, 32]}}


@pytest.mark.parametrize("bad", ["dropout", "=0.5"])
def test_set_without_key_or_value_is_refused(bench, capsys, bad):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["ecg200", "--data-path", ".", "--validation-only", "--set", bad])
    assert exit_info.value.code == 2
    assert f"--set takes KEY=VALUE (e.g. train.kernel_size=5), got '{bad}'" in capsys.readouterr().err
