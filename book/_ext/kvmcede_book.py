"""Sphinx extension for the kvmcede book: point launch buttons at the real notebooks.

The chapters live in ``notebooks/`` at the repository root and reach the book through
the symlink ``book/notebooks -> ../notebooks``. sphinx-book-theme builds a launch URL
as ``<path_to_book>/<page>.ipynb``, i.e. ``book/notebooks/NN-name.ipynb``. That path
does open on Binder (through the symlink), but the reader should land on the file the
README's badge opens, ``notebooks/NN-name.ipynb``, so the launch URLs and the source
link are rewritten here. The theme adds its buttons in ``html-page-context`` at
priority 501; this handler runs after it.
"""

from __future__ import annotations

from typing import Any

SYMLINKED_PREFIX = "book/notebooks/"
REAL_PREFIX = "notebooks/"


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


def setup(app):
    app.connect("html-page-context", _fix_launch_links, priority=900)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
