"""A real `mlflow ui` (started by `python -m goodfit.ui`, as `make ui` does) in headless Chromium: the link goodfit
prints opens the runs table with the parent runs, and the compare view shows weight_decay beside test_accuracy.

Skipped with the reason where Chromium is not installed or cannot start, except in CI (CI=true), where .ci/run
installs Debian's chromium and the test must run. GOODFIT_UI_SCREENSHOTS=docs/figures keeps its screenshot of the
compare view there (docs/figures/mlflow_compare.png)."""

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from browser import BrowserError, chromium_page, find_chromium
from goodfit.tracking import EXPERIMENT_KIND, TAG_EXPERIMENT_KIND, StageRun
from test_tracking_server import free_port, stop, wait_for_health

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SWEEP = {"wd-0": ("0", 0.974), "wd-1e-4": ("0.0001", 0.985), "wd-1e-2": ("0.01", 0.981)}  # the UI shows 3 decimals


def sweep_store(root: Path, monkeypatch) -> list[str]:
    """Three pipeline executions of a weight_decay sweep (parent run + train and evaluate child runs)."""
    ids = []
    for name, (wd, accuracy) in SWEEP.items():
        monkeypatch.setenv("DVC_EXP_NAME", name)
        params = {"weight_decay": wd, "seed": 42, "train.lr": 0.001}
        for stage in ("train", "evaluate"):
            with StageRun(stage=stage, experiment="goodfit", all_params=params, stage_params={},
                          params_bytes=f"weight_decay: {wd}\n".encode(), root=root) as run:
                if stage == "train":
                    for epoch, loss in enumerate((0.9, 0.5, 0.4), start=1):
                        run.log_metrics({"val_loss": loss}, step=epoch)
                else:
                    run.log_metrics({"test_accuracy": accuracy}, parent=True)
        ids.append(run.parent_id)
    monkeypatch.delenv("DVC_EXP_NAME")
    return ids


@contextlib.contextmanager
def goodfit_ui(folder: Path, port: int):
    """``python -m goodfit.ui`` (``make ui``) in ``folder``: yields the link it prints once ``mlflow ui`` answers."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONUNBUFFERED": "1"}
    log = folder / "mlflow-ui.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "goodfit.ui", "--port", str(port)], cwd=folder,
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for_health(f"http://127.0.0.1:{port}", proc, log)
        yield log.read_text().splitlines()[0]
    finally:
        stop(proc)


def no_browser(reason: str) -> None:
    """Skip, with the reason; in CI, where .ci/run installs Chromium, fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run this test (.ci/run installs Debian's chromium)")
    pytest.skip(reason)


def test_the_ui_opens_on_the_runs_and_compares_the_sweep(tmp_path, monkeypatch):
    chromium = find_chromium()
    if chromium is None:
        no_browser("Chromium is not installed (.ci/run installs Debian's chromium with apt-get)")
    ids = sweep_store(tmp_path, monkeypatch)
    store = os.environ["MLFLOW_TRACKING_URI"]
    from mlflow.tracking import MlflowClient

    exp = MlflowClient(store).get_experiment_by_name("goodfit")
    assert exp.tags[TAG_EXPERIMENT_KIND] == EXPERIMENT_KIND
    port = free_port()
    link = f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"

    async def browse(base: str) -> tuple[str, str]:
        async with chromium_page(chromium, height=1300) as page:
            await page.goto(link)
            runs = await page.wait_for_text(*SWEEP, "Run Name")
            await page.screenshot(tmp_path / "runs.png")
            compare = (f"{base}/#/compare-runs?runs={json.dumps(ids)}"
                       f"&experiments={json.dumps([exp.experiment_id])}&workflowType=machine_learning")
            await page.goto(compare)
            table = await page.wait_for_text("weight_decay", "test_accuracy", "0.985", "0.01")
            await page.click('[data-component-id="mlflow.assistant.chat_panel.close"]')  # the chat panel, if open
            await asyncio.sleep(1)
            await page.screenshot(tmp_path / "compare.png")
            return runs, table

    with goodfit_ui(tmp_path, port) as printed:
        assert printed == f"The runs of experiment 'goodfit': {link}"
        base = f"http://127.0.0.1:{port}"
        try:
            runs, table = asyncio.run(browse(base))
        except BrowserError as exc:
            no_browser(f"Chromium could not be driven: {exc}")
    # The runs table, not the GenAI overview (traces, token usage); the child runs sit under their parents.
    assert "Token Usage" not in runs and "Traces\n0" not in runs
    assert all(runs.count(name) == 1 for name in SWEEP), runs
    lines = table.splitlines()
    wd_row = next(line for line in lines if line.startswith("weight_decay\t"))
    assert wd_row.split("\t")[1:] == ["0", "0.0001", "0.01"], wd_row
    accuracy = lines[lines.index("test_accuracy", lines.index(wd_row)) + 1: ][:3]
    assert accuracy == ["0.974", "0.985", "0.981"], table
    assert (tmp_path / "runs.png").stat().st_size > 10_000
    if os.environ.get("GOODFIT_UI_SCREENSHOTS"):
        shutil.copyfile(tmp_path / "compare.png", Path(os.environ["GOODFIT_UI_SCREENSHOTS"]) / "mlflow_compare.png")
