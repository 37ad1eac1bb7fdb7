"""A real browser looks at `scribbles ui` once: headless Chromium (Debian's `chromium`) opens the MLflow UI of a
project's store, finds the demo run, expands it to its fold runs, and sees the learning curves render.

Skipped, with the reason, only where Chromium is not installed (CI installs it: .ci/run).
Screenshots go to ``SCRIBBLES_SCREENSHOTS`` when set (a folder), else to the test's tmp_path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import SCRIBBLES, git, make_dvc_project
from mlflow.tracking import MlflowClient
from scribbles.flows.prefect_server import free_port
from scribbles.testing.browser import chromium, chromium_binary

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(chromium_binary() is None,
                                 reason="chromium is not installed (apt-get install chromium; CI's .ci/run does)")]

CONFIG: dict[str, Any] = {
    "experiment": "browser-demo",
    "data": {"name": "dvc", "path": "data/activity.csv", "target": "activity", "group": "subject",
             "time": "timestamp"},
    "split": {"name": "group_kfold", "n_splits": 2},
    "model": {"name": "mlp", "hidden": [8]},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.003},
}


def _wait_http(url: str, process: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3):
                return
        except OSError:
            assert process.poll() is None, f"scribbles ui exited with {process.returncode}"
            time.sleep(0.5)
    raise TimeoutError(f"scribbles ui did not answer at {url}")


def test_mlflow_ui_lists_the_parent_its_fold_runs_and_renders_the_learning_curves(
        tmp_path: Path, activity_small: Any) -> None:
    """The experiment page lists the parent run; expanded, fold-0 and fold-1; the run's learning curves PNG renders
    in the artifact viewer (an <img> with the PNG's own width)."""
    root = make_dvc_project(tmp_path / "proj", {"activity.csv": activity_small.iloc[::2].reset_index(drop=True)})
    (root / "demo.yaml").write_text(yaml.safe_dump(CONFIG))
    git("add", "-A", cwd=root)
    git("commit", "-qm", "config", cwd=root)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    env.pop("PREFECT_API_URL", None)
    ran = subprocess.run([SCRIBBLES, "run", "demo.yaml"], cwd=root, env=env, capture_output=True, text=True,
                         timeout=400)
    assert ran.returncode == 0, ran.stderr[-2000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("browser-demo")
    assert experiment is not None
    (parent,) = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" not in r.data.tags]
    name, run_id = parent.info.run_name, parent.info.run_id
    shots = Path(os.environ.get("SCRIBBLES_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ui = subprocess.Popen([SCRIBBLES, "ui", "--port", str(port)], cwd=root, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/health", ui)
        with chromium() as page:
            page.goto(f"{base}/#/experiments/{experiment.experiment_id}/runs")
            page.wait_for(f"document.body && document.body.innerText.includes({name!r})", 120)
            assert not page.evaluate("document.body.innerText.includes('fold-0')")  # folds start collapsed
            page.screenshot(shots / "experiment.png")
            page.evaluate(f"""(() => {{
                const link = Array.from(document.querySelectorAll('a')).find(a => a.innerText.includes({name!r}));
                link.closest('.ag-cell-wrapper').querySelector('button').click(); return true; }})()""")
            page.wait_for("document.body.innerText.includes('fold-0') && document.body.innerText.includes('fold-1')",
                          60)
            page.screenshot(shots / "expanded.png")
            page.goto(f"{base}/#/experiments/{experiment.experiment_id}/runs/{run_id}/artifacts/"
                      "plots/learning_curves.png")
            page.wait_for("document.body.innerText.includes('plots/learning_curves.png')", 120)
            # The viewer fetches the PNG and shows it from a blob: URL; a broken image has naturalWidth 0.
            width = page.wait_for("Math.max(0, ...Array.from(document.images).filter(i => i.src.startsWith('blob:') "
                                  "&& i.complete).map(i => i.naturalWidth))", 60)
            time.sleep(1)
            page.screenshot(shots / "learning_curves.png")
        local = client.download_artifacts(run_id, "plots/learning_curves.png", str(tmp_path))
        from PIL import Image

        with Image.open(local) as png:
            assert width == png.width > 100, (width, png.width)
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()
