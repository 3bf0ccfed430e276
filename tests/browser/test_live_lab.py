"""A live JupyterLab session: run chapter 10 and move its comparison dashboard.

Starts ``jupyter lab`` on 127.0.0.1 (token-protected, root allowed, cwd = repository
root, throw-away runtime/config/settings directories, autosave off), opens
``notebooks/10-before-and-after.ipynb`` in Debian chromium, runs all cells, waits for
the comparison dashboard (an ipywidgets slider next to a figure), presses ArrowRight on
its first slider and checks that the figure changed.

The dashboard is found as the element with the CSS class ``kvmcede-dashboard`` (set it
with ``widget.add_class("kvmcede-dashboard")``) or, failing that, as the first cell
output that holds both a ``.widget-slider`` and an ``<img>``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser.conftest import (
    REPO,
    child_pids,
    free_port,
    kill_pids,
    stop_process,
    wait_for_http,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHAPTER = Path("notebooks/10-before-and-after.ipynb")
RUN_ALL_TIMEOUT_MS = 10 * 60 * 1000  # running the whole chapter, sweeps included
REDRAW_TIMEOUT_MS = 120 * 1000  # one slider step re-simulates and redraws

# True once the notebook's session has a connected, idle kernel.
KERNEL_READY_JS = """
() => {
    const app = window.jupyterapp;
    const panel = app && app.shell.currentWidget;
    const ctx = panel && panel.sessionContext;
    if (!ctx || !ctx.isReady || !ctx.session || !ctx.session.kernel) return false;
    const kernel = ctx.session.kernel;
    return kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}
"""

# Finds the dashboard and returns {src, value} of its figure and first slider, or null.
DASHBOARD_JS = """
() => {
    let root = document.querySelector('.jp-Notebook .kvmcede-dashboard');
    if (!root) {
        const outputs = document.querySelectorAll('.jp-Notebook .jp-OutputArea-output');
        root = Array.from(outputs).find(
            o => o.querySelector('.widget-slider') && o.querySelector('img'));
    }
    if (!root) return null;
    const slider = root.querySelector('.widget-slider');
    const img = root.querySelector('img');
    if (!slider || !img || !img.src) return null;
    const readout = slider.querySelector('.widget-readout');
    return {src: img.src, value: readout ? (readout.value || readout.textContent) : null};
}
"""


@dataclass
class Lab:
    url: str
    token: str
    log: Path
    proc: subprocess.Popen


def _write_settings(settings_dir: Path) -> None:
    """User settings for the throw-away lab: never write the notebook, no news toasts."""
    overrides = {
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "checkForUpdates": False,
            "fetchNews": "false",
        },
    }
    for relative, content in overrides.items():
        path = settings_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content), encoding="utf-8")


def _api(lab: Lab, path: str, method: str = "GET"):
    request = urllib.request.Request(
        f"{lab.url}{path}", method=method, headers={"Authorization": f"token {lab.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


@pytest.fixture
def lab(tmp_path, chromium_path):
    notebook = REPO / CHAPTER
    if not notebook.exists():
        pytest.skip(f"{CHAPTER} does not exist yet (the chapter with the comparison dashboard)")
    original = notebook.read_bytes()

    port = free_port()
    token = secrets.token_hex(24)
    env = dict(os.environ)
    for name, sub in {
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTERLAB_SETTINGS_DIR": "settings",
        "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
        "IPYTHONDIR": "ipython",
    }.items():
        (tmp_path / sub).mkdir()
        env[name] = str(tmp_path / sub)
    _write_settings(tmp_path / "settings")
    env.pop("JUPYTER_TOKEN", None)
    log = tmp_path / "lab.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--allow-root",
                "--ip=127.0.0.1",
                f"--port={port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.token={token}",
                "--ServerApp.open_browser=False",
                f"--ServerApp.root_dir={REPO}",
                # window.jupyterapp lets the test wait until the kernel is really
                # connected; clicking "Run All Cells" before that opens "Select Kernel".
                "--LabApp.expose_app_in_browser=True",
            ],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    handle = Lab(url=f"http://127.0.0.1:{port}", token=token, log=log, proc=proc)
    try:
        wait_for_http(f"{handle.url}/api/status?token={token}", timeout=120, proc=proc)
        yield handle
    finally:
        try:
            for kernel in _api(handle, "/api/kernels") or []:
                _api(handle, f"/api/kernels/{kernel['id']}", method="DELETE")
        except Exception:  # the server may already be gone; the kill below still runs
            pass
        kernels = child_pids(proc.pid)
        stop_process(proc)
        kill_pids([pid for pid in kernels if Path(f"/proc/{pid}").exists()])
        if notebook.read_bytes() != original:  # never leave the chapter modified
            notebook.write_bytes(original)
            pytest.fail(f"JupyterLab modified {CHAPTER}; it was restored")


def _log_tail(lab: Lab) -> str:
    return lab.log.read_text(encoding="utf-8", errors="replace")[-3000:]


def test_dashboard_slider_redraws_figure(lab, page, artifacts_dir):
    page.set_default_timeout(60_000)
    page.goto(f"{lab.url}/lab/tree/{CHAPTER.as_posix()}?token={lab.token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
    page.wait_for_function(KERNEL_READY_JS, timeout=120_000)

    # Run > Run All Cells, as a reader would
    page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
    page.locator(".lm-Menu .lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()

    try:
        page.wait_for_function(DASHBOARD_JS, timeout=RUN_ALL_TIMEOUT_MS)
    except Exception:
        page.screenshot(path=str(artifacts_dir / "lab-no-dashboard.png"), full_page=True)
        raise AssertionError("the comparison dashboard never appeared\n" + _log_tail(lab)) from None

    errors = page.locator(".jp-Notebook [data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, "a cell raised:\n" + "\n".join(errors.all_inner_texts())[:3000]

    before = page.evaluate(DASHBOARD_JS)
    page.screenshot(path=str(artifacts_dir / "lab-dashboard-before.png"))

    handle = page.locator(".jp-Notebook .kvmcede-dashboard .widget-slider .noUi-handle")
    if handle.count() == 0:
        output = (
            page.locator(".jp-Notebook .jp-OutputArea-output")
            .filter(has=page.locator(".widget-slider"))
            .filter(has=page.locator("img"))
        )
        handle = output.first.locator(".widget-slider .noUi-handle")
    handle = handle.first
    handle.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(500)
    if page.evaluate(DASHBOARD_JS)["value"] == before["value"]:  # already at the maximum
        handle.focus()
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")

    page.wait_for_function(
        f"() => {{ const d = ({DASHBOARD_JS})(); return d && d.src !== {json.dumps(before['src'])}; }}",
        timeout=REDRAW_TIMEOUT_MS,
    )
    after = page.evaluate(DASHBOARD_JS)
    page.screenshot(path=str(artifacts_dir / "lab-dashboard-after.png"))
    assert after["value"] != before["value"], "the slider did not move"
    assert after["src"] != before["src"], "the figure did not change"
