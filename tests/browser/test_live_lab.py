"""A live JupyterLab session: run chapter 2 and move its comparison dashboard.

Starts ``jupyter lab`` on 127.0.0.1 (token-protected, root allowed, cwd = repository
root, throw-away runtime/config/settings directories, autosave off), opens
``notebooks/02-the-problem.ipynb`` in Debian chromium, runs all cells, waits for
the comparison dashboard (an ipywidgets slider next to a figure), presses ArrowRight on
its first slider and checks that the figure changed.

The dashboard is found as the element with the CSS class ``kvmcede-dashboard`` (set it
with ``widget.add_class("kvmcede-dashboard")``) or, failing that, as the first cell
output that holds both a ``.widget-slider`` and an ``<img>``.

A second test opens ``notebooks/02-the-problem.ipynb`` (no kernel needed) and checks that
jupyterlab-myst renders the chapter's MyST markup: no raw ``{term}`` / ``{ref}`` /
``{cite}`` roles in the rendered cells, every glossary term shown as its word, and the
exercises' ``<details>`` solutions collapsed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
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

CHAPTER = Path("notebooks/02-the-problem.ipynb")  # the chapter with ComparisonDashboard
RUN_ALL_TIMEOUT_MS = 5 * 60 * 1000  # running the whole chapter
REDRAW_TIMEOUT_MS = 120 * 1000  # one slider step re-simulates and redraws
# A chapter that uses {term}, {ref}, {cite} and <details> solutions (no kernel needed).
MYST_CHAPTER = Path("notebooks/02-the-problem.ipynb")
MYST_RENDER_TIMEOUT_MS = 120 * 1000

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
        # Every cell in the DOM, so that all markdown cells render, wherever they are.
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
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


@contextlib.contextmanager
def _running_lab(tmp_path: Path, chapter: Path) -> Iterator[Lab]:
    """A throw-away JupyterLab for ``chapter``; stopped by PID, the chapter left unchanged."""
    notebook = REPO / chapter
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
            pytest.fail(f"JupyterLab modified {chapter}; it was restored")


@pytest.fixture
def lab(tmp_path, chromium_path):
    if not (REPO / CHAPTER).exists():
        pytest.skip(f"{CHAPTER} does not exist yet (the chapter with the comparison dashboard)")
    with _running_lab(tmp_path, CHAPTER) as handle:
        yield handle


@pytest.fixture
def myst_lab(tmp_path, chromium_path):
    if not (REPO / MYST_CHAPTER).exists():
        pytest.skip(f"{MYST_CHAPTER} does not exist")
    pytest.importorskip(
        "jupyterlab_myst", reason="jupyterlab-myst (the notebooks extra) is missing"
    )
    with _running_lab(tmp_path, MYST_CHAPTER) as handle:
        yield handle


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


# ----------------------------------------------------------------- MyST in JupyterLab

# True once every markdown cell of the open notebook has jupyterlab-myst's rendering
# (a ``.myst`` widget with text in it); windowingMode "none" keeps every cell in the DOM.
MYST_RENDERED_JS = """
() => {
    const app = window.jupyterapp;
    const panel = app && app.shell.currentWidget;
    if (!panel || !panel.content || !panel.content.model) return false;
    const cells = Array.from(panel.content.model.cells);
    const markdown = cells.filter(c => c.type === 'markdown').length;
    const rendered = Array.from(panel.node.querySelectorAll('.jp-MarkdownCell .myst'));
    return markdown > 0 && rendered.length >= markdown
        && rendered.every(r => r.textContent.trim().length > 0);
}
"""

# What a reader sees in the rendered markdown cells (not the hidden source editors).
MYST_CONTENT_JS = """
() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const rendered = Array.from(panel.node.querySelectorAll('.jp-MarkdownCell .myst'));
    const prose = rendered.map(r => {
        const copy = r.cloneNode(true);
        copy.querySelectorAll('code, pre').forEach(c => c.remove());  // code may quote roles
        return copy.textContent;
    }).join('\\n');
    return {
        prose: prose,
        links: rendered.flatMap(r => Array.from(r.querySelectorAll('a')).map(a => a.textContent.trim())),
        details: rendered.flatMap(r => Array.from(r.querySelectorAll('details')).map(d => ({
            open: d.open,
            summary: d.querySelector('summary') ? d.querySelector('summary').textContent.trim() : null,
            bodyVisible: Array.from(d.children).filter(c => c.tagName !== 'SUMMARY')
                .some(c => c.checkVisibility()),
        }))),
    };
}
"""

ROLE = re.compile(r"\{(term|ref|cite(?::\w+)?)\}`([^`]+)`")


def _markdown_sources(chapter: Path) -> list[str]:
    cells = json.loads((REPO / chapter).read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def _shown_text(body: str) -> str:
    """What a role shows: its explicit text (``text <target>``) or else its target."""
    match = re.fullmatch(r"\s*(.*?)\s*<([^<>]+)>\s*", body, re.S)
    return " ".join((match.group(1) if match else body).split())


def test_myst_markup_renders_in_lab(myst_lab, page, artifacts_dir):
    """jupyterlab-myst renders chapter 2's roles and keeps its solutions collapsed."""
    sources = _markdown_sources(MYST_CHAPTER)
    roles = [m.groups() for src in sources for m in ROLE.finditer(src)]
    terms = {_shown_text(body) for name, body in roles if name == "term"}
    assert terms, f"{MYST_CHAPTER} uses no {{term}} role any more: pick another chapter"
    n_details = sum(src.count("<details") for src in sources)

    outside = []  # the page must not fetch anything from outside this machine
    page.on(
        "request",
        lambda r: outside.append(r.url)
        if urllib.parse.urlsplit(r.url).hostname not in ("127.0.0.1", None)
        and not r.url.startswith(("data:", "blob:"))
        else None,
    )
    page.goto(f"{myst_lab.url}/lab/tree/{MYST_CHAPTER.as_posix()}?token={myst_lab.token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-MarkdownCell", timeout=MYST_RENDER_TIMEOUT_MS)
    try:
        page.wait_for_function(MYST_RENDERED_JS, timeout=MYST_RENDER_TIMEOUT_MS)
    except Exception:
        page.screenshot(path=str(artifacts_dir / "lab-myst-not-rendered.png"), full_page=True)
        raise AssertionError(
            "the markdown cells were not rendered by jupyterlab-myst (is it installed and "
            "enabled? `jupyter labextension list`)\n" + _log_tail(myst_lab)
        ) from None
    page.wait_for_timeout(1000)  # let the last cells settle
    content = page.evaluate(MYST_CONTENT_JS)
    page.screenshot(path=str(artifacts_dir / "lab-myst.png"))

    prose = content["prose"]
    for raw in ("{term}`", "{ref}`", "{cite}`", "{cite:", "`{"):
        assert raw not in prose, f"raw MyST {raw!r} in the rendered cells:\n" + "\n".join(
            line for line in prose.splitlines() if raw in line
        )
    for error in ("Unknown Directive", "Unknown Role"):
        assert error not in prose, f"jupyterlab-myst shows an {error!r} box"
    # Every glossary term shows as its word (a link; no glossary to resolve inside Lab).
    missing = sorted(terms - set(content["links"]))
    assert not missing, f"glossary terms not rendered as their word: {missing}"
    # {ref} and {cite} show readable text: their explicit text, else their label or key.
    for name, body in roles:
        shown = _shown_text(body)
        assert shown in " ".join(prose.split()), f"{{{name}}}`{body}` shows nothing readable"

    details = content["details"]
    assert len(details) == n_details, f"{len(details)} <details> rendered, {n_details} in source"
    assert all(d["summary"] for d in details), details
    assert not any(
        d["open"] or d["bodyVisible"] for d in details
    ), f"a solution is not collapsed: {details}"
    assert not outside, f"JupyterLab fetched from outside this machine: {outside[:5]}"
