"""Execute the chapters top to bottom and store their outputs (what authors run after a
change to the package), printing each chapter's and the whole suite's execution time.

    python -m tests.execute_notebooks                # every chapter
    python -m tests.execute_notebooks 03-nap 08      # chapters whose names start so

The widget state is stored with the notebook (nbclient's ``store_widget_state``) so
that the book's static pages can show each widget's default view.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute(path: Path, timeout: int = 600) -> float:
    """Execute one notebook in place; returns its wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}},
                            store_widget_state=True)
    t0 = time.perf_counter()
    client.execute()
    dt = time.perf_counter() - t0
    nbformat.write(nb, path)
    return dt


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    if args:
        paths = [p for p in paths if any(p.stem.startswith(a) for a in args)]
        if not paths:
            print(f"no chapter matches {args}", file=sys.stderr)
            return 2
    total = 0.0
    for p in paths:
        dt = execute(p)
        total += dt
        print(f"{p.name:<32} {dt:6.1f} s", flush=True)
    print(f"{'total':<32} {total:6.1f} s ({len(paths)} notebooks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
