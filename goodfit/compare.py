"""Compare the runs of a finished sweep: ``python -m goodfit.compare`` (``make compare``).

Reads a sweep from ``dvc exp show --json``: the baseline commit and every
successful experiment queued from it (an experiment whose params equal the
baseline's re-uses its cached results, so DVC runs nothing and logs nothing new;
reading DVC's view keeps it in the comparison). Learning curves come from each
experiment's committed ``reports/train/history.csv``. It finds the swept parameter
(or takes ``--param``) and writes

* ``sweep.csv``: one row per run: the parameter, validation and test loss and
  accuracy, the weights' L2 norm and sparsity at the best epoch, the fit diagnosis;
* ``sweep.png``: the validation curve (loss and accuracy against the parameter,
  log-x for regularization strengths), all learning curves overlaid, and weight
  norm / sparsity against the parameter, each run labelled with its diagnosis.
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
IGNORED_PARAMS = {"mlflow.experiment"}


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


def sweep_table(executions: list[dict], param: str):
    """One row per execution, sorted by the parameter's value (a pandas DataFrame).

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
        })
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).sort_values(["value", "name"]).reset_index(drop=True)


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
        plots.sweep_figure(table, [executions[i] for i in _order(executions, table)], out / "sweep.png",
                           param=param, language=params.report.language)
    except GoodfitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nwrote {out / 'sweep.csv'} and {out / 'sweep.png'} ({len(table)} runs, swept param: {param})")
    return 0


def _order(executions: list[dict], table) -> list[int]:
    by_name = {e["name"]: i for i, e in enumerate(executions)}
    return [by_name[n] for n in table["name"]]


if __name__ == "__main__":
    sys.exit(main())
