import numpy as np
import pytest

from goodfit import plots


def history():
    return [{"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e + 0.01 * e} for e in range(1, 11)]


def is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("language", ["ja", "en"])
def test_learning_curve_is_reproducible(tmp_path, language):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    plots.learning_curve(history(), a, best_epoch=4, verdict="overfitting", language=language)
    plots.learning_curve(history(), b, best_epoch=4, verdict="overfitting", language=language)
    assert is_png(a) and a.read_bytes() == b.read_bytes()


def test_japanese_font_has_the_glyphs():
    plt = plots._pyplot()
    from matplotlib import font_manager

    font = font_manager.findfont(plt.rcParams["font.family"][0], fallback_to_default=False)
    from matplotlib.ft2font import FT2Font

    ft = FT2Font(font)
    chars = set("".join(plots.text("ja")["train"] + plots.text("ja")["title"] + plots.text("ja")["epoch"]))
    missing = [c for c in chars if c.strip() and ft.get_char_index(ord(c)) == 0]
    assert not missing, f"font {font} lacks {missing}"


@pytest.mark.parametrize("modality, shape", [("image", (2, 1, 8, 8)), ("timeseries", (2, 1, 30)),
                                             ("tabular", (2, 6))])
def test_gallery_for_each_modality(tmp_path, modality, shape):
    rng = np.random.default_rng(0)
    x = rng.random(shape)
    variants = rng.random((shape[0], 3) + shape[1:])
    path = tmp_path / f"{modality}.png"
    plots.augmentation_gallery(modality, x, variants, path, labels=["a", "b"], mean=[0.5] * shape[1],
                               std=[0.2] * shape[1])
    assert is_png(path)


def test_confusion_matrix(tmp_path):
    plots.confusion_matrix(np.array([[3, 1], [0, 4]]), ["悪性", "良性"], tmp_path / "c.png")
    assert is_png(tmp_path / "c.png")


def test_learning_curve_comparison(tmp_path):
    runs = {"with": [history(), history()[:6]], "without": [history()]}
    plots.learning_curve_comparison(runs, tmp_path / "a.png", title="t")
    plots.learning_curve_comparison(runs, tmp_path / "b.png", title="t")
    assert is_png(tmp_path / "a.png") and (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
