"""Portable numerics (repro.portable): the environment that pins torch's and numpy's CPU kernels."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_stage_script, write_params
from goodfit.errors import GoodfitError
from goodfit.numerics import (PORTABLE_ENV, bfloat16_cpu_problem, cpu_flags, describe, pin, pin_for_stage,
                              portable_from_params)


def _cpu_flags() -> set[str]:
    return cpu_flags() or set()


def test_pin_sets_every_variable_and_off_leaves_the_environment_alone():
    env = {"ATEN_CPU_CAPABILITY": "avx512", "HOME": "/home/u"}
    assert pin(True, environ=env) == dict(PORTABLE_ENV)
    assert env == {**PORTABLE_ENV, "HOME": "/home/u"}  # a user's avx512 is overridden: portable means portable
    untouched = {"ATEN_CPU_CAPABILITY": "avx512"}
    assert pin(False, environ=untouched) == {} and untouched == {"ATEN_CPU_CAPABILITY": "avx512"}


@pytest.mark.parametrize("text, expected", [
    ("seed: 1\n", True),                            # absent: the default, on
    ("repro:\n  portable: false\n", False),
    ("repro:\n  portable: true\n", True),
    ("repro:\n  portable: 'no'\n", True),          # not a bool: the params loader reports it; pin stays on
    ("repro: [\n", True),                          # malformed YAML: likewise
])
def test_portable_from_params(tmp_path, text, expected):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert portable_from_params(path) is expected


def test_portable_from_a_missing_file_is_on(tmp_path):
    assert portable_from_params(tmp_path / "nope.yaml") is True


def test_pin_for_stage_reads_the_params_file_the_stage_is_given(tmp_path, monkeypatch):
    off = tmp_path / "off.yaml"
    off.write_text("repro:\n  portable: false\n")
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the default would be on
    assert pin_for_stage(["--params", str(off)]) == {}
    assert pin_for_stage([f"--params={off}"]) == {}


def test_pin_refuses_when_torch_was_imported_first(monkeypatch):
    import torch  # noqa: F401  (the test process has it loaded, as a library user's notebook would)

    for key in PORTABLE_ENV:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(GoodfitError, match="repro.portable is true but torch .*imported before .*ATEN_CPU_CAPABILITY"):
        pin(True)
    assert "ATEN_CPU_CAPABILITY" not in os.environ  # nothing half-set


def _stage_view(cwd: Path, env: dict) -> dict:
    """What a stage process sees after ``import _goodfit``: torch's capability and the pinned variables."""
    code = ("import sys, json, os; sys.path.insert(0, sys.argv[1]); import _goodfit, torch; "
            "print(json.dumps({'cap': torch.backends.cpu.get_cpu_capability(), "
            "'mkl': os.environ.get('MKL_CBWR'), 'onednn': os.environ.get('ONEDNN_MAX_CPU_ISA')}))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "stages")], cwd=cwd, capture_output=True,
                         text=True, timeout=120, env={**os.environ, **env}, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not {"avx2", "fma"} <= _cpu_flags(), reason="this CPU has no AVX2 + FMA")
def test_a_stage_process_runs_avx2_kernels_even_when_the_environment_asks_for_more(tmp_path):
    write_params(tmp_path / "params.yaml")
    view = _stage_view(tmp_path, {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO"})
    assert view == {"cap": "AVX2", "mkl": "COMPATIBLE", "onednn": "AVX2"}


@pytest.mark.skipif("avx512f" not in _cpu_flags(), reason="needs a CPU with AVX-512 to see the difference")
def test_portable_false_keeps_the_cpus_own_kernels(tmp_path):
    write_params(tmp_path / "params.yaml", repro={"portable": False})
    clean = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}  # as a user's shell would be
    code = ("import sys, json, os; sys.path.insert(0, sys.argv[1]); import _goodfit, torch; "
            "print(torch.backends.cpu.get_cpu_capability())")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "stages")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=clean, check=True).stdout
    assert out.strip().splitlines()[-1] in ("AVX512", "AVX512_BF16", "AMX")  # not pinned down to AVX2


def test_describe_names_the_kernels_in_use():
    tags = describe(True)
    import torch

    assert tags["goodfit.numerics.portable"] == "true"
    assert tags["goodfit.numerics.aten_capability"] == torch.backends.cpu.get_cpu_capability()
    assert tags["goodfit.numerics.torch"] == torch.__version__ and tags["goodfit.numerics.cpu"]
    assert all(isinstance(v, str) and v for v in tags.values())


def test_stages_log_the_numerics_as_mlflow_tags_not_into_outputs(project):
    result = run_stage_script("split", project)
    assert result.returncode == 0, result.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name("goodfit")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`goodfit.stage` = 'split'")
    tags = runs[0].data.tags
    assert tags["goodfit.numerics.portable"] == "true"
    assert tags["goodfit.numerics.aten_capability"] in ("AVX2", "DEFAULT")  # pinned (DEFAULT: a CPU without AVX2)
    written = b"".join(p.read_bytes() for p in (project / "data").rglob("*") if p.is_file())
    assert tags["goodfit.numerics.cpu"].encode() not in written


# ------------------------------------------------------------------ bfloat16 on the CPU (train.amp)
X86 = {"sse2", "avx2", "fma", "avx512f"}


def test_cpu_flags_read_x86_and_arm_cpuinfo():
    assert cpu_flags("processor\t: 0\nflags\t\t: fpu sse2 avx2\n") == {"fpu", "sse2", "avx2"}
    assert cpu_flags("processor\t: 0\nFeatures\t: fp asimd bf16\n") == {"fp", "asimd", "bf16"}
    assert cpu_flags("no flags here\n") is None


@pytest.mark.parametrize("flags, env, reason", [
    (X86, {}, "no bfloat16 units (its flags have neither avx512_bf16 nor amx_bf16)"),     # AVX2 / AVX-512 only
    (X86, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "no bfloat16 units"),                         # the CPU's reason first
    (X86 | {"avx512_bf16"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "oneDNN is capped at AVX2"),  # portable numerics
    (X86 | {"amx_bf16"}, {"DNNL_MAX_CPU_ISA": "avx2"}, "repro.portable: true sets it"),  # the older name, any case
])
def test_bfloat16_is_slow_without_units_or_with_onednn_capped(flags, env, reason):
    assert reason in bfloat16_cpu_problem(flags, env)


@pytest.mark.parametrize("flags, env", [
    (X86 | {"avx512_bf16"}, {}),                                      # bfloat16 units, oneDNN free
    (X86 | {"amx_bf16"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}),  # capped, but above its bfloat16 kernels
    ({"fp", "asimd"}, {}),                                            # not x86: nothing known, nothing refused
    (None, {}),                                                       # no /proc/cpuinfo
])
def test_bfloat16_is_not_refused_where_nothing_says_it_is_slow(flags, env):
    assert bfloat16_cpu_problem(flags, env) is None


def test_the_train_stage_refuses_amp_under_portable_numerics_and_writes_nothing(prepared, tmp_path, mlflow_template):
    # portable numerics cap oneDNN at AVX2 on every CPU, so this refusal is the same on all machines
    from conftest import clone_prepared, fresh_store

    cwd = clone_prepared(prepared, tmp_path / "p")
    write_params(cwd / "params.yaml", train={"amp": True})
    result = run_stage_script("train", cwd, env=fresh_store(mlflow_template, cwd / "mlflow.db"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train.amp is true" in result.stderr and "Set train.amp: false" in result.stderr
    assert not (cwd / "models").exists() and not (cwd / "reports" / "train").exists()
