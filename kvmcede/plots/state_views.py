"""The state view: one instant of the machine, laid out like the kernel's structures."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from ..sim import thread_activity, vcpu_activity
from ..state import (
    BOOK3S_IRQPRIO_DECREMENTER,
    BOOK3S_IRQPRIO_EXTERNAL,
    BOOK3S_IRQPRIO_EXTERNAL_LEVEL,
    VCORE_STATE_NAMES,
    VCPU_STATE_NAMES,
    Dec,
    Machine,
    entry_count,
    exit_count,
)
from .render import (
    _boxes,
    _displayable,
    _draw_texts,
    _new_figure,
    _tenths,
)
from .style import (
    _MONO,
    ACTIVITY_COLOURS,
    _span_colour,
)

if TYPE_CHECKING:
    from ..config import Config
    from ..guest import Workload

# =============================================================================================
# State view
# =============================================================================================

_PRIO_NAMES = ((BOOK3S_IRQPRIO_EXTERNAL, "EXTERNAL"), (BOOK3S_IRQPRIO_DECREMENTER, "DEC"),
               (BOOK3S_IRQPRIO_EXTERNAL_LEVEL, "EXT_LEVEL"))


def pending_names(bits: int) -> str:
    """``pending_exceptions`` as BOOK3S_IRQPRIO_* names ("—" when empty)."""
    names = [n for b, n in _PRIO_NAMES if bits >> b & 1]
    return " ".join(names) if names else "—"


def _state_tables(s: Machine, config: Config, workload: Workload | None):
    """The text of every cell of the state view, as (section -> rows)."""
    us = config.us
    threads = []
    for i, t in enumerate(s.threads):
        act = thread_activity(s, i)
        threads.append((act, t.vcpu, [
            f"{i}" + (" (primary)" if i == 0 else ""), t.loc, str(t.napping),
            "—" if t.vcpu < 0 else str(t.vcpu),
            "IPI" if t.ipi else "—"]))
    vc = s.vcore
    vcpus = []
    for v, u in enumerate(s.vcpus):
        dec = Dec(u.dec).name
        if u.dec == Dec.ARMED and u.dec_expires:
            dec += f" @{us(u.dec_expires):.1f}µs"
        if workload is not None:
            op = workload.op(v, u.pc)
            where = f"{u.pc}: {type(op).__name__}"
        else:
            where = f"op {u.pc}"
        if u.guest:
            where += f" (in {'H_CEDE' if u.guest == 'cede' else u.guest})"
        task = s.tasks[v]
        tloc = task.loc + (" +woken" if task.woken else "") + (" +signal" if task.signal
                                                               else "")
        vcpus.append((vcpu_activity(s, v), [
            str(v), VCPU_STATE_NAMES[u.state].removeprefix("KVMPPC_VCPU_"), str(u.ceded),
            str(u.prodded), str(u.ptid), pending_names(u.pending_exceptions),
            "1" if u.msr_ee else "0", dec, "armed" if u.timer_running else "—", where,
            tloc]))
    return threads, vc, vcpus


# The layout is in tenths of an inch (1 unit = 7.2 pt) and 70 units wide: the book's
# content width (~700 px at 100 dpi), so that every label keeps its size (9 pt or more)
# there.  Columns: (header, width, index into _state_tables' cells, monospaced).
_FONT = 9.0
_WIDTH = 70.0
_THREAD_COLS = (("thread", 10.5, 0, False), ("where (kernel label)", 24.0, 1, True),
                ("napping", 7.5, 2, False), ("vcpu", 5.5, 3, False), ("XICS", 6.0, 4, False))
#: vcpu->arch in two tables, so that each fits the width.
_VCPU_COLS = (("vcpu", 6.0, 0, False), ("state", 10.5, 1, True), ("ceded", 6.5, 2, False),
              ("prodded", 8.0, 3, False), ("ptid", 5.5, 4, False),
              ("pending_exceptions", 15.0, 5, True), ("MSR[EE]", 8.0, 6, False),
              ("dec_timer", 8.5, 8, False))
_VCPU_COLS_2 = (("vcpu", 6.0, 0, False), ("DEC", 13.5, 7, True),
                ("guest program", 17.0, 9, True), ("host task (book3s_hv.c)", 29.0, 10, True))
_CHANGED = "#FFE58F"


def state_view(state: Machine, config: Config, title: str | None = None, *,
               previous: Machine | None = None, workload: Workload | None = None,
               fig: Figure | None = None) -> Figure:
    """One instant of the machine, laid out like the kernel's data structures.

    From the top: every hardware thread (its paca ``napping`` flag, where it is (kernel
    label), its vcpu and a pending XICS IPI; the colour chip is the timeline colour of
    what it is doing); the vcore: ``vcore_state``, ``entry_exit_count`` as entry/exit
    counts, ``napping_threads`` as one box per ptid, ``nap_count``/``n_woken``,
    ``in_guest``, the runnable list; then every vcpu (``vcpu->arch``: state, ceded,
    prodded, ptid, pending interrupts, MSR[EE], the DEC hrtimer; then DEC, where its
    guest program is and its host task's location).  With ``previous`` (the state before
    the step), every value that changed is highlighted.  The figure is 7 inches wide
    (the book's width) with 9 pt text.
    """
    if len(state.threads) != config.threads_per_core or len(state.vcpus) != config.vcpus:
        raise ValueError(f"state must have config.threads_per_core "
                         f"({config.threads_per_core}) threads and config.vcpus "
                         f"({config.vcpus}) vcpus, got {len(state.threads)} and "
                         f"{len(state.vcpus)}")
    threads, vc, vcpus = _state_tables(state, config, workload)
    old = _state_tables(previous, config, workload) if previous is not None else None
    n_t, n_v = len(threads), len(vcpus)
    row_h = 2.9
    head = 3.0  # a section's heading
    foot = _footer(state)
    foot_lines = [ln for part in foot.split("   |   ") if part
                  for ln in textwrap.wrap(part, 88, subsequent_indent="   ")]
    height_units = ((3.4 if title else 0.8) + head + (n_t + 1) * row_h + 1.2
                    + head + 7 * row_h + 1.2 + 2 * (head + (n_v + 1) * row_h + 1.0)
                    + (len(foot_lines) * 2.4 + 0.8 if foot_lines else 0.4))
    width_units = _WIDTH
    if fig is None:
        fig = _new_figure((width_units / 10, height_units / 10))
    else:  # the layout is in tenths of an inch: the figure gets the size it needs
        fig.set_size_inches(width_units / 10, height_units / 10)
    target = (fig, _tenths(fig, height_units))
    boxes: list[tuple] = []
    texts: list[tuple] = []

    def box(x, y, w, hh, fc, ec="#BBBBBB") -> None:
        boxes.append((x, y, w, hh, fc, ec))

    def heading(y: float, s: str) -> None:
        texts.append((x0, y + 1.4, s, {"fontsize": 10, "fontweight": "bold",
                                       "va": "center"}))

    x0 = 0.6
    y = 0.8
    if title:
        texts.append((x0, 1.8, title, {"fontsize": 11, "fontweight": "bold",
                                        "va": "center"}))
        y = 3.4
    # ---- threads table
    heading(y, "Hardware threads (paca kvm_hstate)")
    yy = y + head
    _header(texts, box, x0, yy, _THREAD_COLS, row_h)
    yy += row_h
    for r, (act, v, cells) in enumerate(threads):
        before = old[0][r][2] if old is not None else None
        _row(texts, box, x0, yy, _THREAD_COLS, cells, before, row_h,
             chip=_span_colour((act, v)))
        yy += row_h
    # ---- vcore panel
    yy += 1.2
    heading(yy, "vcore (struct kvmppc_vcore)")
    yy += head
    _vcore_panel(texts, box, x0, yy, vc, old[1] if old is not None else None, row_h,
                 config.threads_per_core)
    yy += 7 * row_h + 1.2
    # ---- vcpus: two tables
    for cols, what in ((_VCPU_COLS, "vcpus (vcpu->arch)"),
                       (_VCPU_COLS_2, "vcpus: DEC, guest program, host task")):
        heading(yy, what)
        yy += head
        _header(texts, box, x0, yy, cols, row_h)
        yy += row_h
        for r, (act, cells) in enumerate(vcpus):
            before = old[2][r][1] if old is not None else None
            _row(texts, box, x0, yy, cols, cells, before, row_h, chip=_span_colour((act, r)))
            yy += row_h
        yy += 1.0
    if foot_lines:
        if previous is not None and _footer(previous) != foot:
            box(x0, yy, width_units - 2 * x0, len(foot_lines) * 2.4 + 0.4, _CHANGED,
                _CHANGED)
        for ln in foot_lines:
            texts.append((x0 + 0.4, yy + 1.4, ln, {"fontsize": _FONT, "va": "center",
                                                  "family": _MONO, "color": "#333333"}))
            yy += 2.4
    _boxes(target, boxes)
    _draw_texts(target, texts)
    _displayable(fig)
    return fig


def _header(texts, box, x0, y, cols, row_h) -> None:
    x = x0
    for name, w, _i, _mono in cols:
        box(x, y, w, row_h, "#E8ECF2")
        texts.append((x + 0.5, y + row_h / 2, name, {"fontsize": _FONT, "va": "center",
                                                      "fontweight": "bold"}))
        x += w


def _row(texts, box, x0, y, cols, cells, before, row_h, chip=None) -> None:
    x = x0
    for c, (_name, w, i, mono) in enumerate(cols):
        s = cells[i]
        changed = before is not None and before[i] != s
        box(x, y, w, row_h, _CHANGED if changed else "white")
        kw = {"fontsize": _FONT, "va": "center"}
        if mono:
            kw["family"] = _MONO
        if changed:
            kw["fontweight"] = "bold"
        tx = x + 0.5
        if c == 0 and chip is not None:
            box(x + 0.4, y + 0.6, 1.6, row_h - 1.2, chip, "#555555")
            tx = x + 2.4
        texts.append((tx, y + row_h / 2, s, kw))
        x += w


_VCORE_NAME_W = 17.0
_VCORE_W = 57.0


def _vcore_panel(texts, box, x0, y, vc, old_vc, row_h, n_thr) -> None:
    eec = vc.entry_exit_count
    lines = [
        ("vcore_state", VCORE_STATE_NAMES.get(vc.vcore_state, str(vc.vcore_state))),
        ("entry_exit_count", f"{eec:#06x}"),
        ("napping_threads", f"{vc.napping_threads:#06b}"),
        ("nap_count / n_woken", f"{vc.nap_count} / {vc.n_woken}"),
        ("in_guest", str(vc.in_guest)),
        ("runnable_threads", "[" + ", ".join(map(str, vc.runnable)) + "]"
         + f"   n_busy {vc.n_busy}"),
        ("runner / vc->wq", ("—" if vc.runner < 0 else f"vcpu {vc.runner}") + " / "
         + ("[" + ", ".join(map(str, vc.wq)) + "]" if vc.wq else "empty")),
    ]
    old_lines = None
    if old_vc is not None:
        old_lines = _vcore_values(old_vc)
    yy = y
    xv = x0 + _VCORE_NAME_W  # the value column
    for k, (name, val) in enumerate(lines):
        changed = old_lines is not None and old_lines[k] != _vcore_values(vc)[k]
        box(x0, yy, _VCORE_NAME_W, row_h, "#E8ECF2")
        texts.append((x0 + 0.5, yy + row_h / 2, name, {"fontsize": _FONT, "va": "center",
                                                        "fontweight": "bold"}))
        box(xv, yy, _VCORE_W - _VCORE_NAME_W, row_h, _CHANGED if changed else "white")
        kw = {"fontsize": _FONT, "va": "center", "family": _MONO}
        if changed:
            kw["fontweight"] = "bold"
        if name == "entry_exit_count":
            texts.append((xv + 0.6, yy + row_h / 2, val, kw))
            for j, (lab, n) in enumerate((("entry", entry_count(eec)),
                                          ("exit", exit_count(eec)))):
                bx = xv + 7.5 + j * 9.0
                box(bx, yy + 0.3, 8.5, row_h - 0.6, "#F3F3F3", "#888888")
                texts.append((bx + 4.25, yy + row_h / 2, f"{lab} {n}",
                              {"fontsize": _FONT, "va": "center", "ha": "center"}))
        elif name == "napping_threads":
            for p in range(n_thr):
                bx = xv + 0.5 + p * 3.4
                on = vc.napping_threads >> p & 1
                box(bx, yy + 0.3, 3.0, row_h - 0.6, ACTIVITY_COLOURS["nap"] if on
                    else "white", "#555555")
                texts.append((bx + 1.5, yy + row_h / 2, str(p),
                              {"fontsize": _FONT, "va": "center", "ha": "center",
                               "fontweight": "bold" if on else "normal"}))
            texts.append((xv + 1.0 + n_thr * 3.4, yy + row_h / 2, val, kw))
        else:
            texts.append((xv + 0.6, yy + row_h / 2, val, kw))
        yy += row_h


def _vcore_values(vc) -> tuple:
    return (vc.vcore_state, vc.entry_exit_count, vc.napping_threads,
            (vc.nap_count, vc.n_woken), vc.in_guest, (vc.runnable, vc.n_busy),
            (vc.runner, vc.wq))


def _footer(s: Machine) -> str:
    parts = []
    if s.stores:
        parts.append("store buffers: " + "; ".join(
            f"{'remote H_PROD' if st.writer == 99 else f'thread {st.writer}'}: "
            f"vcpu{st.vcpu}.{st.field} = {st.value}" for st in s.stores))
    if s.prodder[0]:
        parts.append(f"remote H_PROD of vcpu {s.prodder[1]}: at {s.prodder[0]}")
    if any(s.budget):
        names = ("interrupts", "DEC expiries", "remote prods", "host ticks", "signals")
        parts.append("environment budget left: " + ", ".join(
            f"{n} {b}" for n, b in zip(names, s.budget, strict=False) if b))
    return "   |   ".join(parts)
