import math

import pytest
import torch

from goodfit.early_stopping import STOP_NON_FINITE, STOP_PATIENCE, EarlyStopping
from goodfit.errors import GoodfitError


def run(losses, **kw):
    es = EarlyStopping(path=None, **kw)
    for epoch, loss in enumerate(losses, start=1):
        es(loss)
        if es.early_stop:
            return es, epoch
    return es, None


@pytest.mark.parametrize("losses, patience, delta, stop_epoch, best_epoch", [
    ([1.0, 0.9, 0.8, 0.7], 2, 0.0, None, 4),                      # keeps improving
    ([1.0, 0.9, 0.95, 0.96], 2, 0.0, 4, 2),                       # turns up: stop after 2 bad epochs
    ([0.5, 0.5, 0.5, 0.5], 3, 0.0, 4, 1),                         # constant loss must stop
    ([1.0, 0.99, 0.985, 0.98], 2, 0.05, 3, 1),                    # gains smaller than delta do not count
    ([1.0, 0.8, 0.85, 0.7, 0.75, 0.76, 0.77], 3, 0.0, 7, 4),     # counter resets on improvement
    ([1.0, 1.1], 1, 0.0, 2, 1),                                   # patience 1
])
def test_stop_and_best_epoch_table(losses, patience, delta, stop_epoch, best_epoch):
    es, stopped = run(losses, patience=patience, delta=delta)
    assert stopped == stop_epoch
    assert es.best_epoch == best_epoch
    if stopped:
        assert es.stop_reason == STOP_PATIENCE


def test_mode_max_for_accuracy():
    es, stopped = run([0.5, 0.7, 0.69, 0.71, 0.70, 0.70], patience=2, mode="max")
    assert es.best_epoch == 4 and stopped == 6


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_value_stops_with_reason(bad):
    es, stopped = run([1.0, 0.9, bad, 0.1], patience=5)
    assert stopped == 3
    assert es.stop_reason == STOP_NON_FINITE
    assert es.best_epoch == 2


def test_lesson_messages_in_japanese():
    lines = []
    es = EarlyStopping(patience=2, verbose=True, path=None, trace_func=lines.append)
    for loss in (0.686566, 0.683647, 0.69, 0.70):
        es(loss)
    assert lines[1] == "検証損失が改善しました (0.686566 --> 0.683647)。モデルを保存します..."
    assert lines[2] == "アーリーストッピングカウンター: 1 / 2"
    assert lines[-1] == "早期終了します。"


@pytest.mark.parametrize("monitor, language, mode, first", [
    ("val_auc", "ja", "max", "検証AUCが改善しました (-inf --> 0.996134)。モデルを保存します..."),
    ("val_accuracy", "ja", "max", "検証正解率が改善しました (-inf --> 0.996134)。モデルを保存します..."),
    ("val_loss", "en", "min", "Validation loss improved (inf --> 0.996134). Saving model ..."),
    ("val_auc", "en", "max", "Validation AUC improved (-inf --> 0.996134). Saving model ..."),
    ("val_accuracy", "en", "max", "Validation accuracy improved (-inf --> 0.996134). Saving model ..."),
])
def test_messages_name_the_monitored_value(monitor, language, mode, first):
    lines = []
    es = EarlyStopping(patience=2, verbose=True, path=None, trace_func=lines.append, mode=mode, language=language,
                       monitor=monitor)
    es(0.996134)
    es(math.nan)
    assert lines[0] == first
    what = first.split("が")[0] if language == "ja" else first.split(" improved")[0]
    assert lines[1].startswith(f"{what}が有限ではありません" if language == "ja" else f"{what} is not finite")


def test_english_messages():
    lines = []
    es = EarlyStopping(patience=1, verbose=True, path=None, trace_func=lines.append, language="en")
    es(1.0)
    es(1.0)
    assert lines[-1] == "Early stopping."


def test_checkpoint_file_and_restore_best(tmp_path):
    model = torch.nn.Linear(2, 1)
    path = tmp_path / "checkpoint.pt"
    es = EarlyStopping(patience=2, path=str(path))
    es(1.0, model)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(5.0)
    es(2.0, model)
    assert path.is_file()
    assert torch.equal(torch.load(path, weights_only=True)["weight"], best["weight"])
    assert es.restore_best(model)
    assert torch.equal(model.weight, best["weight"])


def test_state_dict_round_trip_resumes_same_decisions():
    a, _ = run([1.0, 0.9, 0.95], patience=3)
    b = EarlyStopping(patience=3, path=None)
    b.load_state_dict(a.state_dict())
    for es in (a, b):
        es(0.96)
        es(0.97)
    assert a.state_dict() == b.state_dict()
    assert b.early_stop and b.best_epoch == 2


def test_load_state_dict_rejects_incomplete_state():
    with pytest.raises(GoodfitError, match="missing 'delta'"):
        EarlyStopping(path=None).load_state_dict({"patience": 3})


@pytest.mark.parametrize("kw, match", [
    ({"patience": 0}, r"The 'patience' parameter must be an int >= 1, got 0\."),
    ({"patience": 2.0}, r"'patience' parameter must be an int >= 1, got 2\.0"),
    ({"delta": -0.1}, r"The 'delta' parameter must be a finite float >= 0, got -0\.1\."),
    ({"mode": "up"}, r"The 'mode' parameter must be 'min' or 'max', got 'up'\."),
    ({"monitor": "train_loss"}, r"The 'monitor' parameter must be one of val_loss, val_accuracy, val_auc, got "
                                r"'train_loss'\."),
])
def test_bad_arguments(kw, match):
    with pytest.raises(GoodfitError, match=match):
        EarlyStopping(**kw)


def test_lesson_defaults():
    es = EarlyStopping()
    assert (es.patience, es.verbose, es.delta, es.path, es.trace_func) == (7, False, 0.0, "checkpoint.pt", print)
    assert es.val_loss_min == math.inf


@pytest.mark.parametrize("losses, patience", [([1.0, 0.9, 0.95], 3), ([1.0, 1.1, 1.2], 2), ([1.0, math.nan], 3)])
def test_a_loaded_state_is_the_saved_one(losses, patience):
    """Right after load_state_dict a stopper is in the saved state: a stopped one stays stopped, for the
    saved reason, and every counter is the saved one."""
    saved, _ = run(losses, patience=patience)
    loaded = EarlyStopping(patience=patience, path=None)
    loaded.load_state_dict(saved.state_dict())
    assert loaded.state_dict() == saved.state_dict()
    assert (loaded.early_stop, loaded.stop_reason) == (saved.early_stop, saved.stop_reason)


def test_loading_a_state_keeps_this_stoppers_best_weights():
    """The state holds no weights: the best weights a stopper saved itself survive a load_state_dict."""
    model = torch.nn.Linear(2, 1)
    es = EarlyStopping(patience=3, path=None)
    es(1.0, model)
    best = model.weight.detach().clone()
    es.load_state_dict(es.state_dict())
    with torch.no_grad():
        model.weight.add_(5.0)
    assert es.restore_best(model)
    assert torch.equal(model.weight, best)


def test_restore_best_without_a_best_epoch_leaves_the_model_alone():
    """Before any finite value there are no best weights: restore_best says so and changes nothing."""
    model = torch.nn.Linear(2, 1)
    before = model.weight.detach().clone()
    es = EarlyStopping(patience=3, path=None)
    es(math.nan, model)
    assert es.restore_best(model) is False
    assert torch.equal(model.weight, before)


@pytest.mark.parametrize("delta", [math.inf, math.nan, True])
def test_delta_must_be_a_finite_number(delta):
    with pytest.raises(GoodfitError, match=r"The 'delta' parameter must be a finite float >= 0"):
        EarlyStopping(delta=delta, path=None)


def test_a_new_stopper_has_counted_nothing():
    """Before its first call a stopper has no best epoch, no count, no stop and no reason."""
    assert EarlyStopping(patience=3, path=None).state_dict() == {
        "patience": 3, "delta": 0.0, "mode": "min", "counter": 0, "best_score": None, "best_epoch": None,
        "epoch": 0, "early_stop": False, "stop_reason": None}


@pytest.mark.parametrize("bad", [math.nan, -math.inf])
def test_a_non_finite_value_is_no_improvement_and_its_message_names_it(bad):
    lines = []
    es = EarlyStopping(patience=3, verbose=True, path=None, trace_func=lines.append, language="en")
    assert es(bad) is False
    assert lines == [f"Validation loss is not finite ({bad}). Stopping."]
