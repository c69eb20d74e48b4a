import pytest

from goodfit.reprocheck import classify_changes, compare_metrics, diff_locks, numerics_note, other_differences

LOCK = """schema: '2.0'
stages:
  train:
    cmd: python stages/train.py
    deps:
    - path: goodfit
      md5: aaa.dir
    params:
      params.yaml:
        weight_decay: 0.0001
    outs:
    - path: models/model.pt
      md5: {out}
"""


def test_identical_locks_have_no_differences():
    assert diff_locks(LOCK.format(out="x"), LOCK.format(out="x")) == []


def test_output_difference_names_stage_and_file():
    assert diff_locks(LOCK.format(out="x"), LOCK.format(out="y")) == [("train", "outs", "models/model.pt")]


def test_param_and_dep_changes_are_reported_as_such():
    changed = LOCK.format(out="x").replace("0.0001", "0.001").replace("aaa.dir", "bbb.dir")
    assert diff_locks(LOCK.format(out="x"), changed) == [("train", "deps", "goodfit"),
                                                         ("train", "params", "params.yaml")]


def test_metrics_within_and_beyond_tolerance():
    a = {"test": {"accuracy": 0.95, "roc_auc": 0.99}, "fit": {"verdict": "good_fit", "best_epoch": 10}}
    b = {"test": {"accuracy": 0.94, "roc_auc": 0.99}, "fit": {"verdict": "good_fit", "best_epoch": 10}}
    assert compare_metrics(a, b, atol=0.02) == []
    problems = compare_metrics(a, b, atol=0.001)
    assert problems == ["test.accuracy: committed 0.95, reproduced 0.94 (|diff| > 0.001)"]
    assert "present in only one" in compare_metrics(a, {"test": {"accuracy": 0.95}}, atol=1)[0]


def test_only_test_metrics_are_judged_epochs_are_listed():
    committed = {"test": {"accuracy": 0.985, "log_loss": 0.022}, "best_epoch": 48, "stopped_epoch": 55,
                 "fit": {"gap_at_best": -0.16}}
    elsewhere = {"test": {"accuracy": 0.974, "log_loss": 0.047}, "best_epoch": 33, "stopped_epoch": 40,
                 "fit": {"gap_at_best": -0.12}}
    assert compare_metrics(committed, elsewhere, atol=0.03) == []  # 1.1 points, 0.025 log loss: within 0.03
    assert compare_metrics(committed, elsewhere, atol=0.02) == [
        "test.log_loss: committed 0.022, reproduced 0.047 (|diff| > 0.02)"]
    assert other_differences(committed, elsewhere) == [
        "best_epoch 48.0 -> 33.0", "fit.gap_at_best -0.16 -> -0.12", "stopped_epoch 55.0 -> 40.0"]
    assert other_differences(committed, committed) == []


def test_the_numerics_note_says_whether_this_cpu_should_have_matched(tmp_path):
    (tmp_path / "params.yaml").write_text("repro:\n  portable: false\n")
    assert "repro.portable is false" in numerics_note(tmp_path)
    (tmp_path / "params.yaml").write_text("repro:\n  portable: true\n")
    note = numerics_note(tmp_path)
    assert "should have matched" in note and note.startswith("this CPU: ")


PIPELINE_LOCK = """schema: '2.0'
stages:
  split:
    deps:
    - path: goodfit
      md5: code1.dir
    - path: data/raw
      md5: raw1.dir
    outs:
    - path: data/split
      md5: {split}.dir
  train:
    deps:
    - path: goodfit
      md5: code1.dir
    - path: data/split/train.npz
      md5: {train_npz}
    outs:
    - path: models/model.pt
      md5: {model}
  evaluate:
    deps:
    - path: models/model.pt
      md5: {model}
    params:
      params.yaml:
        diagnosis.noise_floor: 0.02
    outs:
    - path: reports/metrics.json
      md5: {metrics}
"""


def _lock(**kw):
    values = {"split": "s1", "train_npz": "t1", "model": "m1", "metrics": "r1", **kw}
    return PIPELINE_LOCK.format(**values)


def test_another_machines_bits_flow_through_downstream_deps_without_calling_the_lock_stale():
    stale, numerics = classify_changes(_lock(), _lock(model="m2", metrics="r2"))
    assert stale == []
    assert numerics == [("evaluate", "deps", "models/model.pt"), ("evaluate", "outs", "reports/metrics.json"),
                        ("train", "outs", "models/model.pt")]
    stale, _ = classify_changes(_lock(), _lock(split="s2", train_npz="t2"))  # a file inside an output folder
    assert stale == []


def test_changed_code_params_or_data_make_the_lock_stale():
    for old, new, entry in (("code1", "code2", ("split", "deps", "goodfit")),
                            ("raw1", "raw2", ("split", "deps", "data/raw")),
                            ("0.02", "0.05", ("evaluate", "params", "params.yaml"))):
        stale, _ = classify_changes(_lock(), _lock().replace(old, new))
        assert entry in stale


@pytest.mark.slow
def test_check_repro_end_to_end_calls_other_kernels_another_machines_numerics(tmp_path):
    """The committed run made with one set of CPU kernels, check-repro run with another (repro.portable off)."""
    import subprocess
    import sys

    from ruamel.yaml import YAML

    from test_pipeline import make_repo, sh

    root, env = make_repo(tmp_path)
    y = YAML()
    params = y.load((root / "params.yaml").read_text())
    params["repro"]["portable"] = False
    with (root / "params.yaml").open("w") as fh:
        y.dump(params, fh)
    env = {**env, "ATEN_CPU_CAPABILITY": "avx2"}
    sh("dvc repro && git add -A && git commit -qm 'committed run'", root, env)
    check = [sys.executable, "-m", "goodfit.reprocheck"]

    same = subprocess.run(check, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert same.returncode == 0 and "reproducibility: bit-for-bit" in same.stdout, same.stdout

    other = subprocess.run(check + ["--atol", "1"], cwd=root, env={**env, "ATEN_CPU_CAPABILITY": "default"},
                           capture_output=True, text=True, timeout=900)
    assert other.returncode == 0, other.stdout
    assert "(b) another machine's numerics" in other.stdout and "stale" not in other.stdout
    assert "repro.portable is false" in other.stdout
    assert "reproducibility: another machine's numerics, test metrics within tolerance" in other.stdout

    (root / "goodfit" / "__init__.py").write_text((root / "goodfit" / "__init__.py").read_text() + "\n# edit\n")
    sh("git commit -qam 'code changed, lock not re-run'", root, env)
    stale = subprocess.run(check, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert stale.returncode == 1 and "committed dvc.lock is stale: stage 'split' deps 'goodfit'" in stale.stdout
