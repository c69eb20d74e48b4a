"""train.search: the train stage fits a small grid and keeps the best candidate on validation."""

import pytest

from goodfit.errors import GoodfitError
from goodfit.params import SEARCH_LIMIT, parse_params


# ------------------------------------------------------------------ the param
@pytest.mark.parametrize("grid, match", [
    (3, r"train\.search must be null \(no search\) or a mapping from a param to the list of values to try, "
        r"e\.g\. \{weight_decay: \[0\.0, 1\.0e-4, 1\.0e-3\], dropout: \[0\.2, 0\.5\]\}, got 3\."),
    ({"lr": [1e-3]}, r"train\.search cannot search 'lr'\. Did you mean 'train\.lr'\? The keys a search can set: "
                     r"weight_decay, l1_lambda, dropout, train\.lr, train\.label_smoothing, train\.channels, "
                     r"train\.hidden\."),
    ({"weight_decy": [0.0]}, r"train\.search cannot search 'weight_decy'\. Did you mean 'weight_decay'\?"),
    ({"augment.copies": [0, 4]}, r"train\.search cannot search 'augment\.copies'\. augment\.copies is a param, but "
                                 r"not one a search can vary \(the stages before train make its data\): sweep it "
                                 r"with `dvc exp run --queue -S augment\.copies=\.\.\.` instead\."),
    ({"train.max_epochs": [3]}, r"train\.search cannot search 'train\.max_epochs'\. train\.max_epochs is a param, "
                                r"but not one"),
    ({"colour": [1]}, r"train\.search cannot search 'colour'\. The keys a search can set: weight_decay"),
    ({"dropout": []}, r"train\.search\.dropout must be a non-empty list of the values to try, e\.g\. \[0\.0, "
                      r"1\.0e-4\], got \[\]\."),
    ({"dropout": 0.3}, r"train\.search\.dropout must be a non-empty list of the values to try, .*got 0\.3\."),
    ({"dropout": [0.2, 1.0]}, r"train\.search\.dropout\[1\] must be a finite number >= 0 and < 1, got 1\.0\."),
    ({"weight_decay": [0.0, "lots"]}, r"train\.search\.weight_decay\[1\] must be a finite number >= 0, got 'lots'\."),
    ({"train.lr": [True]}, r"train\.search\.train\.lr\[0\] must be a finite number > 0, got True\."),
    ({"train.channels": [8, 16]}, r"train\.search\.train\.channels\[0\] must be a list of at least 1 integers >= 1, "
                                  r"got 8 \(each value to try is itself a list, e\.g\. \[\[8, 16\], \[16, 32\]\]\)\."),
    ({"train.hidden": [[16], [16]]}, r"train\.search\.train\.hidden lists \[16\] twice \(items 0 and 1\); keep one"),
    ({"weight_decay": [0, 1e-5, 1e-4, 1e-3, 1e-2], "dropout": [0.1, 0.2, 0.3, 0.4], "l1_lambda": [0, 1e-5, 1e-4, 1e-3]},
     rf"train\.search makes 5 \(weight_decay\) x 4 \(dropout\) x 4 \(l1_lambda\) = 80 candidates, more than the "
     rf"{SEARCH_LIMIT} one train stage fits\. Drop values, or search fewer keys here and sweep the others with "
     r"`dvc exp run --queue -S \.\.\.`\."),
])
def test_a_bad_grid_says_what_is_wrong_and_how_to_fix_it(grid, match):
    with pytest.raises(GoodfitError, match=r"^params\.yaml: " + match):
        parse_params({"train": {"search": grid}})


def test_null_or_an_empty_grid_is_off_and_a_grid_keeps_its_order():
    assert parse_params({}).train.search is None
    assert parse_params({"train": {"search": None}}).train.search is None
    assert parse_params({"train": {"search": {}}}).train.search is None
    grid = parse_params({"train": {"search": {"train.channels": [[8, 16], [4]], "weight_decay": [0, 1e-3]}}}).train.search
    assert grid == {"train.channels": [[8, 16], [4]], "weight_decay": [0.0, 1e-3]}
    assert list(grid) == ["train.channels", "weight_decay"] and isinstance(grid["weight_decay"][0], float)
