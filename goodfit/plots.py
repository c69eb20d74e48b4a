"""Figures with Japanese (or English) labels: learning curves, augmentation
gallery, confusion matrix. The only module that imports matplotlib."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from goodfit.io import atomic_write_bytes

_TEXT = {
    "ja": {
        "train": "訓練損失 (Train Loss)",
        "train_eval": "訓練損失・評価モード (Train loss, eval mode, originals)",
        "train_as_trained": "訓練損失・学習中 (as trained: augmented, dropout on)",
        "val": "検証損失 (Validation Loss)",
        "epoch": "エポック (Epoch)",
        "loss": "損失 (Loss)",
        "title": "訓練と検証の損失の推移",
        "best": "最良エポック {epoch} (Best)",
        "folds": "{k} 分割交差検証のメンバー (members of {k}-fold CV)",
        "verdict": {"overfitting": "過学習 (overfitting)", "underfitting": "学習不足 (underfitting)",
                    "good_fit": "ちょうど良い学習 (good fit)"},
        "original": "元画像 (Original)",
        "variant": "拡張 {i}",
        "gallery": "データ拡張の例 (Data Augmentation)",
        "series_original": "元波形 (Original)",
        "time": "時間 (Time)",
        "amplitude": "振幅 (Amplitude)",
        "feature": "特徴量 (Feature)",
        "value": "値 (Value)",
        "confusion": "混同行列 (Confusion Matrix)",
        "reliability": "信頼性図 (Reliability diagram)",
        "prob_binary": "予測確率 P(クラス {name}) (Predicted probability)",
        "freq_binary": "実際の割合 (Observed frequency of {name})",
        "prob_multi": "最大予測確率 (Top-class confidence)",
        "freq_multi": "正解率 (Accuracy)",
        "ideal": "完全な較正 (Perfectly calibrated)",
        "model_ece": "モデル (ECE {ece:.3f})",
        "calibrated_ece": "温度スケーリング後 T={t:.3g} (ECE {ece:.3f})",
        "uncalibrated_ece": "較正前 (ECE {ece:.3f})",
        "count": "件数 (Count)",
        "true": "正解 (True)",
        "pred": "予測 (Predicted)",
    },
    "en": {
        "train": "Train Loss",
        "train_eval": "Train loss (eval mode, originals)",
        "train_as_trained": "Train loss as trained (augmented, dropout on)",
        "val": "Validation Loss",
        "epoch": "Epoch",
        "loss": "Loss",
        "title": "Training and validation loss",
        "best": "Best epoch {epoch}",
        "folds": "members of {k}-fold cross-validation",
        "verdict": {"overfitting": "overfitting", "underfitting": "underfitting", "good_fit": "good fit"},
        "original": "Original",
        "variant": "Augmented {i}",
        "gallery": "Data augmentation",
        "series_original": "Original",
        "time": "Time",
        "amplitude": "Amplitude",
        "feature": "Feature",
        "value": "Value",
        "confusion": "Confusion matrix",
        "reliability": "Reliability diagram",
        "prob_binary": "Predicted probability of {name}",
        "freq_binary": "Observed frequency of {name}",
        "prob_multi": "Top-class confidence",
        "freq_multi": "Accuracy",
        "ideal": "Perfectly calibrated",
        "model_ece": "Model (ECE {ece:.3f})",
        "calibrated_ece": "Temperature-scaled, T={t:.3g} (ECE {ece:.3f})",
        "uncalibrated_ece": "Before calibration (ECE {ece:.3f})",
        "count": "Count",
        "true": "True",
        "pred": "Predicted",
    },
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:  # japanize-matplotlib (Python <= 3.11) or its maintained fork
        import japanize_matplotlib  # noqa: F401
    except ImportError:  # pragma: no cover - Python 3.12+
        import matplotlib_fontja  # noqa: F401
    plt.rcParams["svg.hashsalt"] = "goodfit"
    return plt


def text(language: str) -> dict:
    """The label set for ``language`` (``ja`` or ``en``)."""
    return _TEXT[language]


def _save(fig, path) -> None:
    plt = _pyplot()
    buf = io.BytesIO()
    # No Software/date metadata: identical figures give identical bytes.
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def learning_curve(history: Sequence[dict], path, *, best_epoch: int | None = None,
                   verdict: str | None = None, language: str = "ja") -> None:
    """Train and validation loss per epoch, a vertical mark at the best epoch, the verdict in the title.

    The training loss measured like the validation loss (``train_eval_loss``: the
    training originals in eval mode at the epoch's end) is the solid blue curve; the
    loss as trained (``train_loss``: the epoch's running mean over augmented copies with
    dropout on) is drawn lighter and dashed, so its gap to the validation curve is not
    read as "validation better than training". A history without ``train_eval_loss``
    (from before it was measured) draws ``train_loss`` as the training curve.

    A history with a ``fold`` column (``train.folds > 1``) gets one set of curves per
    member, without the best-epoch mark (each member has its own)."""
    from goodfit.history import split_folds, train_measure

    plt = _pyplot()
    t = _TEXT[language]
    fig, ax = plt.subplots(figsize=(8, 5))
    members = split_folds(history)
    like_for_like = train_measure(history) == "train_eval_loss"
    for i, rows in enumerate(members or [history]):
        epochs = [r["epoch"] for r in rows]
        style = {} if members is None else {"lw": 1.2, "alpha": 0.8, "ms": 2}
        if like_for_like:
            ax.plot(epochs, [r["train_loss"] for r in rows], "--", color="tab:blue", lw=1.0, alpha=0.4,
                    label=t["train_as_trained"] if i == 0 else None)
        ax.plot(epochs, [r["train_eval_loss" if like_for_like else "train_loss"] for r in rows], "o-",
                color="tab:blue", **{"ms": 3, **style},
                label=(t["train_eval"] if like_for_like else t["train"]) if i == 0 else None)
        ax.plot(epochs, [r["val_loss"] for r in rows], "s-", color="tab:orange", **{"ms": 3, **style},
                label=t["val"] if i == 0 else None)
    if best_epoch is not None and members is None:
        ax.axvline(best_epoch, color="gray", linestyle="--", label=t["best"].format(epoch=best_epoch))
    title = t["title"] if members is None else f"{t['title']} [{t['folds'].format(k=len(members))}]"
    if verdict:
        title += f" — {t['verdict'].get(verdict, verdict)}"
    ax.set_title(title)
    ax.set_xlabel(t["epoch"])
    ax.set_ylabel(t["loss"])
    ax.grid(True, alpha=0.3)
    ax.legend()
    _save(fig, path)


def image_gallery(originals: np.ndarray, variants: np.ndarray, path, *, labels: Sequence[str] = (),
                  language: str = "ja") -> None:
    """Rows of one original image followed by its augmented variants.

    Args:
        originals: ``(R, C, H, W)``.
        variants: ``(R, V, C, H, W)``.
    """
    plt = _pyplot()
    t = _TEXT[language]
    rows, n_var = variants.shape[:2]
    fig, axes = plt.subplots(rows, n_var + 1, figsize=(1.4 * (n_var + 1), 1.5 * rows + 0.6), squeeze=False)
    lo, hi = float(originals.min()), float(originals.max())

    def show(ax, img):
        img = np.transpose(img, (1, 2, 0))
        if img.shape[2] == 1:
            ax.imshow(img[:, :, 0], cmap="gray", vmin=lo, vmax=hi)
        else:
            ax.imshow(np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1))
        ax.set_xticks([])
        ax.set_yticks([])

    for r in range(rows):
        show(axes[r, 0], originals[r])
        axes[r, 0].set_title(t["original"] if r == 0 else "", fontsize=8)
        if len(labels) > r:
            axes[r, 0].set_ylabel(str(labels[r]), fontsize=8)
        for v in range(n_var):
            show(axes[r, v + 1], variants[r, v])
            if r == 0:
                axes[r, v + 1].set_title(t["variant"].format(i=v + 1), fontsize=8)
    fig.suptitle(t["gallery"])
    _save(fig, path)


def series_gallery(originals: np.ndarray, variants: np.ndarray, path, *, labels: Sequence[str] = (),
                   language: str = "ja", xlabel_key: str = "time", ylabel_key: str = "amplitude") -> None:
    """One panel per sample: the original (thick) and its augmented variants (thin).

    Args:
        originals: ``(R, L)``, the first channel of each series (or a table row).
        variants: ``(R, V, L)``.
    """
    plt = _pyplot()
    t = _TEXT[language]
    rows = len(originals)
    fig, axes = plt.subplots(rows, 1, figsize=(8, 2.2 * rows + 0.6), squeeze=False)
    for r in range(rows):
        ax = axes[r, 0]
        for v in range(variants.shape[1]):
            ax.plot(variants[r, v], lw=0.8, alpha=0.6, label=t["variant"].format(i=v + 1) if r == 0 else None)
        ax.plot(originals[r], color="black", lw=2, label=t["series_original"] if r == 0 else None)
        if len(labels) > r:
            ax.set_title(str(labels[r]), fontsize=9)
        ax.set_ylabel(t[ylabel_key])
        ax.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel(t[xlabel_key])
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper right")
    fig.suptitle(t["gallery"])
    _save(fig, path)


def confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path, *, language: str = "ja") -> None:
    """Counts of true (rows) against predicted (columns) classes."""
    plt = _pyplot()
    t = _TEXT[language]
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k) if k > 4 else (4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    top = matrix.max() if matrix.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                    color="white" if matrix[i, j] > top / 2 else "black", fontsize=8)
    ax.set_xticks(range(k), [str(c) for c in class_names], rotation=45 if k > 4 else 0)
    ax.set_yticks(range(k), [str(c) for c in class_names])
    ax.set_xlabel(t["pred"])
    ax.set_ylabel(t["true"])
    ax.set_title(t["confusion"])
    _save(fig, path)


def reliability_diagram(y_true: np.ndarray, proba: np.ndarray, path, *, class_names: Sequence[str],
                        n_bins: int = 15, uncalibrated: np.ndarray | None = None, temperature: float | None = None,
                        language: str = "ja") -> None:
    """Predicted probability against observed frequency in ``n_bins`` equal-width bins (scikit-learn's
    ``CalibrationDisplay``), with the diagonal of perfect calibration and, below, how many test
    samples fall in each bin. Two classes: ``P(class 1)`` against the share of class 1; more: the
    top-class confidence against the accuracy. With ``uncalibrated`` (temperature scaling on), the
    probabilities before it are drawn too, lighter. Each curve's ECE is in the legend."""
    from sklearn.calibration import CalibrationDisplay

    from goodfit.calibration import confidence_and_outcome, expected_calibration_error

    plt = _pyplot()
    t = _TEXT[language]
    binary = proba.shape[1] == 2
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 6.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ":", color="gray", label=t["ideal"])
    curves = [] if uncalibrated is None else [(uncalibrated, t["uncalibrated_ece"], "tab:gray", 0.6)]
    label = t["model_ece"] if uncalibrated is None else t["calibrated_ece"]
    curves.append((proba, label, "tab:blue", 1.0))
    for p, text_, color, alpha in curves:
        conf, outcome = confidence_and_outcome(y_true, p)
        name = text_.format(ece=expected_calibration_error(y_true, p, n_bins), t=temperature or 1.0)
        shown = CalibrationDisplay.from_predictions(outcome, conf, n_bins=n_bins, strategy="uniform", ax=ax,
                                                    name=name, ref_line=False, color=color, alpha=alpha, marker="o",
                                                    ms=4)
        if p is proba:  # each point's sample count (sklearn's bins: searchsorted on the inner edges), so a
            # swing on two samples is not read like one on two hundred
            counts = np.bincount(np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], conf), minlength=n_bins)
            for x_, y_, n_ in zip(shown.prob_pred, shown.prob_true, counts[counts > 0]):
                ax.annotate(f"n={n_}", (x_, y_), textcoords="offset points", xytext=(4, -10), fontsize=7,
                            color=color)
        hist.hist(conf, bins=np.linspace(0, 1, n_bins + 1), color=color, alpha=0.45 * alpha + 0.2,
                  edgecolor="white")
    positive = str(class_names[1]) if binary else ""
    ax.set_xlabel("")
    ax.set_ylabel(t["freq_binary" if binary else "freq_multi"].format(name=positive))
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(t["reliability"])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    hist.set_xlabel(t["prob_binary" if binary else "prob_multi"].format(name=positive))
    hist.set_ylabel(t["count"])
    hist.set_yscale("log")  # a well-trained model puts most samples in the top bin; the others stay visible
    hist.grid(True, alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def augmentation_gallery(modality: str, originals: np.ndarray, variants: np.ndarray, path, *,
                         labels: Sequence[str] = (), mean: Sequence[float] = (), std: Sequence[float] = (),
                         language: str = "ja") -> None:
    """The lesson's figure for any modality: originals beside their augmented variants.

    Images are drawn as a grid; series as overlaid waveforms (first channel);
    table rows as feature profiles standardised with the training statistics.
    """
    if modality == "image":
        image_gallery(originals, variants, path, labels=labels, language=language)
    elif modality == "timeseries":
        series_gallery(originals[:, 0], variants[:, :, 0], path, labels=labels, language=language)
    else:
        m = np.asarray(mean, dtype=np.float64) if len(mean) else 0.0
        s = np.asarray(std, dtype=np.float64) if len(std) else 1.0
        series_gallery((originals - m) / s, (variants - m) / s, path, labels=labels, language=language,
                       xlabel_key="feature", ylabel_key="value")


_SWEEP_TEXT = {
    "ja": {"title": "正則化スイープの比較 ({param})", "loss": "損失 (Loss)", "acc": "正解率 (Accuracy)",
           "val_loss": "検証損失 (Val Loss)", "test_loss": "テスト損失 (Test Loss)",
           "val_acc": "検証正解率 (Val Acc)", "test_acc": "テスト正解率 (Test Acc)",
           "curves": "学習曲線の重ね描き (実線: 検証, 破線: 訓練)",
           "curves_eval": "学習曲線の重ね描き (実線: 検証, 破線: 訓練・評価モード)", "l2": "重みのL2ノルム (Weight L2)",
           "sparsity": "疎性 |w|<1e-3 (Sparsity)", "weights": "重みの大きさと疎性"},
    "en": {"title": "Regularization sweep ({param})", "loss": "Loss", "acc": "Accuracy",
           "val_loss": "Val loss", "test_loss": "Test loss", "val_acc": "Val accuracy", "test_acc": "Test accuracy",
           "curves": "Learning curves (solid: validation, dashed: train)",
           "curves_eval": "Learning curves (solid: validation, dashed: train, eval mode)", "l2": "Weight L2 norm",
           "sparsity": "Sparsity |w|<1e-3", "weights": "Weight norm and sparsity"},
}


def sweep_train_curve(executions: Sequence[dict]) -> str:
    """The history column a sweep figure draws as the runs' training curves.

    ``train_eval_loss`` (the training originals in eval mode, like for like with the
    validation loss) when every run has it; ``train_loss`` (the loss as trained) when
    one was trained before it was measured, so that all runs draw the same quantity.
    """
    return "train_eval_loss" if all(e["history"].get("train_eval_loss") for e in executions) else "train_loss"


def _param_axis(ax, values) -> None:
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) >= 100:
        # symlog: a log axis that still shows 0 (no regularization)
        ax.set_xscale("symlog", linthresh=min(positive))


_SWEEP_CI_TEXT = {
    "ja": {"ci": "テスト正解率の95%信頼区間 (95% CI)", "overlap": "最良と区別できない実行 (CI overlaps best)",
           "band": "最良の実行の95%信頼区間 (best run's 95% CI)", "best": "最良の実行 (Best run)"},
    "en": {"ci": "Test accuracy 95% CI", "overlap": "CI overlaps the best run's",
           "band": "Best run's 95% CI", "best": "Best run"},
}


def sweep_figure(table, executions, path, *, param: str, language: str = "ja", best: str | None = None) -> None:
    """Validation curve, overlaid learning curves and weight statistics for a sweep.

    Where the table has test-accuracy intervals (``test_accuracy_low`` / ``_high``) they are
    drawn as error bars; runs with ``ci_overlaps_best`` are ringed, and the best run's
    interval is shaded across the accuracy panel.

    Args:
        table: :func:`goodfit.compare.sweep_table` output (sorted by the param).
        executions: the matching executions, in the table's order (for learning curves).
        param: the swept param's name.
        best: the best run's name (:func:`goodfit.compare.best_run`), to shade its interval.
    """
    plt = _pyplot()
    t, tv = _SWEEP_TEXT[language], _TEXT[language]
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    x = table["value"].to_numpy()
    ax = axes[0, 0]
    ax.plot(x, table["best_val_loss"], "o-", label=t["val_loss"])
    ax.plot(x, table["test_log_loss"], "s-", label=t["test_loss"])
    for xi, yi, verdict in zip(x, table["best_val_loss"], table["fit_diagnosis"]):
        ax.annotate(tv["verdict"].get(verdict, verdict), (xi, yi), textcoords="offset points", xytext=(0, 8),
                    ha="center", fontsize=7)
    ax.set_xlabel(param)
    ax.set_ylabel(t["loss"])
    ax.legend()
    _param_axis(ax, x)
    ax = axes[0, 1]
    ax.plot(x, table["val_accuracy"], "o-", label=t["val_acc"])
    (test_line,) = ax.plot(x, table["test_accuracy"], "s-", label=t["test_acc"])
    if "test_accuracy_low" in table and "test_accuracy_high" in table:
        tc = _SWEEP_CI_TEXT[language]
        acc = table["test_accuracy"].to_numpy(dtype=float)
        low, high = table["test_accuracy_low"].to_numpy(dtype=float), table["test_accuracy_high"].to_numpy(dtype=float)
        has = ~(np.isnan(low) | np.isnan(high) | np.isnan(acc))
        if has.any():
            ax.errorbar(x[has], acc[has], yerr=[np.clip(acc - low, 0, None)[has], np.clip(high - acc, 0, None)[has]],
                        fmt="none", ecolor=test_line.get_color(), elinewidth=1.5, capsize=4, label=tc["ci"])
        near = (table["ci_overlaps_best"].astype("boolean").fillna(False).to_numpy(dtype=bool)
                if "ci_overlaps_best" in table else np.zeros(len(x), dtype=bool))
        if near.any():
            ax.plot(x[near], acc[near], "o", markersize=12, markerfacecolor="none", markeredgecolor="tab:green",
                    markeredgewidth=2, label=tc["overlap"])
        names = list(table["name"])
        if best in names and has[names.index(best)]:
            i = names.index(best)
            ax.axhspan(low[i], high[i], color="tab:green", alpha=0.12, label=tc["band"])
            ax.plot(x[i], acc[i], "*", markersize=15, color="tab:green", label=tc["best"])
    ax.set_xlabel(param)
    ax.set_ylabel(t["acc"])
    ax.legend(fontsize=8 if len(ax.get_legend_handles_labels()[1]) > 2 else None)  # smaller with the interval entries
    _param_axis(ax, x)
    ax = axes[1, 0]
    colors = plt.cm.viridis([i / max(len(executions) - 1, 1) for i in range(len(executions))])
    train_key = sweep_train_curve(executions)
    for color, value, e in zip(colors, x, executions):
        h = e["history"]
        if h.get("val_loss"):
            ax.plot(*zip(*h["val_loss"]), color=color, label=f"{param}={value:g}")
        if h.get(train_key):
            ax.plot(*zip(*h[train_key]), color=color, linestyle="--", alpha=0.6)
    ax.set_xlabel(tv["epoch"])
    ax.set_ylabel(tv["loss"])
    ax.set_title(t["curves_eval" if train_key == "train_eval_loss" else "curves"], fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.plot(x, table["weight_l2"], "o-", color="tab:blue", label=t["l2"])
    ax.set_xlabel(param)
    ax.set_ylabel(t["l2"], color="tab:blue")
    _param_axis(ax, x)
    ax2 = ax.twinx()
    ax2.plot(x, table["sparsity"], "s--", color="tab:red", label=t["sparsity"])
    ax2.set_ylabel(t["sparsity"], color="tab:red")
    ax.set_title(t["weights"], fontsize=10)
    for a in axes.flat:
        a.grid(True, alpha=0.3)
    fig.suptitle(t["title"].format(param=param))
    fig.tight_layout()
    _save(fig, path)


def learning_curve_comparison(runs: dict[str, Sequence[Sequence[dict]]], path, *, title: str = "",
                              language: str = "ja") -> None:
    """Learning curves of several settings side by side, one panel each, one line pair per seed.

    Args:
        runs: ``{panel title: [history of seed 1, history of seed 2, ...]}``; a history is
            the rows of ``reports/train/history.csv`` (with a ``fold`` column: one line pair
            per cross-validation member).
        path: the PNG to write.
        title: the figure's title.
    """
    from goodfit.history import split_folds, train_measure

    plt = _pyplot()
    t = _TEXT[language]
    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 3.8), sharey=True, squeeze=False)
    top = max(max(max(r[train_measure(h)], r["val_loss"]) for r in h) for hs in runs.values() for h in hs)
    for ax, (name, histories) in zip(axes[0], runs.items()):
        # a cross-validated run (``fold`` column) contributes one line pair per member
        curves = [member for h in histories for member in (split_folds(h) or [h])]
        for i, history in enumerate(curves):
            epochs = [r["epoch"] for r in history]
            measure = train_measure(history)  # like for like with val_loss where the history has it
            ax.plot(epochs, [r[measure] for r in history], color="tab:blue", lw=1.2, alpha=0.85,
                    label=(t["train_eval"] if measure == "train_eval_loss" else t["train"]) if i == 0 else None)
            ax.plot(epochs, [r["val_loss"] for r in history], color="tab:orange", lw=1.2, alpha=0.85,
                    label=t["val"] if i == 0 else None)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(t["epoch"])
        ax.set_ylim(0, min(top, 3.0) * 1.05)
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel(t["loss"])
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


_DATA_CURVE_TEXT = {
    "ja": {"title": "データを増やすと良くなるか (Would more data help?)", "n": "訓練サンプル数 (Training samples)",
           "train": "訓練損失（評価モード） (Train loss, eval mode)", "val": "検証損失 (Validation loss)",
           "loss": "損失 (Loss)", "prior": "クラス事前分布の損失 (Class-prior loss)", "off": "軸の上、範囲外",
           "band": "±1 標準偏差 ({k} シード)", "verdict": "判定: {name} — {advice}",
           "names": {"high_variance": "高バリアンス (high variance)", "high_bias": "高バイアス (high bias)",
                     "converged": "収束 (converged)", "inconclusive": "判定保留 (inconclusive)"}},
    "en": {"title": "Would more data help?", "n": "Training samples", "train": "Train loss (eval mode)",
           "val": "Validation loss", "loss": "Loss", "prior": "Class-prior loss", "off": "above the axis",
           "band": "±1 sd ({k} seeds)", "verdict": "Verdict: {name} — {advice}",
           "names": {"high_variance": "high variance", "high_bias": "high bias", "converged": "converged",
                     "inconclusive": "inconclusive"}},
}


def data_curve(curve: Sequence[dict], path, *, verdict: str, advice: str, reason: str = "",
               prior_loss: float | None = None, dataset: str = "", language: str = "ja") -> None:
    """Train-eval and validation loss against the number of training samples (the data curve).

    As scikit-learn's ``LearningCurveDisplay``: the mean over seeds as a line, a band
    of ±1 standard deviation when there are several seeds. The class-prior loss is a
    dashed line (named in the legend only, when it lies far above the curves); the
    verdict, its advice and the reason stand under the axes.

    Args:
        curve: :func:`goodfit.data_curve.mean_curve` rows (``n_train``, ``n_seeds``,
            ``train_eval_loss_mean`` / ``_sd``, ``val_loss_mean`` / ``_sd``), increasing ``n_train``.
        path: the PNG to write.
        verdict: ``high_variance``, ``high_bias``, ``converged`` or ``inconclusive``.
        advice: the verdict in words (in ``language``).
        reason: the numbers behind it (in ``language``).
        prior_loss: the class-prior loss, or ``None`` to leave it out.
        dataset: named in the title.
    """
    import textwrap

    plt = _pyplot()
    t = _DATA_CURVE_TEXT[language]
    # the verdict (fontsize 11) and its reason (8) under the axes, wrapped to the figure's width; the
    # figure grows by their lines so that they never overlap the axis label
    head = textwrap.wrap(t["verdict"].format(name=t["names"].get(verdict, verdict), advice=advice),
                         48 if language == "ja" else 90)
    small = textwrap.wrap(reason, 62 if language == "ja" else 100) if reason else []
    under = 0.21 * len(head) + 0.15 * len(small) + 0.1  # inches
    height = 4.6 + under
    fig, ax = plt.subplots(figsize=(8, height))
    fig.subplots_adjust(left=0.09, right=0.98, top=1 - 0.4 / height, bottom=(0.65 + under) / height)
    n = np.array([r["n_train"] for r in curve], dtype=np.float64)
    seeds = max(r["n_seeds"] for r in curve)
    top = 0.0
    for key, color, marker, label in (("train_eval_loss", "tab:blue", "o-", t["train"]),
                                      ("val_loss", "tab:orange", "s-", t["val"])):
        mean = np.array([r[f"{key}_mean"] for r in curve])
        sd = np.array([r[f"{key}_sd"] for r in curve]) if seeds > 1 else np.zeros_like(mean)
        ax.plot(n, mean, marker, color=color, ms=5, label=label)
        if seeds > 1:
            ax.fill_between(n, mean - sd, mean + sd, color=color, alpha=0.2, lw=0,
                            label=t["band"].format(k=seeds) if key == "val_loss" else None)
        top = max(top, float(np.max(mean + sd)))
    top *= 1.15
    if prior_loss is not None and prior_loss <= 1.6 * top:
        ax.axhline(prior_loss, color="gray", linestyle="--", lw=1, label=f"{t['prior']} {prior_loss:.3f}")
        top = max(top, prior_loss * 1.08)
    elif prior_loss is not None:  # far above the curves: drawn, it would flatten them
        ax.plot([], [], "--", color="gray", lw=1, label=f"{t['prior']} {prior_loss:.3f} ({t['off']})")
    ax.set_ylim(0, top)
    ax.set_xticks(n)
    ax.set_xticklabels([f"{int(v)}" for v in n])
    ax.set_xlabel(t["n"])
    ax.set_ylabel(t["loss"])
    ax.set_title(t["title"] + (f" — {dataset}" if dataset else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    fig.text(0.5, under / height, "\n".join(head), ha="center", va="top", fontsize=11)
    if small:
        fig.text(0.5, (0.15 * len(small) + 0.05) / height, "\n".join(small), ha="center", va="top", fontsize=8,
                 color="dimgray")
    _save(fig, path)
