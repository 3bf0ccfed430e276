"""Timelines: what every hardware thread, the host side and every vcpu did over time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..config import is_finite
from ..config import show as _v
from .render import (
    _displayable,
    _new_figure,
)
from .style import (
    _NAP_HATCH,
    ACTIVITY_LABELS,
    HDEC_COLOUR,
    IPI_COLOURS,
    VECTOR_COLOURS,
    _check_bool,
    _check_index,
    _check_trace,
    _check_width,
    _span_colour,
    _span_edge,
    _span_label,
    _x_unit,
)
from .timeline_data import (
    _Row,
    _timeline_data,
    _TimelineData,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..trace import Trace

# =============================================================================================
# Timeline
# =============================================================================================

_LEGEND_COLS = 2
_LEGEND_FONT = 10.0
_LEGEND_ROW_IN = 0.25  # inches per legend row

#: How the default legend groups the full key into a handful of entries: (group, the
#: labels it gathers with the short name each gets, the entry's label prefix).  An entry
#: shows one patch or marker per member that occurs, in the order of its short names.
_LEGEND_GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...], str], ...] = (
    ("realmode", ((ACTIVITY_LABELS["cede"], "cede, wake"),
                  (ACTIVITY_LABELS["entry"], "entry"),
                  (ACTIVITY_LABELS["exiting"], "exiting the guest")), "real mode: "),
    ("host", ((ACTIVITY_LABELS["host"], "kernel"),
              (ACTIVITY_LABELS["offline"], "offline thread"),
              (ACTIVITY_LABELS["sleeping"], "vcore asleep")), "host: "),
    ("vcpu", ((ACTIVITY_LABELS["ceded"], "ceded"),
              (ACTIVITY_LABELS["out"], "out with work"),
              (ACTIVITY_LABELS["userspace"], "own exit"),
              (ACTIVITY_LABELS["stopped"], "not started")), "vcpu: "),
    ("marks", (("H_CEDE", "H_CEDE"), ("HDEC poke / host tick", "HDEC poke, tick"),
               ("H_PROD: prodded = 1", "H_PROD")), ""),
    ("irq", (("external raised", "0x500 external"), ("decrementer raised", "0x900 DEC"),
             ("delivered at 0x500", "0x500 external"), ("delivered at 0x900", "0x900 DEC")),
     "interrupt raised ▲ / delivered ●: "),
    ("ipi", (("IPI (exit path)", "exit path"), ("IPI (from the host)", "from the host")),
     "IPI: "),
)


def _legend_entries(handles: list[Any], full: bool) -> tuple[list[Any], list[str]]:
    """The legend's (handles, labels): every handle (``full``), or grouped into at most
    eight entries: one for the guest code of every vcpu, napping alone, and the rest by :data:`_LEGEND_GROUPS` (a group with one member keeps its full label)."""
    if full:
        return handles, [h.get_label() for h in handles]
    by_label = {h.get_label(): h for h in handles}
    out_h: list[Any] = []
    out_l: list[str] = []
    guest = [h for h in handles if h.get_label().startswith("guest code: vcpu ")]
    if guest:
        vs = [h.get_label().removeprefix("guest code: vcpu ") for h in guest]
        out_h.append(tuple(guest) if len(guest) > 1 else guest[0])
        out_l.append(("guest code of vcpu " if len(vs) == 1 else "guest code of vcpus ")
                     + ", ".join(vs))
    for lab in (ACTIVITY_LABELS["nap"],):
        if lab in by_label:
            out_h.append(by_label[lab])
            out_l.append(lab)
    grouped = {m for _, members, _ in _LEGEND_GROUPS for m, _ in members}
    for _, members, prefix in _LEGEND_GROUPS:
        present = [(by_label[m], short) for m, short in members if m in by_label]
        if len(present) == 1:
            out_h.append(present[0][0])
            out_l.append(present[0][0].get_label())
        elif present:
            out_h.append(tuple(h for h, _ in present))
            shorts = list(dict.fromkeys(short for _, short in present))  # once each
            out_l.append(prefix + " / ".join(shorts))
    done = {id(h) for h in guest} | grouped | {ACTIVITY_LABELS["nap"]}
    for h in handles:  # anything not in a group (none today) keeps its own entry
        if id(h) not in done and h.get_label() not in done:
            out_h.append(h)
            out_l.append(h.get_label())
    return out_h, out_l


def _legend_kw(n: int) -> dict[str, Any]:
    from matplotlib.legend_handler import HandlerTuple
    return {"ncol": min(_LEGEND_COLS, max(1, n)), "fontsize": _LEGEND_FONT, "frameon": False,
            "handlelength": 2.6, "columnspacing": 1.5, "handletextpad": 0.5,
            "handler_map": {tuple: HandlerTuple(ndivide=None, pad=0.1)}}


def _legend_rows(n: int) -> int:
    return -(-n // min(_LEGEND_COLS, max(1, n))) if n else 0
_ROW_IN = 0.42  # inches per timeline row


def timeline(trace: Trace, start_us: float | None = None, end_us: float | None = None,
             highlight_step: int | None = None, title: str | None = None, *,
             vcpus: bool = False, aggregate: bool | None = None, legend: bool | str = True,
             ax: Axes | None = None, fig: Figure | None = None,
             width: float = 10.0) -> Figure:
    """What every hardware thread (and the host side) did over time.

    One row per hardware thread, coloured by what it does ("guest" in its vcpu's colour,
    "nap", "cede", "entry", "exiting", "offline", "host"), one row for the host side
    (the vcore asleep on ``vc->wq``, interrupts raised, host ticks) and, with
    ``vcpus=True``, one row per vcpu ("guest", "nap", "ceded", "out", "stopped").
    Markers: H_CEDE calls (▼), IPIs as arrows from the sender (a thread, or the host) to
    the moment the receiving thread takes them, HDEC pokes (★), interrupts raised (▲ on
    the host row) and delivered at their vector (●), and the reason of each whole-core
    exit.

    ``start_us``/``end_us`` select a window (for explorer counterexamples the x axis is
    the step number and the window is in steps).  When the window holds more spans than
    the plot has pixels (``aggregate=None`` decides; True/False forces it), each row is
    drawn as a density band: every pixel column shows the time split of that instant,
    and markers too dense to read are counted in a note instead of drawn.
    ``highlight_step`` draws a line at that step (0-based index into ``trace.steps``).
    ``legend``: True (what the window shows), ``"all"`` (everything the trace holds, so
    that a legend need not change with the window) or False.
    Returns the figure: drawn into ``ax`` if one is given, else laid out (and resized)
    in ``fig`` if one is given, else in a new figure ``width`` inches wide.
    """
    _check_trace(trace)
    _check_width(width)
    for name, v in (("start_us", start_us), ("end_us", end_us)):
        if v is not None and not is_finite(v):
            raise ValueError(f"{name}: got {_v(v)}; allowed: a finite number or None")
    _check_bool("vcpus", vcpus)
    if aggregate is not None:
        _check_bool("aggregate", aggregate)
    if legend not in (True, False, "all") or not isinstance(legend, bool | str):
        raise ValueError(f"legend: got {_v(legend)}; allowed: True, False or 'all'")
    if title is not None and not isinstance(title, str):
        raise ValueError(f"title: got {_v(title)}; allowed: a string or None")
    d = _timeline_data(trace)
    a = 0.0 if start_us is None else float(start_us)
    b = d.end if end_us is None else float(end_us)
    if b <= a:
        if start_us is None and end_us is None:  # an empty trace: show one unit
            b = a + 1.0
        else:
            raise ValueError(f"end_us must be greater than start_us, got start_us={a!r}, "
                             f"end_us={b!r}")
    if highlight_step is not None:
        _check_index("highlight_step", highlight_step, len(trace.steps))
    rows = [d.host, *d.threads, *(d.vcpus if vcpus else ())]
    own = ax is None
    if own:
        if fig is None:
            fig = _new_figure((width, 4.0))
        else:
            fig.set_size_inches(width, 4.0)
        ax = fig.add_axes((0.1, 0.2, 0.88, 0.7))
    fig = ax.figure
    handles = _draw_timeline(ax, trace, d, rows, a, b, highlight_step, vcpus, aggregate)
    if title is None:
        cfg = trace.config
        what = "counterexample" if trace.source == "explore" else "simulation"
        title = (f"{what}: policy {cfg.policy}, SMT{cfg.threads_per_core}, "
                 f"{cfg.vcpus} vcpu{'s' if cfg.vcpus > 1 else ''}")
        if cfg.ablations or cfg.changes:
            title += " — " + ", ".join(sorted(cfg.ablations | cfg.changes))
    if title:
        ax.set_title(title, fontsize=11, loc="left")
    if legend == "all":
        handles = _trace_handles(d, vcpus)
    hs, labels = _legend_entries(handles, full=legend == "all") if legend else ([], [])
    leg_rows = _legend_rows(len(hs))
    if own:
        rows_h = _ROW_IN * len(rows)
        top = 0.42 if title else 0.15
        bottom = 0.58 + (_LEGEND_ROW_IN * leg_rows + 0.12 if leg_rows else 0.0)
        height = top + rows_h + bottom
        fig.set_size_inches(width, height)
        ax.set_position((1.0 / width, bottom / height, 1 - 1.2 / width, rows_h / height))
        if leg_rows:
            fig.legend(hs, labels, loc="lower center", bbox_to_anchor=(0.5, 0.01),
                       **_legend_kw(len(hs)))
    elif leg_rows:
        ax.legend(hs, labels, loc="upper center", bbox_to_anchor=(0.5, -0.22),
                  **_legend_kw(len(hs)))
    return fig


def redraw_timeline(ax: Axes, trace: Trace, start: float, end: float, *,
                    vcpus: bool = False, title: str = "") -> None:
    """Redraw the window [start, end] of ``trace`` into ``ax``, an axes that
    :func:`timeline` drew before (keeping its layout and the figure's legend): what a
    widget does when its window moves."""
    for name, v in (("start", start), ("end", end)):
        if not is_finite(v):
            raise ValueError(f"{name}: got {_v(v)}; allowed: a finite number")
    if not end > start:
        raise ValueError(f"end: got {_v(end)} with start={start!r}; allowed: end > start "
                         f"(end must be greater than start)")
    d = _timeline_data(trace)
    _clear_axes(ax)
    rows = [d.host, *d.threads, *(d.vcpus if vcpus else ())]
    _draw_timeline(ax, trace, d, rows, float(start), float(end), None, vcpus, None)
    ax.set_title(title, fontsize=11, loc="left")


def step_position(trace: Trace, k: int) -> float:
    """The x of step ``k`` (0-based) in :func:`timeline`'s units (µs, or steps)."""
    _check_index("k", k, len(trace.steps))
    return float(_timeline_data(trace).step_x[k])


def timeline_end(trace: Trace) -> float:
    """The end of ``trace`` in :func:`timeline`'s units (µs, or steps)."""
    return float(_timeline_data(trace).end)


def timeline_legend(trace: Trace, *, vcpus: bool = False, width: float = 10.0,
                    fig: Figure | None = None) -> Figure:
    """The legend of :func:`timeline` for everything ``trace`` holds, as a figure of its
    own (a player shows it once under timelines drawn with ``legend=False``)."""
    _check_trace(trace)
    _check_width(width)
    _check_bool("vcpus", vcpus)
    hs, labels = _legend_entries(_trace_handles(_timeline_data(trace), vcpus), full=False)
    height = _LEGEND_ROW_IN * max(1, _legend_rows(len(hs))) + 0.16
    if fig is None:
        fig = _new_figure((width, height))
    else:
        fig.set_size_inches(width, height)
    if hs:
        fig.legend(hs, labels, loc="center", **_legend_kw(len(hs)))
    _displayable(fig)
    return fig


def _trace_handles(d: _TimelineData, with_vcpus: bool) -> list[Any]:
    """Legend entries for everything the trace holds (spans of the drawn rows and every
    kind of marker that occurs)."""
    rows = [d.host, *d.threads, *(d.vcpus if with_vcpus else ())]
    used = sorted({int(c) for r in rows for c in np.unique(r.codes)},
                  key=lambda c: _legend_order(d.codes[c]))
    hs: list[Any] = [
        Patch(facecolor=_span_colour(d.codes[c]), label=_span_label(d.codes[c]),
              hatch=_NAP_HATCH if d.codes[c][0] == "nap" else None,
              edgecolor=_span_edge(d.codes[c])) for c in used]
    if len(d.hcede):
        hs.append(Line2D([], [], ls="", marker="v", color="black", ms=5, label="H_CEDE"))
    if len(d.pokes) or len(d.ticks):
        hs.append(Line2D([], [], ls="", marker="*", color=HDEC_COLOUR, ms=8,
                         label="HDEC poke / host tick"))
    if len(d.prods):
        hs.append(Line2D([], [], ls="", marker="D", color="white", mec="black", mew=0.8,
                         ms=5, label="H_PROD: prodded = 1"))
    for vec, name in ((0x500, "external"), (0x900, "decrementer")):
        if len(d.raises) and (d.raises[:, 2] == vec).any():
            hs.append(Line2D([], [], ls="", marker="^", color=VECTOR_COLOURS[vec],
                             mec="black", mew=0.5, ms=6, label=f"{name} raised"))
    for vec in (0x500, 0x900):
        if len(d.delivers) and (d.delivers[:, 3] == vec).any():
            hs.append(Line2D([], [], ls="", marker="o", color=VECTOR_COLOURS[vec],
                             mec="black", mew=0.5, ms=6, label=f"delivered at {vec:#x}"))
    if len(d.ipis) and (d.ipis[:, 1] >= 0).any():
        hs.append(Line2D([0, 1], [0, 0], color=IPI_COLOURS["exit"], lw=1,
                         label="IPI (exit path)"))
    if len(d.ipis) and (d.ipis[:, 1] < 0).any():
        hs.append(Line2D([0, 1], [0, 0], color=IPI_COLOURS["host"], lw=1, ls=(0, (4, 2)),
                         label="IPI (from the host)"))
    return hs


def _clear_axes(ax: Axes) -> None:
    """Remove what :func:`_draw_timeline` added, keeping the axes, its ticks and the
    figure's legend (so a widget can redraw a new window cheaply)."""
    for group in (ax.collections, ax.lines, ax.images, ax.texts, ax.patches):
        for a in list(group):
            a.remove()


def _row_y(n_rows: int, k: int) -> float:
    return float(n_rows - 1 - k)


def _draw_timeline(ax: Axes, tr: Trace, d: _TimelineData, rows: list[_Row], a: float,
                   b: float, highlight: int | None, with_vcpus: bool,
                   aggregate: bool | None) -> list[Any]:
    """Draw the rows, markers and arrows into ``ax``; return the legend handles."""
    n_rows = len(rows)
    n_thr = len(d.threads)
    h = 0.72
    ax.set_xlim(a, b)
    ax.set_ylim(-0.6, n_rows - 0.4)
    ax.set_yticks([_row_y(n_rows, k) for k in range(n_rows)],
                  [r.label for r in rows], fontsize=10)
    ax.tick_params(axis="y", length=0)
    ax.tick_params(axis="x", labelsize=9)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    from matplotlib.ticker import FuncFormatter, ScalarFormatter
    if _x_unit(tr) == "µs" and b - a >= 5000:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{x / 1000:g}"))
        ax.set_xlabel("time (ms)", fontsize=10)
    else:
        plain = ScalarFormatter(useOffset=False)  # 10,000.5 µs, not 0.5 + 1e4
        plain.set_scientific(False)
        ax.xaxis.set_major_formatter(plain)
        ax.set_xlabel("step" if _x_unit(tr) == "step" else "time (µs)", fontsize=10)
    if _x_unit(tr) == "step":
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.axhline(_row_y(n_rows, 0) - 0.5, color="#999999", lw=0.6)
    if with_vcpus:
        ax.axhline(_row_y(n_rows, n_thr) - 0.5, color="#999999", lw=0.6)

    # ---- spans: bars, or density bands when they would be thinner than a pixel
    fig = ax.figure
    px = max(50, int(fig.get_figwidth() * fig.dpi * ax.get_position().width))
    windows = []
    for r in rows:
        i0 = int(np.searchsorted(r.ends, a, side="right"))
        i1 = int(np.searchsorted(r.starts, b, side="left"))
        windows.append((i0, max(i0, i1)))
    if aggregate is None:
        aggregate = max((i1 - i0 for i0, i1 in windows), default=0) > px // 4
    used: set[int] = set()
    for k, (r, (i0, i1)) in enumerate(zip(rows, windows, strict=False)):
        if i1 <= i0:
            continue
        y = _row_y(n_rows, k)
        st = np.clip(r.starts[i0:i1], a, b)
        en = np.clip(r.ends[i0:i1], a, b)
        cd = r.codes[i0:i1]
        used.update(int(c) for c in np.unique(cd))
        if aggregate:
            _draw_band(ax, d, st, en, cd, a, b, y, h, px, r.label)
            continue
        nap = np.array([d.codes[c][0] == "nap" for c in cd], bool)
        for sel, hatch, suffix in ((~nap, None, ""), (nap, _NAP_HATCH, "|nap")):
            if sel.any():
                coll = ax.broken_barh(
                    list(zip(st[sel], en[sel] - st[sel], strict=False)), (y - h / 2, h),
                    facecolors=[_span_colour(d.codes[c]) for c in cd[sel]],
                    edgecolors=[_span_edge(d.codes[c]) for c in cd[sel]],
                    linewidth=0.4 if hatch is None else 0.0, hatch=hatch)
                coll.set_gid(f"spans|{r.label}{suffix}")
        if 1 <= k <= n_thr:
            _label_vcpus(ax, d, st, en, cd, y, px / (b - a))
    handles: list[Any] = [
        Patch(facecolor=_span_colour(d.codes[c]), label=_span_label(d.codes[c]),
              hatch=_NAP_HATCH if d.codes[c][0] == "nap" and not aggregate else None,
              edgecolor=_span_edge(d.codes[c]))
        for c in sorted(used, key=lambda c: _legend_order(d.codes[c]))]

    # ---- markers (skipped, and counted, when too dense to read)
    y_host = _row_y(n_rows, 0)
    dense = px // 6

    def thread_y(i: np.ndarray) -> np.ndarray:
        return n_rows - 2 - i

    def vcpu_y(v: np.ndarray) -> np.ndarray:
        return n_rows - 2 - n_thr - v

    skipped_n: dict[str, int] = {}

    def pick(arr: np.ndarray, what: str) -> np.ndarray:
        """Rows of ``arr`` inside the window, or none if they are too many to draw."""
        if not len(arr):
            return arr
        m = (arr[:, 0] >= a) & (arr[:, 0] <= b)
        if aggregate and m.sum() > dense:
            skipped_n[what] = skipped_n.get(what, 0) + int(m.sum())
            return arr[:0]
        return arr[m]

    ms = 5.0
    hc = pick(d.hcede, "H_CEDE")
    if len(hc):
        ax.scatter(hc[:, 0], thread_y(hc[:, 1]) + h / 2 + 0.03, marker="v", s=ms ** 2,
                   color="black", zorder=5, linewidths=0, gid="H_CEDE")
        handles.append(Line2D([], [], ls="", marker="v", color="black", ms=5,
                              label="H_CEDE"))
    pk = pick(d.pokes, "HDEC")
    tk = pick(d.ticks, "HDEC")
    if len(pk) or len(tk):
        x = np.concatenate([pk[:, 0], tk[:, 0]])
        y = np.concatenate([thread_y(pk[:, 1]), np.full(len(tk), y_host)])
        ax.scatter(x, y, marker="*", s=(ms * 1.9) ** 2, color=HDEC_COLOUR,
                   edgecolors="white", linewidths=0.4, zorder=8, gid="HDEC")
        handles.append(Line2D([], [], ls="", marker="*", color=HDEC_COLOUR, ms=8,
                              label="HDEC poke / host tick"))
    pr = pick(d.prods, "H_PRODs")
    if len(pr):
        ax.scatter(pr[:, 0], np.full(len(pr), y_host), marker="D", s=(ms * 0.95) ** 2,
                   color="white", edgecolors="black", linewidths=0.8, zorder=8, gid="H_PROD")
        handles.append(Line2D([], [], ls="", marker="D", color="white", mec="black", mew=0.8,
                              ms=5, label="H_PROD: prodded = 1"))
    for vec, name in ((0x500, "external"), (0x900, "decrementer")):
        rs = d.raises[d.raises[:, 2] == vec] if len(d.raises) else d.raises
        rs = pick(rs, "interrupt marks")
        if len(rs):
            y = vcpu_y(rs[:, 1]) if with_vcpus else np.full(len(rs), y_host)
            ax.scatter(rs[:, 0], y, marker="^", s=(ms * 1.2) ** 2, color=VECTOR_COLOURS[vec],
                       edgecolors="black", linewidths=0.5, zorder=8, gid=f"raise|{vec:#x}")
            handles.append(Line2D([], [], ls="", marker="^", color=VECTOR_COLOURS[vec],
                                  mec="black", mew=0.5, ms=6, label=f"{name} raised"))
    for vec in (0x500, 0x900):
        dv = d.delivers[d.delivers[:, 3] == vec] if len(d.delivers) else d.delivers
        dv = pick(dv, "interrupt marks")
        if len(dv):
            ax.scatter(dv[:, 0], thread_y(dv[:, 1]), marker="o", s=(ms * 1.2) ** 2,
                       color=VECTOR_COLOURS[vec], edgecolors="black", linewidths=0.5,
                       zorder=8, gid=f"deliver|{vec:#x}")
            handles.append(Line2D([], [], ls="", marker="o", color=VECTOR_COLOURS[vec],
                                  mec="black", mew=0.5, ms=6, label=f"delivered at {vec:#x}"))
    for from_host, colour, label in ((False, IPI_COLOURS["exit"], "IPI (exit path)"),
                                     (True, IPI_COLOURS["host"], "IPI (from the host)")):
        ip = d.ipis[(d.ipis[:, 1] < 0) == from_host] if len(d.ipis) else d.ipis
        if len(ip):
            m = (ip[:, 0] <= b) & (ip[:, 3] >= a)
            if aggregate and m.sum() > dense:
                skipped_n["IPIs"] = skipped_n.get("IPIs", 0) + int(m.sum())
                continue
            ip = ip[m]
        if not len(ip):
            continue
        x0, snd, tgt, x1 = ip.T
        yc0 = np.where(snd < 0, y_host, thread_y(snd))
        yc1 = thread_y(tgt)
        sgn = np.sign(yc1 - yc0)
        y0 = yc0 + sgn * h / 2  # leave the sender's row at its edge ...
        y1 = yc1 - sgn * h / 2  # ... and end on the receiver's edge
        segs = np.stack([np.stack([x0, y0], 1), np.stack([x1, y1], 1)], 1)
        ax.add_collection(LineCollection(
            segs, colors=colour, linewidths=1.0, linestyles="solid" if not from_host
            else (0, (4, 2)), zorder=7, gid=f"ipi|{'host' if from_host else 'exit'}"))
        down = y1 < y0
        for sel, mk in ((down, "v"), (~down, "^")):
            if sel.any():
                ax.scatter(x1[sel], y1[sel], marker=mk, s=(ms * 0.95) ** 2, color=colour,
                           linewidths=0, zorder=7)
        handles.append(Line2D([0, 1], [0, 0], color=colour, lw=1,
                              ls="-" if not from_host else (0, (4, 2)), label=label))
    exits = [e for e in d.exits if a <= e[0] <= b]
    if exits and len(exits) <= 12:
        last: dict[int, float] = {}
        for x, thr, reason in sorted(exits):
            if x - last.get(thr, -np.inf) < 0.12 * (b - a):
                continue  # too close to the previous label on this row to be read
            last[thr] = x
            y = float(thread_y(np.asarray(thr))) if thr >= 0 else y_host
            right = x > a + 0.82 * (b - a)  # near the right edge: label to the left
            ax.annotate(f"exit: {reason}", (x, y), xytext=(-7 if right else 7, 0),
                        textcoords="offset points", fontsize=8.5, va="center",
                        ha="right" if right else "left", color="#661111", zorder=9,
                        gid="exit-label", bbox={"boxstyle": "round,pad=0.15", "fc": "white",
                                                "ec": "#EE6677", "lw": 0.6, "alpha": 0.85})
    elif exits:
        skipped_n["exits"] = len(exits)
    if highlight is not None:
        ax.axvline(d.step_x[highlight], color="black", lw=1.2, zorder=10, gid="highlight")
    if aggregate:
        note = "aggregated: each pixel column shows the time split"
        if skipped_n:
            note += "\nnot drawn: " + " · ".join(f"{n:,} {w}" for w, n in skipped_n.items())
        ax.text(1.0, 1.01, note, transform=ax.transAxes, ha="right", va="bottom",
                fontsize=8, color="#555555", gid="aggregate-note")
    return handles


_VCPU_LABEL_MIN_PX = 18  # a guest bar narrower than this gets no "v2" on it
_VCPU_LABELS_MAX = 80  # per row and window: beyond that the bars are too many to read


def _label_vcpus(ax: Axes, d: _TimelineData, st: np.ndarray, en: np.ndarray,
                 cd: np.ndarray, y: float, px_per_x: float) -> None:
    """Write its vcpu ("v2") on every guest bar of a thread row that is wide enough, so
    that a vcpu can be followed from thread to thread when its ptid changes."""
    from matplotlib.colors import to_rgb

    wide = np.flatnonzero((en - st) * px_per_x >= _VCPU_LABEL_MIN_PX)[:_VCPU_LABELS_MAX]
    for j in wide:
        act, v = d.codes[cd[j]]
        if act != "guest" or v < 0:
            continue
        r, g, b_ = to_rgb(_span_colour((act, v)))
        dark = 0.2126 * r + 0.7152 * g + 0.0722 * b_ < 0.5
        ax.text((st[j] + en[j]) / 2, y, f"v{v}", ha="center", va="center", fontsize=8,
                fontweight="bold", color="white" if dark else "black", zorder=6,
                clip_on=True, gid="vcpu-label")


_ORDER = ("guest", "nap", "cede", "entry", "exiting", "offline", "host", "ceded", "out",
          "userspace", "stopped", "sleeping")


def _legend_order(code: tuple[str, int]) -> tuple[int, int]:
    return (_ORDER.index(code[0]), code[1])


def _draw_band(ax: Axes, d: _TimelineData, st: np.ndarray, en: np.ndarray, cd: np.ndarray,
               a: float, b: float, y: float, h: float, px: int, label: str) -> None:
    """Draw one row as a density band: ``px`` columns, each stacked bottom-up (in legend
    order) with the share of that pixel's time spent in each activity."""
    from matplotlib.colors import to_rgba

    edges = np.linspace(a, b, px + 1)
    codes = sorted(np.unique(cd).tolist(), key=lambda c: _legend_order(d.codes[c]))
    frac = np.zeros((len(codes), px))
    for j, c in enumerate(codes):
        sel = cd == c
        s, e = st[sel], en[sel]
        dur = e - s
        cum = np.concatenate([[0.0], np.cumsum(dur)])
        # time spent in code c before each edge: whole spans before it, plus the part of
        # the span it falls in
        i = np.searchsorted(s, edges, side="right") - 1
        ii = np.maximum(i, 0)
        f = np.where(i >= 0, cum[ii] + np.clip(edges - s[ii], 0, dur[ii]), 0.0)
        frac[j] = np.diff(f)
    frac /= np.diff(edges)
    levels = 12
    cum = np.cumsum(frac, axis=0)
    centre = (np.arange(levels) + 0.5) / levels
    idx = (cum[None, :, :] < centre[:, None, None]).sum(axis=1)  # (levels, px)
    rgba = np.zeros((len(codes) + 1, 4))
    for j, c in enumerate(codes):
        rgba[j] = to_rgba(_span_colour(d.codes[c]))
    img = rgba[idx]  # the last entry (transparent) where less than the level is covered
    ax.imshow(img, extent=(a, b, y - h / 2, y + h / 2), origin="lower", aspect="auto",
              interpolation="nearest", zorder=2, gid=f"band|{label}")
