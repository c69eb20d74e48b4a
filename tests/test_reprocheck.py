from goodfit.reprocheck import compare_metrics, diff_locks

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
