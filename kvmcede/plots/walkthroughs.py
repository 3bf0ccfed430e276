"""The chapters' walk-throughs: nap save/restore (ch03), interrupt delivery on
re-entry (ch05), the race between a cede and an exit (ch06)."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from ..config import is_finite
from ..config import show as _v
from ..state import (
    BOOK3S_IRQPRIO_DECREMENTER,
    BOOK3S_IRQPRIO_EXTERNAL,
    BOOK3S_IRQPRIO_EXTERNAL_LEVEL,
)
from .registers import (
    registers_view,
)
from .render import (
    _boxes,
    _displayable,
    _draw_texts,
    _new_figure,
    _tenths,
    _text_width,
)
from .state_views import (
    pending_names,
)
from .style import (
    _MONO,
    VECTOR_COLOURS,
    _check_bool,
    _ellipsize,
)

if TYPE_CHECKING:
    from ..trace import Trace

# =============================================================================================
# The three walk-throughs the chapters' widgets drive: nap save/restore (ch03), the race
# between a cede and an exit (ch06), interrupt delivery on re-entry (ch05).  Each runs the
# model (a small simulation, or the real step functions on a state from one), never a table
# of outcomes, so the pictures cannot drift from the code.
# =============================================================================================


def _sheet(fig: Any, W: float, H: float) -> tuple:
    """A text-and-boxes figure ``W`` x ``H`` tenths of an inch (a new one, or ``fig``
    resized): ``(fig, target, texts, boxes, text)``, where ``text(x, y, s, **kw)`` queues
    a 9 pt text (unless ``fontsize`` says otherwise) and ``boxes`` takes rectangles."""
    if fig is None:
        fig = _new_figure((W / 10, H / 10))
    else:
        fig.set_size_inches(W / 10, H / 10)
    texts: list[tuple[float, float, str, dict]] = []
    boxes: list[tuple] = []

    def text(x: float, y: float, s: str, **kw: Any) -> None:
        texts.append((x, y, s, {"fontsize": 9, **kw}))

    return fig, (fig, _tenths(fig, H)), texts, boxes, text

def _nap_demo(save: bool, compute: bool) -> Trace:
    """vcpu 0 computes for 60 µs; vcpus 1-3 (optionally) compute a 5 µs burst, idle for
    15 µs with their timer armed and compute again; ablation ``no_nv_save`` if not
    ``save``."""
    from ..config import Config as _Config
    from ..guest import Busy, Idle, Workload
    from ..sim import simulate
    cfg = _Config() if save else _Config(ablations={"no_nv_save"})
    idle = (Busy(5.0), Idle(15.0), Busy(10.0)) if compute else (Idle(15.0), Busy(10.0))
    wl = Workload(((Busy(60.0),), *(idle,) * (cfg.vcpus - 1)),
                  name="nap save/restore" + ("" if compute else ", no burst before the cede"))
    return simulate(cfg, wl, until=60)


def nap_save_restore(*, save: bool = True, compute_before_cede: bool = True,
                     fig: Figure | None = None) -> Figure:
    """The nap walk-through of chapter 3 as one call: simulate vcpu 1 napping while vcpu 0
    keeps the core in the guest and draw its registers across the nap
    (:func:`registers_view`): what the thread holds before ``nap``, what
    ``kvmppc_h_cede`` saved in ``vcpu->arch`` (``Vcpu.gpr_saved``/``fpr_saved``), what nap
    leaves (:data:`~kvmcede.state.REGS_LOST`), what ``kvm_end_cede`` reloads and what the
    guest finds.

    ``save=False`` runs ablation ``no_nv_save``.  ``compute_before_cede=False`` drops the
    burst vcpu 1 computes before it cedes: then the stale copy happens to be right, and
    the missing save goes unnoticed (chapter 3, exercise 3).
    """
    _check_bool("save", save)
    _check_bool("compute_before_cede", compute_before_cede)
    trace = _nap_demo(save, compute_before_cede)
    what = "save on" if save else "ablation no_nv_save: nothing saved"
    burst = "computes, then cedes" if compute_before_cede else "cedes without computing first"
    return registers_view(trace, vcpu=1, fig=fig,
                          title=f"vcpu 1 {burst}; {what}")


#: The offsets of the exit race's slider: B's MMIO access minus C's H_CEDE, in µs
#: (real-mode steps are 0.1 µs apart in the cost model: a half-step grid).
RACE_OFFSETS_US: tuple[float, ...] = tuple(round(-0.4 + 0.05 * k, 2) for k in range(21))

#: The outcomes of the exit race, with their label and colour.
RACE_OUTCOMES: dict[str, tuple[str, str]] = {
    "before": ("exit first: HDEC takes C out of guest code before it cedes", "#BBBBBB"),
    "recheck": ("napper skips nap: its re-check sees the exit", "#88CCEE"),
    "both": ("napper skips nap: IPI'd, and its re-check sees the exit", "#44AA99"),
    "ipi": ("napper IPI'd: it naps, wakes and joins the exit", "#117733"),
    "lost": ("lost wake-up: C naps un-IPI'd, the primary waits", "#CC3311"),
    "other": ("another order (see the steps)", "#DDCC77"),
}

_RACE_SHORT = {"before": "exit first", "recheck": "re-check: skips nap",
               "both": "IPI + re-check: skips nap", "ipi": "IPI wakes the napper",
               "lost": "lost wake-up", "other": "other"}

_RACE_KINDS = {
    1: ("mmio_access", "hdec_soon", "hdec_poke", "ipi"),
    2: ("H_CEDE", "kvmppc_h_cede", "nap", "kvm_start_guest", "kvm_end_cede",
        "hcall_real_fallback", "hdec_soon", "kvmppc_interrupt"),
    0: ("kvmppc_interrupt", "hdec_soon", "switch_to_host"),
}


@dataclass(frozen=True)
class ExitRace:
    """One run of the race between C's cede and B's exit (:func:`exit_race`).

    ``offset_us`` is the slider's value (B's busy burst minus C's); ``measured_us`` the
    offset in the trace (B's ``mmio_access`` minus C's ``H_CEDE``; the slider's value if
    C never cedes in the run).  ``outcome`` is a key
    of :data:`RACE_OUTCOMES`; ``rows`` are the kernel events of threads 0-2 around the
    race, ``(µs, thread, kind, detail)``; ``exit_us`` is how long the whole-core exit took
    (None: the core had not left the guest by the end of the run)."""

    offset_us: float
    ablations: tuple[str, ...]
    outcome: str
    measured_us: float
    rows: tuple[tuple[float, int, str, str], ...]
    exit_us: float | None
    until_us: float
    c_timer_us: float
    trace: Trace

    @property
    def label(self) -> str:
        """The outcome in words."""
        return RACE_OUTCOMES[self.outcome][0]


_RACE_ABLATIONS = ("no_ipi_on_exit", "no_exit_recheck")


def _check_race(offset_us: object, ablations: object) -> tuple[float, tuple[str, ...]]:
    lo, hi = RACE_OFFSETS_US[0], RACE_OFFSETS_US[-1]
    if not is_finite(offset_us) or not lo <= offset_us <= hi:
        raise ValueError(f"offset_us: got {_v(offset_us)}; allowed: a number from {lo:g} "
                         f"to {hi:g} (µs)")
    if isinstance(ablations, str) or not all(a in _RACE_ABLATIONS for a in ablations):
        raise ValueError(f"ablations: got {_v(ablations)}; allowed: a collection of "
                         f"{list(_RACE_ABLATIONS)}")
    return round(float(offset_us), 6), tuple(a for a in _RACE_ABLATIONS if a in ablations)


def exit_race(offset_us: float = 0.15, ablations: Any = ()) -> ExitRace:
    """Run scenario S12 with B's exit moved by ``offset_us`` against C's cede and say what
    happened (``ablations``: any of ``no_ipi_on_exit``, ``no_exit_recheck``).

    C (vcpu 2, thread 2) computes 10 µs and cedes with a 2 ms timer; B (vcpu 1, thread 1)
    computes 10 µs + ``offset_us`` and makes an MMIO access, whose exit must take every
    thread out; A and D compute.  The outcome is read from the trace.  The default,
    0.15 µs, is S12 itself.
    """
    offset_us, ablations = _check_race(offset_us, ablations)
    return _exit_race(offset_us, ablations)


_RACE_CACHE: dict[tuple, ExitRace] = {}


def _exit_race(offset_us: float, ablations: tuple[str, ...]) -> ExitRace:
    key = (offset_us, ablations)
    hit = _RACE_CACHE.get(key)
    if hit is not None:
        return hit
    from ..guest import Busy, Workload
    from ..scenarios import scenario
    from ..sim import simulate
    s12 = scenario("S12")
    progs = list(s12.workload.programs)
    c_busy = progs[2][0].us
    progs[1] = (Busy(c_busy + offset_us), *progs[1][1:])
    tr = simulate(s12.config.replace(ablations=set(ablations)),
                  Workload(tuple(progs), name=f"S12, B's exit moved to {offset_us:+g} µs"),
                  until=s12.until_us)
    ev = tr.kernel_events()
    us = tr.us
    # C's H_CEDE (it never comes while the core is in the guest if the exit was first:
    # then the slider's offset stands)
    mmio = next(us(e.time) for e in ev if e.kind == "mmio_access" and e.vcpu == 1)
    cede = next((us(e.time) for e in ev if e.kind == "H_CEDE" and e.vcpu == 2),
                mmio - offset_us)
    t_exit = next(e.time for e in ev if e.kind == "exit")
    t_switch = next((e.time for e in ev if e.kind == "switch_to_host" and e.time > t_exit),
                    None)
    end = tr.end if t_switch is None else t_switch
    during = [e for e in ev if t_exit <= e.time <= end]
    c_ev = [e for e in during if e.thread == 2]
    ipi_c = any(e.kind == "ipi" and e.arg == 2 for e in during)
    # C's nap may begin just before the exit does
    napped = any(e.kind == "nap" and e.thread == 2 and us(e.time) >= cede and e.time <= end
                 for e in ev)
    if any(e.kind == "kvmppc_interrupt" for e in c_ev):
        outcome = "before"
    elif any(e.kind == "kvmppc_h_cede" and "exit already in progress" in e.detail
             for e in c_ev):
        outcome = "both" if ipi_c else "recheck"
    elif napped and ipi_c:
        outcome = "ipi"
    elif napped and t_switch is None:
        outcome = "lost"
    else:
        outcome = "other"
    t0 = min(cede, mmio) - 0.15
    rows = tuple((us(e.time), e.thread, e.kind, e.detail) for e in ev
                 if us(e.time) >= t0 and e.time <= end and e.kind in
                 _RACE_KINDS.get(e.thread, ()) and (e.thread != 0 or e.time >= t_exit))
    last = tr.state_after(len(tr.steps))
    r = ExitRace(offset_us=offset_us, ablations=ablations, outcome=outcome,
                 measured_us=round(mmio - cede, 3), rows=rows,
                 exit_us=None if t_switch is None else round(us(t_switch - t_exit), 3),
                 until_us=s12.until_us, c_timer_us=us(last.vcpus[2].dec_expires), trace=tr)
    if len(_RACE_CACHE) > 512:
        _RACE_CACHE.clear()
    _RACE_CACHE[key] = r
    return r


def exit_race_outcomes(ablations: Any = ()) -> list[tuple[float, str]]:
    """The outcome at every slider offset (:data:`RACE_OFFSETS_US`)."""
    _check_race(0.0, ablations)
    return [(d, exit_race(d, ablations).outcome) for d in RACE_OFFSETS_US]


def exit_race_window(offset_us: float = 0.15, *, no_ipi_on_exit: bool = False,
                     no_exit_recheck: bool = False, fig: Figure | None = None) -> Figure:
    """The race of chapter 6 at one offset: the outcome at every offset of the window
    (a strip, the current one framed), then the kernel steps of B's exit (thread 1), C's
    cede (thread 2) and the primary (thread 0) in time order, the pivots of the race
    shaded: C setting its ``napping_threads`` bit and re-checking the exit count, B
    counting itself out and reading the mask to IPI the nappers.
    """
    _check_bool("no_ipi_on_exit", no_ipi_on_exit)
    _check_bool("no_exit_recheck", no_exit_recheck)
    abl = tuple(a for a, on in zip(_RACE_ABLATIONS, (no_ipi_on_exit, no_exit_recheck),
                                   strict=True) if on)
    r = exit_race(offset_us, abl)
    strip = exit_race_outcomes(abl)
    rows = list(r.rows)
    tail = None
    if r.exit_us is None:
        tail = (f"… at {r.until_us:g} µs the primary still waits in hdec_soon for C, which "
                f"naps until its own timer at {r.c_timer_us:,.1f} µs")
    # Laid out in tenths of an inch, 70 wide (the book's width), text 9 pt: a column of
    # times and one column per thread, each step its kernel name over its detail (wrapped).
    W, line = 70.0, 1.5
    x_t, xcol = 0.8, {1: 6.8, 2: 28.0, 0: 49.2}
    col_w = 20.6
    cells = []
    for t, thr, kind, detail in rows:
        wrapped = textwrap.wrap(detail, 31)[:2]
        if len(textwrap.wrap(detail, 31)) > 2:
            wrapped[1] = _ellipsize(wrapped[1] + " …", 31)
        cells.append((t, thr, _ellipsize(kind, 27), wrapped))
    abl_txt = ("  —  ablation " + " + ".join(abl)) if abl else ""
    label, colour = RACE_OUTCOMES[r.outcome]
    extra = (f" (whole-core exit {r.exit_us:.1f} µs)" if r.exit_us is not None
             else " (the core never leaves the guest)")
    outcome_lines = textwrap.wrap("outcome: " + label + extra, 72)
    # the outcomes' key, as many to a line as fit
    seen = list(dict.fromkeys(o for _d, o in strip))
    key_lines: list[list[tuple[float, str]]] = [[]]
    lx = 0.8
    for o in seen:
        w = 3.0 + _text_width(_RACE_SHORT[o], 9) + 2.0
        if lx + w > W and key_lines[-1]:
            key_lines.append([])
            lx = 0.8
        key_lines[-1].append((lx, o))
        lx += w
    y_strip = 6.2 + 2.2 * len(outcome_lines) + 1.0
    y_key = y_strip + 7.6
    top = y_key + 2.6 * len(key_lines) + 3.2
    body = sum(line * (1 + len(c[3])) + 0.9 for c in cells)
    tail_lines = textwrap.wrap(tail, 80) if tail else []
    H = top + body + 2.2 * len(tail_lines) + 2 * 2.2 + 1.5
    fig, target, texts, boxes, text = _sheet(fig, W, H)

    text(0.8, 2.0, f"B's exit vs C's cede (S12){abl_txt}", fontsize=10.5, fontweight="bold")
    text(0.8, 4.4, f"B's MMIO access {r.measured_us:+.2f} µs after C's H_CEDE",
         fontsize=10, fontweight="bold")
    for j, ln in enumerate(outcome_lines):
        text(0.8, 6.8 + 2.2 * j, ln, fontsize=9.5, fontweight="bold",
             color="#AA0000" if r.outcome == "lost" else "#222222")
    x0 = 12.0
    cw = (W - 0.8 - x0) / len(strip)
    for k, (d, o) in enumerate(strip):
        cur = abs(d - r.offset_us) < 1e-9
        boxes.append((x0 + k * cw, y_strip, cw, 3.6, RACE_OUTCOMES[o][1],
                      "#000000" if cur else "#FFFFFF"))
    # the current offset, framed (also between two grid points)
    kx = x0 + (r.offset_us - RACE_OFFSETS_US[0]) / 0.05 * cw
    boxes.append((kx + 0.2, y_strip - 0.5, cw - 0.4, 4.6, "none", "#000000"))
    text(0.8, y_strip + 1.8, "every offset:", color="#444444", va="center")
    for d, ha in ((RACE_OFFSETS_US[0], "left"), (0.0, "center"), (RACE_OFFSETS_US[-1], "right")):
        k = (d - RACE_OFFSETS_US[0]) / 0.05
        x = x0 + (k + {"left": 0.0, "center": 0.5, "right": 1.0}[ha]) * cw
        text(x, y_strip + 5.6, f"{d:+.2f} µs", ha=ha, color="#555555")
    for j, entries in enumerate(key_lines):
        yk = y_key + 2.6 * j
        for lx, o in entries:
            boxes.append((lx, yk - 0.9, 1.8, 1.8, RACE_OUTCOMES[o][1], "#999999"))
            text(lx + 2.4, yk, _RACE_SHORT[o], va="center")
    for x, h in ((x_t, "µs"), (xcol[1], "thread 1: B exits"), (xcol[2], "thread 2: C cedes"),
                 (xcol[0], "thread 0: primary")):
        text(x, top - 1.2, h, fontweight="bold")
    pivots = ("napping_threads |=", "exit count still 0", "exit already in progress",
              "first exiter", "IPI to napping", "NOT sending")
    y = top
    for (t, thr, kind, wrapped), (_t, _thr, _kind, detail) in zip(cells, rows, strict=True):
        h = line * (1 + len(wrapped)) + 0.9
        if any(p in detail for p in pivots):
            boxes.append((xcol[thr] - 0.4, y + 0.1, col_w, h - 0.2, "#FFF2B3", "none"))
        text(x_t, y + 0.45 + line / 2, f"{t:.2f}", family=_MONO, color="#555555",
             va="center")
        text(xcol[thr], y + 0.45 + line / 2, kind, fontweight="bold", family=_MONO,
             va="center")
        for j, ln in enumerate(wrapped):
            text(xcol[thr], y + 0.45 + line * (j + 1.5), ln, color="#444444", va="center")
        y += h
    for ln in tail_lines:
        text(0.8, y + 1.2, ln, color="#AA0000", fontweight="bold", va="center")
        y += 2.2
    for ln in ("threads 0 and 3 (A and D) compute until the HDEC poke; thread 3 is not",
               "shown. Shaded: the accesses the race is about."):
        text(0.8, y + 1.3, ln, color="#666666", va="center")
        y += 2.2
    _boxes(target, boxes, lw=0.8)
    _draw_texts(target, texts)
    _displayable(fig)
    return fig


_EXT_PENDING = (1 << BOOK3S_IRQPRIO_EXTERNAL)
_DEC_PENDING = (1 << BOOK3S_IRQPRIO_DECREMENTER)


@dataclass(frozen=True)
class Reentry:
    """What ``kvmppc_cede_reentry`` did for one choice of pending interrupts
    (:func:`reentry`): the vector it synthesized (0: none), whether it set ``LPCR_MER``,
    the interrupts the guest then takes in order ``(vector, how)``, the step the guest
    takes next, the source lines of the function that ran and its event."""

    inputs: dict[str, bool]
    vector: int
    mer: bool
    ceded: int
    order: tuple[tuple[int, str], ...]
    still_pending: str
    next_step: str
    lines_run: frozenset[int]
    event: str


_REENTRY_BASE: list[tuple] = []


def _reentry_base():
    """A real state at ``kvmppc_cede_reentry``: S3's thread 2 just woken from nap (its
    model, the state and the time)."""
    if not _REENTRY_BASE:
        from ..scenarios import scenario
        tr = scenario("S3").run()
        k = next(j for j in range(len(tr.steps))
                 if tr.state_after(j + 1).threads[2].loc == "kvmppc_cede_reentry"
                 and tr.state_after(j + 1).vcpus[2].guest == "cede")
        _REENTRY_BASE.append((tr._model, tr.state_after(k + 1), tr._now(tr.steps[k][0])))
    return _REENTRY_BASE[0]


def reentry(*, dec_expired: bool = True, external: bool = False, msr_ee: bool = True,
            injected: bool = False) -> Reentry:
    """Run ``kvmcede.realmode.kvmppc_cede_reentry`` on thread 2 of scenario S3 as it
    wakes from nap, with vcpu 2's pending interrupts set as chosen, then the guest's
    steps until it has taken every interrupt it can.

    ``dec_expired``: DEC is negative (else armed); ``external``: an external interrupt
    is pending in ``pending_exceptions``; ``msr_ee``: the guest's MSR[EE] (H_CEDE turns
    it on; off is an entry with interrupts disabled); ``injected``: the host already
    injected an interrupt at 0x900 (a DEC that expired while the vcpu was ceded in the
    host), which leaves MSR[EE] off whatever ``msr_ee`` says.
    """
    for name, v in (("dec_expired", dec_expired), ("external", external),
                    ("msr_ee", msr_ee), ("injected", injected)):
        _check_bool(name, v)
    from ..edit import Step
    from ..realmode import kvmppc_cede_reentry
    from ..state import DEC_ARMED, DEC_NEGATIVE
    m, s, now = _reentry_base()
    v, i = 2, 2
    pending = (_EXT_PENDING if external else 0) | (_DEC_PENDING if injected else 0)
    u = s.vcpus[v]._replace(pending_exceptions=pending, raised=pending,
                            dec=DEC_NEGATIVE if dec_expired else DEC_ARMED,
                            msr_ee=msr_ee and not injected,
                            vector=0x900 if injected else 0, at_vector=False)
    s = s._replace(vcpus=s.vcpus[:v] + (u,) + s.vcpus[v + 1:])
    code = kvmppc_cede_reentry.__code__
    lines: set[int] = set()

    def tracer(frame, event, arg):
        if frame.f_code is not code:
            return None

        def local(f, ev, a):
            if ev == "line":
                lines.add(f.f_lineno)
            return local
        return local

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        s, evs = m.apply(s, Step("thread", i, "kvmppc_cede_reentry"), now)
    finally:
        sys.settrace(old)
    ev = next(e for e in evs if e.kind == "kvmppc_cede_reentry")
    vector, mer, ceded = ev.arg, s.threads[i].mer, s.vcpus[v].ceded
    order: list[tuple[int, str]] = []
    for e in evs:
        if e.kind == "deliver":
            how = ("synthesized by kvmppc_cede_reentry" if e.arg == vector and vector
                   else "injected by the host")
            order.append((e.arg, how))
    next_step = ""
    for _ in range(8):
        steps = [st for st in m.thread_steps(s) if st.index == i]
        if not steps or steps[0].name not in ("guest_interrupt", "guest_dec"):
            next_step = steps[0].name if steps else "(none)"
            break
        s, evs = m.apply(s, steps[0], now)
        for e in evs:
            if e.kind == "deliver":
                order.append((e.arg, "mediated external (LPCR_MER) when MSR[EE] turns on"
                              if "LPCR_MER" in e.detail else
                              "decrementer taken by the guest itself (DEC < 0, MSR[EE] on)"))
    left = s.vcpus[v].pending_exceptions & (_EXT_PENDING | (1 << BOOK3S_IRQPRIO_EXTERNAL_LEVEL))
    still = []
    if left:
        still.append("external (waits in pending_exceptions"
                     + ("; LPCR_MER fires it when MSR[EE] turns on)" if s.threads[i].mer
                        else ")"))
    if s.vcpus[v].dec == DEC_NEGATIVE:
        still.append("DEC < 0 (taken when MSR[EE] turns on)")
    return Reentry(inputs={"dec_expired": dec_expired, "external": external,
                           "msr_ee": msr_ee, "injected": injected},
                   vector=vector, mer=mer, ceded=ceded, order=tuple(order),
                   still_pending="; ".join(still), next_step=next_step,
                   lines_run=frozenset(lines), event=ev.detail)


def reentry_delivery(*, dec_expired: bool = True, external: bool = False,
                     msr_ee: bool = True, injected: bool = False,
                     fig: Figure | None = None) -> Figure:
    """Chapter 5's re-entry walk-through (:func:`reentry`): on the left what is pending
    when the woken vcpu re-enters, what ``kvmppc_cede_reentry`` synthesizes, whether it
    sets ``LPCR_MER``, and the interrupts the guest then takes, in order; on the right
    the model's ``kvmppc_cede_reentry``, taken from the package, with the lines that ran
    this time highlighted."""
    import inspect

    from ..realmode import kvmppc_cede_reentry
    r = reentry(dec_expired=dec_expired, external=external, msr_ee=msr_ee,
                injected=injected)
    src, first = inspect.getsourcelines(kvmppc_cede_reentry)
    body = [(first + k, ln.rstrip("\n")) for k, ln in enumerate(src)]
    # skip the docstring: from the first line after its closing quotes
    start = next(k for k, (_n, ln) in enumerate(body) if k > 0 and ln.strip().endswith('"""'))
    body = body[start + 1:]
    # Laid out in tenths of an inch, 70 wide (the book's width), text 9 pt: what was
    # pending and what kvmppc_cede_reentry did side by side, the interrupts the guest
    # takes under them, then the function's source with the lines that ran highlighted.
    W, rh, line = 70.0, 1.55, 2.3
    inp = r.inputs
    ee = inp["msr_ee"] and not inp["injected"]
    order = list(r.order) or [(0, "nothing")]
    extra_lines = ([textwrap.wrap("still pending: " + r.still_pending, 78)]
                   if r.still_pending else [])
    n_below = len(order) + sum(len(x) for x in extra_lines) + 1
    y_code = 4.0 + 1.2 + 4 * line + 2.4 + 1.2 + n_below * line + 2.6
    H = y_code + 1.4 + rh * len(body) + 1.0
    fig, target, texts, boxes, text = _sheet(fig, W, H)

    text(0.8, 2.0, "kvmppc_cede_reentry: what a woken vcpu gets", fontsize=10.5,
         fontweight="bold")
    y0 = 4.8
    text(0.8, y0, "Pending as thread 2 re-enters:", fontweight="bold")
    pend = pending_names((_EXT_PENDING if inp["external"] else 0)
                         | (_DEC_PENDING if inp["injected"] else 0)) or "none"
    y = y0
    for lab, val in (("pending_exceptions", pend),
                     ("DEC", "negative (expired)" if inp["dec_expired"] else "armed"),
                     ("MSR[EE]", ("0 (host's injection)" if inp["injected"] and inp["msr_ee"]
                                  else "1" if ee else "0")),
                     ("injected", "0x900 by the host" if inp["injected"] else "no")):
        y += line
        text(1.4, y, lab)
        text(14.2, y, val, family=_MONO)
    x2 = 37.5
    text(x2, y0, "kvmppc_cede_reentry:", fontweight="bold")
    synth = {0: "nothing", 0x500: "external at 0x500",
             0x900: "decrementer at 0x900"}[r.vector]
    y = y0
    for lab, val, hot in (("synthesizes", synth, bool(r.vector)),
                          ("LPCR_MER", "set" if r.mer else "clear", r.mer),
                          ("ceded", str(r.ceded), False)):
        y += line
        text(x2 + 0.6, y, lab)
        text(x2 + 11.0, y, val, family=_MONO, fontweight="bold" if hot else "normal",
             color="#AA3377" if hot else "#222222")
    y = y0 + 4 * line + 2.4
    text(0.8, y, "The guest then takes, in order:", fontweight="bold")
    for k, (vec, how) in enumerate(order, 1):
        y += line
        if not vec:
            text(1.4, y, how)
            continue
        boxes.append((1.4, y - 1.0, 6.0, 2.0, VECTOR_COLOURS.get(vec, "#BBBBBB"), "none"))
        text(4.4, y, f"{vec:#x}", ha="center", family=_MONO, color="white",
             fontweight="bold", va="center")
        text(8.2, y, f"{k}. {how}", va="center")
    for lines in extra_lines:
        for ln in lines:
            y += line
            text(1.4, y, ln, color="#AA0000")
    y += line
    text(1.4, y, f"next guest step: {r.next_step}", color="#555555")
    x0 = 0.8
    text(x0, y_code, "kvmcede/realmode.py, kvmppc_cede_reentry (lines run: highlighted)",
         fontweight="bold")
    yy = y_code + 1.0
    for n, ln in body:
        run = n in r.lines_run
        if run:
            boxes.append((x0 - 0.4, yy, W - x0, rh, "#D9F0D3", "none"))
        text(x0, yy + rh / 2, _ellipsize(ln.replace("\t", "    "), 92), family=_MONO,
             color="#111111" if run else "#888888", va="center")
        yy += rh
    _boxes(target, boxes, lw=0.4)
    _draw_texts(target, texts)
    _displayable(fig)
    return fig
