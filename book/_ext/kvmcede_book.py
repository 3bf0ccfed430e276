"""Sphinx extension for the kvmcede book: launch links, and a page console free of errors.

1. Point launch buttons at the real notebooks.  The chapters live in ``notebooks/`` at
   the repository root and reach the book through the symlink ``book/notebooks ->
   ../notebooks``. sphinx-book-theme builds a launch URL as
   ``<path_to_book>/<page>.ipynb``, i.e. ``book/notebooks/NN-name.ipynb``. That path
   does open on Binder (through the symlink), but the reader should land on the file
   the README's badge opens, ``notebooks/NN-name.ipynb``, so the launch URLs and the
   source link are rewritten here. The theme adds its buttons in
   ``html-page-context`` at priority 501; this handler runs after it.

2. Load each inline script once.  Sphinx 7.4 keeps an inline script (``add_js_file(None,
   body=...)``) that an extension adds after the builder was created twice: once as
   added (file name ``None``) and once more when ``prepare_writing`` re-adds the
   registry's scripts (file name ``""``), and the two do not compare equal.  Two
   extensions do that: sphinx-thebe (``const THEBE_JS_URL = ...`` at
   ``env-before-read-docs``), whose second copy is a SyntaxError ("Identifier
   'THEBE_JS_URL' has already been declared") on every page, and sphinx-togglebutton
   (``var togglebuttonSelector``, harmless).  The page's script list is de-duplicated
   here, first copy kept.

3. Give every page an icon, so the browser does not ask for ``/favicon.ico`` and log a
   404 in the console.  The icon is an inline SVG (no file to ship); a book that sets
   ``html_favicon`` keeps its own.
"""

from __future__ import annotations

from typing import Any

SYMLINKED_PREFIX = "book/notebooks/"
REAL_PREFIX = "notebooks/"

#: A 16x16 rounded square: the site's icon, as a data: URI (URL-encoded SVG).
FAVICON = ("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' "
           "viewBox='0 0 16 16'%3E%3Crect width='16' height='16' rx='3' "
           "fill='%23345'/%3E%3Cpath d='M4 3v10M4 8l6-5M4 8l6 5' stroke='%23fff' "
           "stroke-width='2' fill='none'/%3E%3C/svg%3E")


def _rewrite(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(SYMLINKED_PREFIX, REAL_PREFIX)
    if isinstance(value, list):
        return [_rewrite(item) for item in value]
    if isinstance(value, dict):
        return {key: _rewrite(item) for key, item in value.items()}
    return value


def _fix_launch_links(app, pagename, templatename, context, doctree) -> None:
    if not pagename.startswith(REAL_PREFIX):
        return
    for key in ("header_buttons", "launch_buttons"):
        if key in context:
            context[key] = _rewrite(context[key])


def _script_key(script: Any) -> tuple:
    """What makes two script entries the same script: file (None and "" alike: both
    mean an inline script), priority and attributes (an inline script's body is one)."""
    filename = getattr(script, "filename", script)
    attributes = getattr(script, "attributes", {})
    return (filename or "", getattr(script, "priority", 500),
            tuple(sorted((k, str(v)) for k, v in attributes.items())))


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    # In place: the list is the builder's, which restores it before the next page.
    scripts[:] = unique


def _add_favicon(app, pagename, templatename, context, doctree) -> None:
    if not context.get("favicon_url"):
        context["favicon_url"] = FAVICON


def setup(app):
    app.connect("html-page-context", _fix_launch_links, priority=900)
    # After every extension that adds scripts at page time (myst-nb's widget scripts at
    # the default priority 500).
    app.connect("html-page-context", _dedupe_scripts, priority=990)
    app.connect("html-page-context", _add_favicon)
    return {"version": "0.2", "parallel_read_safe": True, "parallel_write_safe": True}
