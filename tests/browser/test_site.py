"""The built book, as a reader's browser sees it.

Serves ``book/_build/html`` on 127.0.0.1 and visits every page listed in
``book/_toc.yml`` in Debian chromium: each page shows its title as its H1, every
chapter shows at least one figure and every image on it loaded, every same-origin link
answers 200 (and its #fragment exists), chapters carry a Binder launch link to their
notebook, links to other sites are https, and widgets with stored state are rendered.
Every page of the site (those and the generated ones: index, search, genindex) loads
with no console error and no uncaught exception. One chapter is screenshotted into
``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest
import yaml

from tests.browser.conftest import BOOK, REPO, SITE

pytestmark = [pytest.mark.browser, pytest.mark.book]

BINDER = "https://mybinder.org/v2/gh/kvmcede/kvmcede/main?urlpath=lab/tree/"
SCREENSHOT_PAGE = "notebooks/01-the-machine"


def toc_docnames() -> list[str]:
    """Every document of the book, in _toc.yml order (paths relative to book/)."""
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text(encoding="utf-8"))
    names = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                names.append(node["file"])
            for value in node.values():
                if isinstance(value, list | dict):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({key: value for key, value in toc.items() if key != "root"})
    return names


def source_of(docname: str) -> Path:
    for suffix in (".ipynb", ".md"):
        path = BOOK / f"{docname}{suffix}"
        if path.exists():
            return path.resolve()
    raise FileNotFoundError(f"no source for {docname!r} under {BOOK}")


def expected_title(docname: str) -> str:
    """The first level-1 markdown heading of the page's source."""
    path = source_of(docname)
    if path.suffix == ".ipynb":
        notebook = json.loads(path.read_text(encoding="utf-8"))
        chunks = [
            "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for cell in notebook["cells"]
            if cell["cell_type"] == "markdown"
        ]
        text = "\n".join(chunks)
    else:
        text = path.read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    raise AssertionError(f"{path.relative_to(REPO)} has no '# Title' line")


def squash(text: str) -> str:
    """Letters and digits only, lower case: compares a markdown title with its HTML."""
    return re.sub(r"[\W_]+", "", text).lower()


def is_notebook(docname: str) -> bool:
    return docname.startswith("notebooks/")


def is_chapter(docname: str) -> bool:
    """Chapters 01-11 (the preface, 00, is front matter and may have no figure)."""
    return is_notebook(docname) and not Path(docname).name.startswith("00-")


_FETCHED: dict[str, tuple[int, str]] = {}


def _status(request_context, url: str) -> tuple[int, str]:
    """HTTP status (and HTML text) of a same-origin URL, fetched once per session."""
    if url not in _FETCHED:
        response = request_context.get(url)
        body = response.text() if response.ok and url.endswith(".html") else ""
        _FETCHED[url] = (response.status, body)
    return _FETCHED[url]


class ConsoleProblems(list):
    """Console errors and uncaught page errors of one page, recorded from before it
    loads (warnings and logs are not problems: embed.js warns about its own schema)."""

    def __init__(self, page):
        super().__init__()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.append(f"uncaught: {error}"))

    def _console(self, message) -> None:
        if message.type == "error":
            where = message.location or {}
            self.append(f"console.error: {message.text} "
                        f"(at {where.get('url', '?')}:{where.get('lineNumber', '?')})")


#: How long a loaded page is watched for late errors (timers, fetches after "load").
SETTLE_MS = 500


def assert_clean_console(page, problems: ConsoleProblems, name: str) -> None:
    """Watch the loaded page a moment longer, then require no problems.  ("load" waits
    for every script, async ones included; playwright's "networkidle" is not used: it
    sometimes never arrives in this chromium although no request is pending.)"""
    page.wait_for_function("document.readyState === 'complete'")
    page.wait_for_timeout(SETTLE_MS)
    assert not problems, f"{name}: the browser console is not clean:\n" + "\n".join(problems)


DOCNAMES = toc_docnames()
#: The pages Sphinx writes besides the documents (index redirect, search, genindex...).
#: Templates under _static/ are not pages.
GENERATED = sorted(
    str(path.relative_to(SITE).with_suffix("")) for path in SITE.glob("*.html")
    if str(path.relative_to(SITE).with_suffix("")) not in DOCNAMES
) if SITE.is_dir() else ["index", "search", "genindex"]


@pytest.mark.parametrize("docname", DOCNAMES)
def test_page(page, site_url, artifacts_dir, docname):
    url = f"{site_url}/{docname}.html"
    problems = ConsoleProblems(page)
    response = page.goto(url, wait_until="load")
    assert (
        response is not None and response.status == 200
    ), f"{url} -> {response and response.status}"

    # --- the title ------------------------------------------------------------------
    h1 = page.evaluate(
        """() => {
            const h = document.querySelector('article.bd-article h1');
            if (!h) return null;
            const c = h.cloneNode(true);
            c.querySelectorAll('.headerlink').forEach(e => e.remove());
            return c.textContent.trim();
        }"""
    )
    assert h1, f"{docname}: no <h1> in the article"
    assert squash(h1) == squash(expected_title(docname)), f"{docname}: H1 is {h1!r}"

    # --- figures --------------------------------------------------------------------
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('article.bd-article img')).every(i => i.complete)",
        timeout=30_000,
    )
    images = page.evaluate(
        """() => Array.from(document.querySelectorAll('article.bd-article img')).map(
            i => ({src: i.currentSrc || i.src, width: i.naturalWidth}))"""
    )
    broken = [img["src"][:120] for img in images if img["width"] <= 0]
    assert not broken, f"{docname}: images that did not load: {broken}"
    if is_chapter(docname):
        assert images, f"{docname}: a chapter needs at least one figure"

    # --- Binder launch link ---------------------------------------------------------
    if is_notebook(docname):
        launch = page.eval_on_selector_all(
            "a[href*='mybinder.org']", "els => els.map(e => e.getAttribute('href'))"
        )
        assert f"{BINDER}{docname}.ipynb" in launch, f"{docname}: launch links {launch}"

    # --- stored widget state is rendered --------------------------------------------
    has_state = page.locator('script[type="application/vnd.jupyter.widget-state+json"]').count()
    views = page.locator(
        'article.bd-article script[type="application/vnd.jupyter.widget-view+json"]'
    )
    if has_state and views.count():
        page.wait_for_selector(
            "article.bd-article .widget-subarea .jupyter-widgets", timeout=30_000
        )

    # --- internal links -------------------------------------------------------------
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    origin = urlparse(site_url).netloc
    bad = []
    for href in sorted(set(hrefs)):
        parsed = urlparse(href)
        if parsed.scheme not in ("http", "https") or parsed.netloc != origin:
            continue
        target, fragment = urldefrag(href)
        status, body = _status(page.request, target)
        if status != 200:
            bad.append(f"{href} -> HTTP {status}")
        elif fragment and body and f'id="{fragment}"' not in body:
            bad.append(f"{href} -> no element with id {fragment!r}")
    assert not bad, f"{docname}: broken internal links:\n" + "\n".join(bad)
    insecure = sorted({h for h in hrefs
                       if h.startswith("http://") and urlparse(h).netloc != origin})
    assert not insecure, f"{docname}: links to other sites must be https: {insecure}"

    # --- a clean console --------------------------------------------------------------
    assert_clean_console(page, problems, docname)

    if docname == SCREENSHOT_PAGE:
        shot = artifacts_dir / f"site-{Path(docname).name}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 0


@pytest.mark.parametrize("name", GENERATED)
def test_generated_page_has_a_clean_console(page, site_url, name):
    problems = ConsoleProblems(page)
    response = page.goto(f"{site_url}/{name}.html", wait_until="load")
    assert response is not None and response.status == 200, f"{name}: {response and response.status}"
    # index.html is only <meta http-equiv="Refresh" content="0; url=intro.html">: follow
    # it to the end, so that the check covers the page it lands on.
    redirect = re.search(r'http-equiv="Refresh" content="\d+;\s*url=([^"]+)"',
                         (SITE / f"{name}.html").read_text(encoding="utf-8"), re.IGNORECASE)
    if redirect:
        page.wait_for_url(f"{site_url}/{redirect.group(1)}", wait_until="load")
    assert_clean_console(page, problems, name)
