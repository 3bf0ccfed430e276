"""Concept diagrams: the POWER7 core, a thread's path through real mode, the exit protocol.

Three pictures a chapter shows before (or beside) a timeline, each drawn from the model
so that it cannot drift from the code:

* :func:`core_diagram` -- the core as boxes: the host and the guest partition, the
  hardware threads with their paca, the vcore and its vcpus, from a
  :class:`~kvmcede.config.Config` and, optionally, a :class:`~kvmcede.state.Machine`;
* :func:`thread_path` -- the locations a hardware thread passes through
  (``Thread.loc``) and the steps between them, found by **running the model**
  (:func:`path_edges` enumerates the reachable states of a small configuration), laid out
  by a hand-tuned table with a fallback for locations the table does not know;
* :func:`exit_sequence` -- the exit protocol of one whole-core exit as a sequence chart,
  drawn from a :class:`~kvmcede.trace.Trace`'s events, time in µs downwards.

Presentation only: this module imports matplotlib and the model; the model never imports
it.  Figures follow :mod:`kvmcede.plots`' display convention (shown inline by Jupyter,
plain ``Figure`` elsewhere) and its colour-blind-safe colours.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import pairwise
from typing import TYPE_CHECKING

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

from .config import Config
from .guest import Workload
from .model import Model
from .plots import ACTIVITY_COLOURS, VCPU_COLOURS
from .plots.render import _new_figure
from .realmode import STEP_NAME
from .sim import LOC_ACTIVITY
from .state import VCORE_STATE_NAMES, VCPU_STATE_NAMES, Machine, entry_count, exit_count

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .trace import Trace

__all__ = ["PATHS", "PATH_LAYOUT", "core_diagram", "exit_sequence", "path_edges",
           "path_locations", "thread_path"]

_MONO = "DejaVu Sans Mono"
_FS = 8.5  # smallest font size (points): legible at the site's ~700 px width
_LINE = "#333333"
_HIGHLIGHT = "#EE7733"  # Tol vibrant orange: the highlighted path
_PALE = "#F7F7F7"
_WHITE_TEXT = {"host", "guest"}  # activities drawn dark: white labels on them

_ACTIVITY_TEXT = {
    "guest": "guest code",
    "cede": "real-mode cede / wake code",
    "nap": "napping in H_CEDE",
    "entry": "guest entry",
    "exiting": "exit path",
    "offline": "offline in the host",
    "host": "host kernel (thread 0)",
}


def _fill(activity: str) -> str:
    return VCPU_COLOURS[0] if activity == "guest" else ACTIVITY_COLOURS[activity]


def _text_colour(activity: str) -> str:
    return "white" if activity in _WHITE_TEXT else "black"


def _canvas(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure ``width`` x ``height`` inches whose axes' data unit is one inch, y up."""
    fig = _new_figure((width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    return fig, ax


def _box(ax: Axes, x: float, y: float, w: float, h: float, fc: str, ec: str = _LINE,
         lw: float = 0.8, ls: str = "-", hatch: str | None = None, z: float = 1) -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.06",
                                fc=fc, ec=ec, lw=lw, ls=ls, hatch=hatch, zorder=z))


# =============================================================================================
# The core
# =============================================================================================

def _short_state(names: dict[int, str], value: int, prefix: str) -> str:
    return names.get(value, str(value)).removeprefix(prefix)


def core_diagram(config: Config | None = None, state: Machine | None = None,
                 title: str | None = None) -> Figure:
    """The POWER7 core as boxes, with the values of ``state`` (default: the initial state
    of ``config``; default config: ``Config()``, SMT4 with four vcpus).

    Top left the host partition (the vcpus' host tasks, the vcore's runner), top right
    the guest partition (the vcore: ``vcore_state``, ``entry_exit_count``,
    ``napping_threads``, ``in_guest``, ``nap_count`` / ``n_woken``, and its vcpus), at the
    bottom the core's hardware threads with their paca (``napping``, ``kvm_vcpu``),
    coloured by what they are doing.  A line joins each thread to the partition it is
    in: to its vcpu in the guest, or to the host.  Thread 0 is the runner's thread.

    >>> from kvmcede.plots import figure_strings
    >>> fig = core_diagram(Config(threads_per_core=2, vcpus=2))
    >>> "thread 1" in figure_strings(fig) and "vcpu 1" in figure_strings(fig)
    True
    """
    config = Config() if config is None else config
    if not isinstance(config, Config):
        raise ValueError(f"config: got {type(config).__name__}; allowed: a Config or None")
    if state is None:
        state = Model(config, Workload(((),) * config.vcpus)).initial()
    elif not isinstance(state, Machine):
        raise ValueError(f"state: got {type(state).__name__}; allowed: a Machine or None")
    if len(state.threads) != config.threads_per_core or len(state.vcpus) != config.vcpus:
        raise ValueError("state: its threads and vcpus do not match config "
                         f"({config.threads_per_core} threads, {config.vcpus} vcpus)")
    n = config.threads_per_core
    W, H = 7.0, 5.35
    fig, ax = _canvas(W, H)
    vc = state.vcore

    def text(x, y, s, size=_FS, **kw):
        kw.setdefault("va", "center")
        return ax.text(x, y, s, fontsize=size, zorder=5, **kw)

    text(0.1, H - 0.17, title or f"One POWER7 core (SMT{n}) and one vcore of "
         f"{config.vcpus} vcpu{'s' if config.vcpus > 1 else ''}",
         size=_FS + 2, fontweight="bold")

    # ---- host partition ----------------------------------------------------------------
    hx, hy, hw, hh = 0.1, 2.8, 2.55, 2.2
    _box(ax, hx, hy, hw, hh, "#EDEDED")
    text(hx + 0.1, hy + hh - 0.18, "host partition", size=_FS + 1, fontweight="bold")
    text(hx + 0.1, hy + hh - 0.40, "Linux + HV KVM; one task per vcpu", size=_FS)
    for v, task in enumerate(state.tasks):
        y = hy + hh - 0.72 - 0.3 * v
        role = "  (runner)" if vc.runner == v else ""
        text(hx + 0.1, y, f"task of vcpu {v}{role}", size=_FS, fontweight="bold"
             if role else "normal")
        text(hx + 0.25, y - 0.14, task.loc, size=_FS - 0.5, family=_MONO, color="#333333")
    host_anchor = (hx + hw / 2, hy)

    # ---- guest partition: the vcore and its vcpus ------------------------------------
    gx, gy, gw, gh = 2.8, 2.8, 4.1, 2.2
    _box(ax, gx, gy, gw, gh, "#EAF1F8")
    text(gx + 0.1, gy + gh - 0.18, "guest partition", size=_FS + 1, fontweight="bold")
    eec = vc.entry_exit_count
    lines = [
        f"vcore_state = {_short_state(VCORE_STATE_NAMES, vc.vcore_state, '')}",
        f"entry_exit_count = {eec:#06x} (entry {entry_count(eec)}, exit {exit_count(eec)})",
        f"napping_threads = {vc.napping_threads:#0{n + 2}b}   in_guest = {vc.in_guest}",
        f"nap_count = {vc.nap_count}   n_woken = {vc.n_woken}",
    ]
    _box(ax, gx + 0.1, gy + 0.95, gw - 0.2, 1.0, "white", lw=0.6)
    text(gx + 0.2, gy + 1.8, "vcore (struct kvmppc_vcore)", size=_FS, fontweight="bold")
    for k, line in enumerate(lines):
        text(gx + 0.2, gy + 1.6 - 0.17 * k, line, size=_FS - 0.5, family=_MONO)
    nv = config.vcpus
    vw = (gw - 0.2 - 0.08 * (nv - 1)) / nv
    vcpu_anchor = {}
    for v, u in enumerate(state.vcpus):
        x = gx + 0.1 + v * (vw + 0.08)
        _box(ax, x, gy + 0.1, vw, 0.75, "white", ec=VCPU_COLOURS[v % 4], lw=1.6)
        text(x + 0.08, gy + 0.7, f"vcpu {v}", size=_FS, fontweight="bold")
        st = _short_state(VCPU_STATE_NAMES, u.state, "KVMPPC_VCPU_")
        text(x + 0.08, gy + 0.47, st if vw > 0.9 else st[:8], size=_FS - 1)
        text(x + 0.08, gy + 0.25, f"ceded {u.ceded}  ptid {u.ptid}", size=_FS - 1)
        vcpu_anchor[v] = (x + vw / 2, gy + 0.1)

    # ---- the core and its hardware threads -----------------------------------------------
    cx, cy, cw, ch = 0.1, 0.45, 6.8, 1.75
    _box(ax, cx, cy, cw, ch, "white", lw=1.2)
    text(cx + 0.1, cy + ch - 0.17, "POWER7 core: the threads share one partition context "
         "(LPID, SDR1, LPCR) and one HDEC", size=_FS, fontweight="bold",
         bbox={"fc": "white", "ec": "none", "pad": 1})
    tw = (cw - 0.2 - 0.1 * (n - 1)) / n
    used = set()
    for i, t in enumerate(state.threads):
        act = LOC_ACTIVITY.get(t.loc, "entry")
        used.add(act)
        x = cx + 0.1 + i * (tw + 0.1)
        # white body with the paca; the header band carries the activity colour
        _box(ax, x, cy + 0.1, tw, 1.25, "white", lw=0.8)
        _box(ax, x, cy + 1.05, tw, 0.3, _fill(act), lw=0.8,
             hatch="...." if act == "nap" else None)
        tc = _text_colour(act)
        label = f"thread {i}" + ("  (runner's)" if i == 0 else "")
        ax.text(x + 0.08, cy + 1.2, label, fontsize=_FS, fontweight="bold", color=tc,
                va="center", zorder=5, bbox=None if act != "nap" else
                {"fc": _fill(act), "ec": "none", "pad": 0.5})
        where = t.loc.replace(".", "\n.", 1) if len(t.loc) > 16 else t.loc
        text(x + 0.08, cy + 0.8, where, size=_FS - 1, family=_MONO, linespacing=1.0)
        text(x + 0.08, cy + 0.45, f"paca napping = {t.napping}", size=_FS - 1)
        text(x + 0.08, cy + 0.25, "paca vcpu = " + (str(t.vcpu) if t.vcpu >= 0 else "none"),
             size=_FS - 1)
        top = (x + tw / 2, cy + 1.35)
        in_host = act in ("host", "offline")
        target = host_anchor if in_host or t.vcpu < 0 else vcpu_anchor[t.vcpu]
        ax.annotate("", xy=target, xytext=top, zorder=2,
                    arrowprops={"arrowstyle": "-", "lw": 1.2, "ls": ":" if in_host else "-",
                                "color": "#777777" if in_host else VCPU_COLOURS[t.vcpu % 4],
                                "shrinkA": 0, "shrinkB": 0})
    order = ["guest", "cede", "nap", "entry", "exiting", "offline", "host"]
    handles = [Patch(fc=_fill(a), ec=_LINE, lw=0.6, hatch="...." if a == "nap" else None,
                     label=_ACTIVITY_TEXT[a]) for a in order if a in used]
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 0.0),
              ncol=min(len(handles), 4), fontsize=_FS - 0.5, frameon=False,
              handlelength=1.2, columnspacing=1.0)
    return fig


# =============================================================================================
# A thread's path through real mode
# =============================================================================================

#: Configuration whose reachable states :func:`path_edges` enumerates by default: two
#: vcpus on an SMT2 core, the explorer's default workload (compute, idle with a timer,
#: MMIO; the other vcpu idles), one DEC expiry and one remote H_PROD (which reaches the
#: prodded-case branch) -- about 40,000 states, every location of the POWER7 path.
PATH_CONFIG = {"threads_per_core": 2, "vcpus": 2}
PATH_BUDGET = (0, 1, 1, 0, 0)  # interrupts, DEC expiries, remote H_PRODs, host ticks, signals


@lru_cache(maxsize=8)
def path_edges(config: Config | None = None,
               budget: tuple[int, int, int, int, int] = PATH_BUDGET
               ) -> frozenset[tuple[str, str, str]]:
    """Every ``(loc_before, step, loc_after)`` by which a hardware thread changes location,
    found by a breadth-first search of the states reachable from ``config`` (default
    :data:`PATH_CONFIG`) with the explorer's default workload and ``budget``.

    ``step`` is the name of the model's step that moved the thread: its own (a
    :data:`~kvmcede.realmode.STEP_NAME`, a guest step such as ``H_CEDE``), or the host
    task's that took thread 0 into the guest."""
    from .explorer import default_workload

    config = Config(**PATH_CONFIG) if config is None else config
    m = Model(config, default_workload(config))
    s0 = m.initial(budget)
    seen = {s0}
    queue = deque([s0])
    edges: set[tuple[str, str, str]] = set()
    while queue:
        s = queue.popleft()
        for st in m.enabled(s):
            nxt, _ = m.apply(s, st)
            for a, b in zip(s.threads, nxt.threads, strict=True):
                if a.loc != b.loc:
                    edges.add((a.loc, st.name, b.loc))
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return frozenset(edges)


def path_locations(edges: Iterable[tuple[str, str, str]] | None = None) -> set[str]:
    """The locations of :func:`path_edges` (or of ``edges``)."""
    edges = path_edges() if edges is None else edges
    return {loc for a, _, b in edges for loc in (a, b)}


#: Hand-tuned position (column, row; row 0 at the top) of each known location.  A
#: location the model reaches that is not here is drawn in an extra row at the bottom
#: (and the test suite fails until it gets a place).
PATH_LAYOUT: dict[str, tuple[float, float]] = {
    "guest": (1.5, 0),
    "kvmppc_cede_reentry": (1.5, 1.4),
    "kvmppc_h_cede.sync_prodded": (0, 1.4),
    "kvmppc_h_cede.napping_threads": (0, 2.4),
    "kvmppc_h_cede.recheck": (0, 3.4),
    "kvmppc_h_cede.nap": (0, 4.4),
    "nap": (0, 5.6),
    "kvm_end_cede.clear": (1, 3.4),
    "kvm_end_cede.check": (1, 5.6),
    "kvmppc_hv_entry": (2, 3.4),
    "secondary_too_late": (2.5, 5.6),
    "secondary_nap": (2, 6.8),
    "hdec_soon": (3, 1.4),
    "hdec_soon.poke": (3, 2.4),
    "hdec_soon.wait_in_guest": (3, 3.4),
    "hdec_soon.wait_exits": (3, 4.5),
    "host": (3, 6.8),
}

#: Named paths for ``thread_path(highlight=...)``: a sequence of locations.
PATHS: dict[str, tuple[str, ...]] = {
    # an idle vcpu naps in the guest and is woken by an interrupt (chapters 4 and 5)
    "cede": ("guest", "kvmppc_h_cede.sync_prodded", "kvmppc_h_cede.napping_threads",
             "kvmppc_h_cede.recheck", "kvmppc_h_cede.nap", "nap", "kvm_end_cede.check",
             "kvmppc_cede_reentry", "guest"),
    # the last thread awake takes the core to the host (chapter 4, S4)
    "last": ("guest", "kvmppc_h_cede.sync_prodded", "kvmppc_h_cede.napping_threads",
             "hdec_soon", "hdec_soon.poke", "hdec_soon.wait_exits", "host"),
    # a napping secondary woken by the first exiter's IPI joins the exit (chapter 6)
    "woken_to_exit": ("nap", "kvm_end_cede.check", "hdec_soon", "hdec_soon.wait_in_guest",
                      "secondary_nap"),
    # a secondary started by the host enters the guest (chapter 1)
    "entry": ("secondary_nap", "kvmppc_hv_entry", "kvmppc_cede_reentry", "guest"),
}

_COL_W, _ROW_H = 1.6, 0.62  # inches per column / row
_NODE_W, _NODE_H = 1.45, 0.42


def _node_label(loc: str) -> tuple[str, str]:
    """(title, subtitle): a dotted location shows the part after its routine (the
    routine's name is on the group box); the subtitle names the step taken there."""
    base, _, part = loc.partition(".")
    title = "." + part if part else loc
    step = STEP_NAME.get(loc, "")
    step = step.split(": ", 1)[1] if step.startswith(base + ": ") else step
    sub = "" if step in ("", loc, base) else (step if part else "then " + step)
    return title, sub


def _short_step(name: str) -> str:
    return {"H_CEDE": "sc 1: H_CEDE", "kvmppc_interrupt": "kvmppc_interrupt (HDEC, IPI)",
            "mmio_access": "HDSI (MMIO)"}.get(name, name)


def _quad(p, q, rad):
    """Control point of matplotlib's ``arc3`` connection between p and q (equal axes)."""
    (x1, y1), (x2, y2) = p, q
    return ((x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1))


def _hits(p, q, rad, boxes, skip) -> bool:
    c = _quad(p, q, rad)
    for k in range(1, 20):
        t = k / 20
        x = (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * c[0] + t * t * q[0]
        y = (1 - t) ** 2 * p[1] + 2 * (1 - t) * t * c[1] + t * t * q[1]
        for name, (bx, by, bw, bh) in boxes.items():
            if name not in skip and bx - 0.03 <= x <= bx + bw + 0.03 and \
                    by - 0.03 <= y <= by + bh + 0.03:
                return True
    return False


def _highlight_pairs(highlight: str | Sequence[str] | None,
                     pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    if highlight is None:
        return set()
    locs = PATHS.get(highlight) if isinstance(highlight, str) else tuple(highlight)
    if locs is None:
        raise ValueError(f"highlight: got {highlight!r}; allowed: None, one of "
                         f"{', '.join(PATHS)}, or a sequence of locations")
    out = set(pairwise(locs))
    missing = out - pairs
    if missing:
        raise ValueError(f"highlight: the model never moves a thread "
                         f"{', '.join(f'{a} -> {b}' for a, b in sorted(missing))}")
    return out


def thread_path(highlight: str | Sequence[str] | None = None, *,
                edges: Iterable[tuple[str, str, str]] | None = None,
                title: str | None = None) -> Figure:
    """The path of one hardware thread through the real-mode code: every location
    (``Thread.loc``) the model reaches and the steps between them (:func:`path_edges`,
    or ``edges``), coloured as in the timelines; boxes group the locations inside one
    routine (``kvmppc_h_cede``, ``kvm_end_cede``, ``hdec_soon``).

    ``highlight``: a name in :data:`PATHS` (``"cede"``, ``"last"``, ``"woken_to_exit"``,
    ``"entry"``) or a sequence of locations; each consecutive pair must be an edge.
    The figure's ``kvmcede_path`` attribute holds the drawn locations and edges.
    """
    edges = path_edges() if edges is None else frozenset(edges)
    locs = path_locations(edges)
    # merge the steps between the same two locations into one arrow
    steps: dict[tuple[str, str], list[str]] = {}
    for a, name, b in sorted(edges):
        steps.setdefault((a, b), []).append(name)
    hl = _highlight_pairs(highlight, set(steps))

    known = [loc for loc in PATH_LAYOUT if loc in locs]
    unknown = sorted(locs - set(PATH_LAYOUT))
    pos = {loc: PATH_LAYOUT[loc] for loc in known}
    last_row = max((r for _, r in pos.values()), default=0)
    for k, loc in enumerate(unknown):  # fallback: extra rows at the bottom, 4 a row
        pos[loc] = (k % 4, last_row + 1.2 + k // 4)
    rows = max(r for _, r in pos.values()) + 1
    W = 7.0
    H = 0.75 + rows * _ROW_H + 0.55
    fig, ax = _canvas(W, H)
    ax.set_aspect("equal")
    x0, y_top = 0.35 + _NODE_W / 2, H - 0.75 - _NODE_H / 2

    def centre(loc):
        c, r = pos[loc]
        return (x0 + c * _COL_W, y_top - r * _ROW_H)

    boxes = {}
    for loc in pos:
        x, y = centre(loc)
        boxes[loc] = (x - _NODE_W / 2, y - _NODE_H / 2, _NODE_W, _NODE_H)

    ax.text(0.1, H - 0.2, title or "The path of one hardware thread (every location the "
            "model reaches)", fontsize=_FS + 2, fontweight="bold", va="center")
    # group boxes: the locations inside one routine
    groups: dict[str, list[str]] = {}
    for loc in pos:
        base, dot, _ = loc.partition(".")
        if dot or any(other.startswith(loc + ".") for other in pos):
            groups.setdefault(base, []).append(loc)
    for base, members in groups.items():
        xs = [boxes[m][0] for m in members]
        ys = [boxes[m][1] for m in members]
        gx, gy = min(xs) - 0.05, min(ys) - 0.05
        gw = max(xs) + _NODE_W + 0.05 - gx
        gh = max(ys) + _NODE_H + 0.05 - gy
        _box(ax, gx, gy, gw, gh + 0.2, "none", ec="#888888", lw=0.8, ls="--", z=0.5)
        ax.text(gx + 0.05, gy + gh + 0.1, base, fontsize=_FS - 0.5, family=_MONO,
                fontweight="bold", va="center", color="#555555")

    patches = {}
    used = set()
    for loc, (bx, by, bw, bh) in boxes.items():
        act = LOC_ACTIVITY.get(loc, "entry")
        used.add(act)
        on = any(loc in pair for pair in hl)
        p = FancyBboxPatch((bx, by), bw, bh, boxstyle="round,pad=0,rounding_size=0.06",
                           fc=_fill(act), ec=_HIGHLIGHT if on else _LINE, lw=2.4 if on else 0.8,
                           hatch="...." if act == "nap" else None, zorder=3)
        p.set_gid(f"loc:{loc}")
        ax.add_patch(p)
        patches[loc] = p
        title_, sub = _node_label(loc)
        tc = _text_colour(act)
        cx_, cy_ = bx + bw / 2, by + bh / 2
        ax.text(cx_, cy_ + (0.08 if sub else 0), title_, fontsize=_FS, family=_MONO,
                ha="center", va="center", color=tc, zorder=5,
                fontweight="bold" if on else "normal")
        if sub:
            ax.text(cx_, cy_ - 0.11, sub, fontsize=_FS - 1.5, ha="center", va="center",
                    color=tc, zorder=5)

    drawn = []
    max_col = max(c for c, _ in pos.values())
    for (a, b), names in sorted(steps.items()):
        p, q = centre(a), centre(b)
        ends = {"patchA": patches[a], "patchB": patches[b]}
        rad = next((r for r in (0.0, 0.2, -0.2, 0.35, -0.35, 0.5, -0.5)
                    if not _hits(p, q, r, boxes, {a, b})), None)
        if rad is None and abs(p[0] - q[0]) < 1e-9:
            # past the boxes between them in one column: leave and arrive at the side
            # (the left one in the left half of the picture), bulging outwards
            left = pos[a][0] < max_col / 2
            side = -_NODE_W / 2 if left else _NODE_W / 2
            p, q = (p[0] + side, p[1]), (q[0] + side, q[1])
            rad = 0.25 if (q[1] < p[1]) == left else -0.25
            ends = {"shrinkA": 1, "shrinkB": 1}
        elif rad is None:
            rad = 0.3
        on = (a, b) in hl
        arrow = FancyArrowPatch(p, q, **ends,
                                connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                mutation_scale=11, lw=2.2 if on else 0.9,
                                color=_HIGHLIGHT if on else "#555555", zorder=4 if on else 2)
        arrow.set_gid(f"edge:{a}->{b}")
        ax.add_patch(arrow)
        drawn.append((a, b, tuple(names)))
        if a in ("guest", "host"):  # steps not named on their source box: label the arrow
            c = _quad(p, q, rad)
            u = 0.4  # a little nearer the source than the middle
            mx = (1 - u) ** 2 * p[0] + 2 * (1 - u) * u * c[0] + u * u * q[0]
            my = (1 - u) ** 2 * p[1] + 2 * (1 - u) * u * c[1] + u * u * q[1]
            label = _short_step(names[0]) if a == "guest" else "runner starts the vcore"
            if a == "guest" and len(names) > 1:
                label = " / ".join(_short_step(n) for n in names)
            ax.text(mx, my, label, fontsize=_FS - 1.5, ha="center", va="center", zorder=6,
                    color="#222222", bbox={"fc": "white", "ec": "none", "pad": 0.5,
                                           "alpha": 0.9})

    order = ["guest", "cede", "nap", "entry", "exiting", "offline", "host"]
    handles = [Patch(fc=_fill(a), ec=_LINE, lw=0.6, hatch="...." if a == "nap" else None,
                     label=_ACTIVITY_TEXT[a]) for a in order if a in used]
    if hl:
        handles.append(Patch(fc="white", ec=_HIGHLIGHT, lw=2.2,
                             label=f"path: {highlight}" if isinstance(highlight, str)
                             else "highlighted path"))
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 0.0),
              ncol=4, fontsize=_FS - 0.5, frameon=False, handlelength=1.2,
              columnspacing=0.9)
    fig.kvmcede_path = {"locations": sorted(pos), "edges": drawn,
                        "unplaced": unknown}
    return fig


# =============================================================================================
# The exit protocol as a sequence chart
# =============================================================================================

_ARROW_KIND_COLOURS = {
    "hdec_poke": "#CC3311",  # Tol vibrant red
    "ipi": "#EE7733",  # orange
    "exit_count": "#0077BB",  # blue
    "in_guest": "#009988",  # teal
    "nap_count": "#33BBEE",  # cyan
    "host": "#555555",
}
_ARROW_KIND_TEXT = {
    "hdec_poke": "HDEC poke: guest threads take an HDEC interrupt",
    "ipi": "IPI to a thread in napping_threads",
    "exit_count": "exit count + 1 (entry_exit_count += 0x100)",
    "in_guest": "in_guest = 0 (partition back to the host)",
    "nap_count": "nap_count + 1 (secondary offline)",
    "host": "runner sees nap_count = n_woken: core is out",
}


def _exit_window(trace: Trace, start: float | None, end: float | None) -> tuple[float, float]:
    ev = trace.kernel_events()
    if start is None:
        first = next((e for e in ev if e.kind == "hdec_soon"), None)
        if first is None:
            raise ValueError("trace: no exit (hdec_soon) in the trace; pass start and end")
        start = trace.us(first.time) - 0.3
    if end is None:
        after = [e for e in ev if trace.us(e.time) >= start]
        run_core = next((e for e in after if e.kind == "kvmppc_run_core"), None)
        naps = [e for e in after if e.kind == "secondary_nap"
                and (run_core is None or e.time <= run_core.time)]
        stop = run_core or (naps[-1] if naps else after[-1])
        end = trace.us(stop.time) + 0.4
    if not end > start:
        raise ValueError(f"end: got {end}; allowed: a time after start ({start} µs)")
    return float(start), float(end)


def exit_sequence(trace: Trace, start: float | None = None, end: float | None = None, *,
                  title: str | None = None) -> Figure:
    """The exit protocol of one whole-core exit as a sequence chart: a lifeline per
    hardware thread, one for the vcore's shared words and one for the host, time in µs
    downwards (``start``..``end``; default: from the first ``hdec_soon`` to the host's
    ``kvmppc_run_core``).

    Arrows: the first exiter's HDEC poke (to every thread that takes the HDEC
    interrupt), its IPIs to napping threads (to the wake-up of the thread they woke),
    each exit-count increment and ``nap_count`` increment (thread to vcore), the
    primary's ``in_guest = 0``, and the runner's return to the host.  Thick lifeline
    segments show the waits: a secondary waiting for ``in_guest == 0``, the primary
    waiting for every entered thread to exit.  ``fig.kvmcede_arrows`` lists the arrows
    as ``(kind, from, to, time_us)``.
    """
    from .trace import Trace

    if not isinstance(trace, Trace):
        raise ValueError(f"trace: got {type(trace).__name__}; allowed: a Trace")
    t0, t1 = _exit_window(trace, start, end)
    n = trace.config.threads_per_core
    ev = [e for e in trace.kernel_events() if t0 <= trace.us(e.time) <= t1]
    us = trace.us
    lanes = [f"thread {i}" for i in range(n)] + ["vcore", "host"]
    VC, HOST = n, n + 1
    W = 7.0
    span = t1 - t0
    H = min(9.0, max(4.8, 1.6 + span * 0.42))
    fig = _new_figure((W, H))
    ax = fig.add_axes((0.1, 0.17, 0.88, 0.83 - 0.55 / H))
    ax.set_xlim(-0.6, len(lanes) - 0.4)
    ax.set_ylim(t1, t0)
    ax.set_ylabel("time (µs)", fontsize=_FS + 0.5)
    ax.tick_params(labelsize=_FS)
    ax.set_xticks(range(len(lanes)), lanes, fontsize=_FS)
    ax.xaxis.tick_top()
    for side in ("right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title or f"{trace.config.threads_per_core} threads leave the guest together",
                 fontsize=_FS + 2, fontweight="bold", loc="left", pad=22)
    for k in range(len(lanes)):
        ax.plot([k, k], [t0, t1], color="#BBBBBB", lw=1.0, zorder=1)

    arrows: list[tuple[str, int, int, float]] = []
    labels_at: dict[int, list[float]] = {}

    def arrow(kind: str, a: int, ta: float, b: int, tb: float) -> None:
        p = FancyArrowPatch((a, ta), (b, tb), arrowstyle="-|>", mutation_scale=10,
                            lw=1.3, color=_ARROW_KIND_COLOURS[kind], zorder=4,
                            shrinkA=2, shrinkB=2)
        p.set_gid(kind)
        ax.add_patch(p)
        arrows.append((kind, a, b, round(ta, 3)))

    def note(lane: int, t: float, s: str) -> None:
        # labels just below their event, beside the lifeline (left of the last one),
        # pushed down so that they do not overlap
        gap = span / (H * 7.0)
        prev = labels_at.setdefault(lane, [])
        y = max([t + gap * 0.15] + [p + gap for p in prev])
        prev.append(y)
        last = lane == len(lanes) - 1
        ax.text(lane + (-0.07 if last else 0.07), y, s, fontsize=_FS - 1.5, va="top",
                ha="right" if last else "left", zorder=6, color="#222222",
                bbox={"fc": "white", "ec": "none", "pad": 0.3, "alpha": 0.85})

    # the waits on the exit path, from the states: hdec_soon.wait_* until it moves on
    start_wait: dict[int, float] = {}
    for time, _step, s in trace.states():
        tu = us(time)
        if tu > t1:
            break
        for i, t in enumerate(s.threads):
            if t.loc in ("hdec_soon.wait_in_guest", "hdec_soon.wait_exits"):
                start_wait.setdefault(i, max(tu, t0))
            elif i in start_wait:
                a = start_wait.pop(i)
                if tu >= t0:
                    ax.plot([i, i], [a, tu], lw=5, color="#DDDDDD", zorder=2,
                            solid_capstyle="butt")
    for i, a in start_wait.items():
        ax.plot([i, i], [a, t1], lw=5, color="#DDDDDD", zorder=2, solid_capstyle="butt")

    poke_from = None
    for e in ev:
        t, i, kind, d = us(e.time), e.thread, e.kind, e.detail
        if kind == "exit":
            ax.plot([i], [t], marker="*", ms=9, color="#CC3311", zorder=5)
            note(i, t, f"exit: {d}")
        elif kind == "hdec_poke":
            poke_from = (i, t)
            note(i, t, "HDEC = 0")
        elif kind == "kvmppc_interrupt" and "HDEC" in d and poke_from is not None:
            arrow("hdec_poke", poke_from[0], poke_from[1], i, t)
            note(i, t, "HDEC interrupt")
        elif kind == "ipi" and e.vcpu >= 0 and "napping thread" in d:
            target = int(d.rsplit(" ", 1)[1])
            # ends where the IPI wakes the napper (kvm_start_guest), if it does before the
            # thread's own exit; a thread that did not nap after all (its re-check saw the
            # exit) just has the IPI presented, after the cost model's IPI latency
            later = [w for w in ev if w.thread == target and w.time >= e.time
                     and w.kind in ("kvm_start_guest", "hdec_soon")]
            woke = later[0] if later and later[0].kind == "kvm_start_guest" else None
            if woke:
                arrow("ipi", i, t, target, us(woke.time))
                note(target, us(woke.time), "woken by the IPI")
            else:
                arrival = t + us(trace.config.costs.ipi_latency)
                arrow("ipi", i, t, target, arrival)
                note(target, arrival, "IPI arrives: not napping")
        elif kind == "hdec_soon" and "exit count" in d:
            arrow("exit_count", i, t, VC, t)
            note(VC, t, d.replace(" (first exiter)", ", first"))
        elif kind == "hcall_real_fallback":
            note(i, t, "joins the exit")
        elif kind == "switch_to_host":
            arrow("in_guest", i, t, VC, t)
            note(VC, t, "in_guest = 0")
        elif kind == "secondary_nap":
            arrow("nap_count", i, t, VC, t)
            note(VC, t, d.split(";")[0])
        elif kind == "secondary_too_late":
            note(i, t, "too late: back to nap")
        elif e.thread < 0 and kind == "kvmppc_run_core" and "nap_count" in d:
            arrow("host", VC, t, HOST, t)  # the runner reads nap_count: the core is out
            note(HOST, t, "kvmppc_run_core")
    kinds = [k for k in _ARROW_KIND_COLOURS if any(a[0] == k for a in arrows)]
    handles = [Patch(fc=_ARROW_KIND_COLOURS[k], label=_ARROW_KIND_TEXT[k]) for k in kinds]
    handles.append(Patch(fc="#DDDDDD", label="waiting on the exit path"))
    fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.01, 0.0), ncol=2,
               fontsize=_FS - 0.5, frameon=False, handlelength=1.2, columnspacing=1.0)
    fig.kvmcede_arrows = arrows
    return fig
