"""Compare the runs of a finished sweep: ``python -m goodfit.compare`` (``make compare``).

Reads a sweep from ``dvc exp show --json``: the baseline commit and every
successful experiment queued from it (an experiment whose params equal the
baseline's re-uses its cached results, so DVC runs nothing and logs nothing new;
reading DVC's view keeps it in the comparison). Learning curves come from each
experiment's committed ``reports/train/history.csv``. It finds the swept parameter
(or takes ``--param``) and writes

* ``sweep.csv``: one row per run: the parameter, validation and test loss and
  accuracy, the weights' L2 norm and sparsity at the best epoch, the fit diagnosis;
  then the 95% bootstrap interval of each test metric (``test_accuracy_low``,
  ``test_accuracy_high``, the same for ``roc_auc`` and ``log_loss``; read from
  ``test_ci95`` in ``reports/metrics.json``, empty for runs evaluated before it
  existed) and ``ci_overlaps_best``: whether the run's test-accuracy interval
  overlaps the best run's (the highest test accuracy; ties: the lower
  ``best_val_loss``, then the lower parameter value; the best run itself True;
  empty where either interval is missing). Runs marked True are ones the test
  split cannot tell apart from the best; the printed table marks them ``≈``;
* ``sweep.png``: the validation curve (loss and accuracy against the parameter,
  log-x for regularization strengths; test accuracy with its interval as error bars
  and the runs overlapping the best highlighted), all learning curves overlaid, and
  weight norm / sparsity against the parameter, each run labelled with its diagnosis.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import sys
from pathlib import Path

from goodfit.errors import GoodfitError

TABLE_COLUMNS = ("name", "value", "best_val_loss", "val_accuracy", "test_log_loss", "test_accuracy",
                 "test_roc_auc", "weight_l2", "sparsity", "best_epoch", "stopped_epoch", "fit_diagnosis")
CI_METRICS = ("accuracy", "roc_auc", "log_loss")
CI_COLUMNS = tuple(f"test_{m}_{end}" for m in CI_METRICS for end in ("low", "high")) + ("ci_overlaps_best",)
IGNORED_PARAMS = {"mlflow.experiment"}
OVERLAP_LEGEND = "≈: its 95% interval of test accuracy overlaps the best run's — the test split cannot tell them apart"


def _flatten(obj: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in obj.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _history(rev: str) -> dict[str, list[tuple[int, float]]]:
    import pandas as pd

    shown = subprocess.run(["git", "show", f"{rev}:reports/train/history.csv"], capture_output=True, text=True)
    if shown.returncode != 0:
        return {}
    frame = pd.read_csv(io.StringIO(shown.stdout))
    if "fold" in frame.columns:  # a cross-validation ensemble: the members' mean per epoch (those still training)
        frame = frame.drop(columns="fold").groupby("epoch", as_index=False).mean()
    return {c: list(zip(frame["epoch"].astype(int), frame[c].astype(float))) for c in frame.columns if c != "epoch"}


def _execution(name: str, entry: dict) -> dict | None:
    data = entry.get("data") or {}
    metrics_files = data.get("metrics") or {}
    report = (metrics_files.get("reports/metrics.json") or {}).get("data")
    summary = (metrics_files.get("reports/train/summary.json") or {}).get("data") or {}
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data")
    if not report or params is None:
        return None
    metrics = {f"test_{k}": v for k, v in report.get("test", {}).items()}
    for k, ci in (report.get("test_ci95") or {}).items():  # absent in runs evaluated before the intervals
        if isinstance(ci, dict):
            metrics.update({f"test_{k}_{end}": ci[end] for end in ("low", "high") if end in ci})
    metrics.update({k: summary[k] for k in ("best_epoch", "best_val_loss", "stopped_epoch") if k in summary})
    return {"name": name, "rev": entry["rev"], "params": _flatten(params), "metrics": metrics,
            "tags": {"goodfit.fit_diagnosis": (report.get("fit") or {}).get("verdict", "")},
            "history": _history(entry["rev"])}


def load_sweep(baseline: str = "HEAD") -> list[dict]:
    """The baseline commit (first) and its successful experiments, from ``dvc exp show --json``.

    Raises:
        GoodfitError: DVC fails, or the baseline has no experiments.
    """
    rev = subprocess.run(["git", "rev-parse", baseline], capture_output=True, text=True)
    if rev.returncode != 0:
        raise GoodfitError(f"{baseline!r} is not a git revision of this repository; pass --baseline <commit>.")
    sha = rev.stdout.strip()
    shown = subprocess.run(["dvc", "exp", "show", "--json", "--rev", sha], capture_output=True, text=True)
    if shown.returncode != 0:
        raise GoodfitError(f"dvc exp show failed: {shown.stderr.strip()[:300]}")
    out = []
    for entry in json.loads(shown.stdout or "[]"):
        if entry.get("rev") != sha:
            continue
        base = _execution(entry.get("name") or sha[:7], entry)
        if base:
            out.append(base)
        for exp in entry.get("experiments") or []:
            state = (exp.get("executor") or {}).get("state", "success")
            if state not in ("success", None) or not exp.get("revs"):
                continue
            found = _execution(exp.get("name") or exp["revs"][0]["rev"][:7], exp["revs"][0])
            if found:
                out.append(found)
    return out


def swept_params(executions: list[dict]) -> list[str]:
    """The params whose values differ between executions."""
    keys = set().union(*(e["params"] for e in executions)) - IGNORED_PARAMS
    return sorted(k for k in keys
                  if len({json.dumps(e["params"].get(k), sort_keys=True) for e in executions}) > 1)


def _at_epoch(points: list[tuple[int, float]], epoch: int | None) -> float:
    if not points:
        return math.nan
    if epoch is None:
        return points[-1][1]
    for step, value in points:
        if step == epoch:
            return value
    return math.nan


def same_except(executions: list[dict], param: str) -> list[dict]:
    """The executions that differ from the first one (the baseline) in ``param`` only.

    Keeps other sweeps queued from the same commit (say over ``l1_lambda``) out of a
    comparison over ``weight_decay``.
    """
    def rest(e):
        return {k: json.dumps(v, sort_keys=True) for k, v in e["params"].items() if k != param}

    kept = [e for e in executions if rest(e) == rest(executions[0])]
    # The baseline is a point of the sweep unless an experiment repeats its params.
    if kept and any(e["params"] == kept[0]["params"] for e in kept[1:]):
        kept = kept[1:]
    return kept


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def best_run(table) -> int | None:
    """The row of the best run: the highest test accuracy (ties: the lower best_val_loss, then the earlier row).

    None when no run has a test accuracy.
    """
    candidates = [(-acc, loss if not math.isnan(loss) else math.inf, i)
                  for i, (acc, loss) in enumerate(zip(table["test_accuracy"].map(_number),
                                                      table["best_val_loss"].map(_number)))
                  if not math.isnan(acc)]
    return min(candidates)[2] if candidates else None


def overlaps_best(table) -> list[bool | None]:
    """Per row: does its test-accuracy interval overlap the best run's? None where either interval is missing."""
    best = best_run(table)
    lows, highs = table["test_accuracy_low"].map(_number), table["test_accuracy_high"].map(_number)
    if best is None or math.isnan(lows[best]) or math.isnan(highs[best]):
        return [None] * len(table)
    return [None if math.isnan(lo) or math.isnan(hi) else bool(lo <= highs[best] and lows[best] <= hi)
            for lo, hi in zip(lows, highs)]


def sweep_table(executions: list[dict], param: str):
    """One row per execution, sorted by the parameter's value (a pandas DataFrame).

    Columns: :data:`TABLE_COLUMNS`, then :data:`CI_COLUMNS` (NaN / empty where a run has no intervals).

    Raises:
        GoodfitError: an execution lacks the parameter or it is not numeric.
    """
    import pandas as pd

    rows = []
    for e in executions:
        raw = e["params"].get(param)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise GoodfitError(f"Run {e['name']} has {param} = {raw!r}, not a number; compare a numeric param.")
        m = e["metrics"]
        best = int(m["best_epoch"]) if "best_epoch" in m else None
        h = e["history"]
        rows.append({
            "name": e["name"], "value": value, "best_val_loss": m.get("best_val_loss", math.nan),
            "val_accuracy": _at_epoch(h.get("val_accuracy", []), best),
            "test_log_loss": m.get("test_log_loss", math.nan), "test_accuracy": m.get("test_accuracy", math.nan),
            "test_roc_auc": m.get("test_roc_auc", math.nan),
            "weight_l2": _at_epoch(h.get("weight_l2", []), best), "sparsity": _at_epoch(h.get("sparsity", []), best),
            "best_epoch": best, "stopped_epoch": int(m["stopped_epoch"]) if "stopped_epoch" in m else None,
            "fit_diagnosis": e["tags"].get("goodfit.fit_diagnosis", ""),
            **{c: _number(m.get(c)) for c in CI_COLUMNS[:-1]},
        })
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS + CI_COLUMNS[:-1]))
    table = table.sort_values(["value", "name"]).reset_index(drop=True)
    table["ci_overlaps_best"] = pd.array(overlaps_best(table), dtype="boolean")
    return table


def format_table(table) -> str:
    """The table as printed by ``make compare``: the test-accuracy interval and a mark per run, then a legend.

    Without intervals (runs evaluated before them) it is the plain table.
    """
    shown = table[list(TABLE_COLUMNS)].copy()
    lows, highs = table["test_accuracy_low"], table["test_accuracy_high"]
    if lows.isna().all() and highs.isna().all():
        return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    best = best_run(table)
    shown.insert(shown.columns.get_loc("test_accuracy") + 1, "test_accuracy_ci95",
                 ["" if math.isnan(lo) or math.isnan(hi) else f"[{lo:.4g}, {hi:.4g}]" for lo, hi in zip(lows, highs)])
    marks = table["ci_overlaps_best"].fillna(False).to_numpy(dtype=bool)
    shown.insert(0, "≈best", ["best" if i == best and marks[i] else "≈" if marks[i] else ""
                              for i in range(len(table))])
    lines = [shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"), ""]
    if marks.any():
        lines.append(OVERLAP_LEGEND)
    elif best is None:
        lines.append("no ≈ marks: no run has a test accuracy")
    else:
        lines.append(f"no ≈ marks: the best run ({table['name'][best]}) has no 95% interval of test accuracy")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goodfit.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--param", help="the swept param, e.g. weight_decay (default: the one that varies)")
    parser.add_argument("--baseline", default="HEAD", help="git revision the sweep was queued from (default HEAD)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="reports/compare", help="output folder (default reports/compare)")
    args = parser.parse_args(argv)
    try:
        from goodfit import plots
        from goodfit.io import write_text
        from goodfit.params import load_params

        params = load_params(args.params)
        executions = load_sweep(args.baseline)
        if len(executions) < 2:
            raise GoodfitError(
                f"Found {len(executions)} finished run(s) for {args.baseline}; a comparison needs the baseline and at "
                "least one experiment. Run a sweep first (dvc exp run --queue -S 'weight_decay=0,1e-4,1e-3,1e-2' "
                "then dvc queue start -j 2)."
            )
        varying = swept_params(executions)
        param = args.param or (varying[0] if len(varying) == 1 else None)
        if param is None:
            raise GoodfitError(
                f"Several params vary between the runs ({', '.join(varying) or 'none'}); name one with --param."
            )
        executions = same_except(executions, param)
        table = sweep_table(executions, param)
        out = Path(args.out)
        write_text(out / "sweep.csv", table.to_csv(index=False, lineterminator="\n", float_format="%.6g"))
        best = best_run(table)
        plots.sweep_figure(table, [executions[i] for i in _order(executions, table)], out / "sweep.png",
                           param=param, language=params.report.language,
                           best=None if best is None else table["name"][best])
    except GoodfitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(table))
    print(f"\nwrote {out / 'sweep.csv'} and {out / 'sweep.png'} ({len(table)} runs, swept param: {param})")
    return 0


def _order(executions: list[dict], table) -> list[int]:
    by_name = {e["name"]: i for i, e in enumerate(executions)}
    return [by_name[n] for n in table["name"]]


if __name__ == "__main__":
    sys.exit(main())
