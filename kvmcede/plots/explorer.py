"""The interleaving explorer's verdict as a figure."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from .render import (
    _new_figure,
)
from .style import (
    _ellipsize,
)
from .timeline_data import (
    _timeline_data,
)
from .timelines import (
    _LEGEND_ROW_IN,
    _ROW_IN,
    _legend_entries,
    _legend_kw,
    _legend_rows,
    _trace_handles,
    timeline,
)

# =============================================================================================
# Explorer result
# =============================================================================================

def explorer_result(result: Any, *, fig: Figure | None = None) -> Figure:
    """The explorer's verdict as a figure: what was explored and, for a violation, which
    property broke, and the shortest counterexample's timeline."""
    v = getattr(result, "violation", None)
    tr = getattr(v, "trace", None) if v is not None else None
    head_h = 1.15
    handles: list[Any] = []
    if tr is not None:
        d = _timeline_data(tr)
        handles, labels = _legend_entries(_trace_handles(d, False), full=False)
        leg_h = _LEGEND_ROW_IN * _legend_rows(len(handles)) + 0.12
        rows_h = _ROW_IN * (1 + len(d.threads))
        h = head_h + 0.2 + rows_h + 0.58 + leg_h
    else:
        h = head_h
    if fig is None:
        fig = _new_figure((10.0, h))
    else:
        fig.set_size_inches(10.0, h)
    head = fig.add_axes((0, 1 - head_h / h, 1, head_h / h))
    head.set_axis_off()
    head.set_xlim(0, 1)
    head.set_ylim(0, 1)
    finished = getattr(result, "finished", True)
    # What stopped an unfinished run: the explorer says (state or time limit, Ctrl-C, or
    # the first violation with stop_at_first).
    stop = result.stop_reason() if hasattr(result, "stop_reason") else "stopped early"
    stats = (f"{result.states:,} states, {result.transitions:,} transitions explored in "
             f"{result.seconds:.1f} s" + ("" if finished else f" ({stop}: not "
                                                              "exhaustive)"))
    if v is None:
        verdict = ("✓ every property holds in every reachable state" if finished
                   else "no violation found in the explored states")
        colour = "#117733" if finished else "#997700"
        msg = ""
    else:
        verdict = f"✗ {v.kind} '{v.name}' violated"
        colour = "#AA2222"
        # Breadth-first: a shortest counterexample, unless the run stopped early at a
        # liveness dead end (a shorter one may end in a state that still has steps).
        first = not finished and v.kind == "liveness"
        msg = (f"{v.message}  ({'first dead end found' if first else 'shortest counterexample'}"
               f": {v.depth} steps)")
    head.text(0.01, 0.76, verdict, fontsize=13, fontweight="bold", color=colour,
              va="center")
    head.text(0.01, 0.42, stats, fontsize=10, va="center")
    if msg:
        head.text(0.01, 0.14, _ellipsize(msg, 130), fontsize=9.5, va="center",
                  color="#444444")
    if tr is not None:
        bottom = 0.58 + leg_h
        ax = fig.add_axes((1.0 / 10, bottom / h, 1 - 1.2 / 10, rows_h / h))
        timeline(tr, ax=ax, title="", legend=False)
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.01),
                   **_legend_kw(len(handles)))
    return fig
