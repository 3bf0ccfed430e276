"""Registers across nap: :func:`nap_moments` and :func:`registers_view`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from ..config import _is_int
from ..config import show as _v
from ..state import (
    REGS_LOST,
    Machine,
)
from .render import (
    _boxes,
    _displayable,
    _draw_texts,
    _new_figure,
    _tenths,
    _text_width,
)
from .style import (
    _MONO,
    _check_index,
    _check_trace,
)

if TYPE_CHECKING:
    from ..config import Config
    from ..trace import Trace

# =============================================================================================
# Registers across nap
# =============================================================================================

@dataclass(frozen=True)
class NapMoments:
    """The moments around one nap of one vcpu, found in a trace by :func:`nap_moments`.

    Step indexes are 0-based into ``trace.steps`` (figures number steps from 1, as the
    step player does: step ``k + 1`` is ``trace.steps[k]``): ``nap_step`` is
    "kvmppc_h_cede: save state, nap", ``wake_step`` the "kvm_start_guest" that ended it,
    ``resume_step`` the step after which the vcpu next runs guest code (None if it never
    does in the trace).  Register contents are the model's tags (one number standing for
    the 18 values of r14-r31, or of the FP/VMX/VSX registers; -1 = lost in nap)."""

    vcpu: int
    thread: int
    nap_step: int
    wake_step: int | None
    resume_step: int | None
    before: tuple[int, int]  # (gprs, fprs) in the thread just before nap
    saved: tuple[int, int]  # vcpu->arch copies after the nap step
    during: tuple[int, int]  # in the thread while napping
    after_wake: tuple[int, int] | None  # in the thread after kvm_end_cede's reload
    guest_sees: tuple[int, int] | None  # in the thread when guest code next runs
    expected: tuple[int, int]  # what the guest last wrote (gpr_expect, fpr_expect)


_NAP_STEP = "kvmppc_h_cede: save state, nap"


def nap_moments(trace: Trace, vcpu: int | None = None, occurrence: int = 0) -> NapMoments:
    """Find the ``occurrence``-th nap (of ``vcpu``, or of any vcpu) in ``trace``, the
    wake-up that ended it and the next moment its guest code runs again."""
    _check_trace(trace)
    if not _is_int(occurrence) or occurrence < 0:
        raise ValueError(f"occurrence: got {_v(occurrence)}; allowed: an integer >= 0")
    if vcpu is not None:
        _check_index("vcpu", vcpu, trace.config.vcpus, "a vcpu")
    seen = 0
    for k, (_t, st) in enumerate(trace.steps):
        if st.actor != "thread" or st.name != _NAP_STEP:
            continue
        before = trace.state_after(k)
        v = before.threads[st.index].vcpu
        if vcpu is not None and v != vcpu:
            continue
        if seen < occurrence:
            seen += 1
            continue
        return _moments_from(trace, k, st.index, v, before)
    who = "any vcpu" if vcpu is None else f"vcpu {vcpu}"
    raise ValueError(f"occurrence: the trace has only {seen} nap(s) of {who} "
                     f"(asked for occurrence {occurrence})")


def _moments_from(trace: Trace, k: int, i: int, v: int, before: Machine) -> NapMoments:
    m = trace._model
    t_k, st_k = trace.steps[k]
    s, _ = m.apply(before, st_k, t_k)
    bt, u = before.threads[i], s.vcpus[v]
    during = (s.threads[i].gprs, s.threads[i].fprs)
    wake = resume = None
    after_wake = guest_sees = None
    for j in range(k + 1, len(trace.steps)):
        t_j, st = trace.steps[j]
        prev = s
        s, _ = m.apply(s, st, t_j)
        if wake is None:
            if st.actor == "thread" and st.index == i and prev.threads[i].loc == "nap":
                wake = j
                after_wake = (s.threads[i].gprs, s.threads[i].fprs)
            continue
        for t in s.threads:
            if t.vcpu == v and t.loc == "guest":
                resume = j
                guest_sees = (t.gprs, t.fprs)
                break
        if resume is not None:
            break
    return NapMoments(vcpu=v, thread=i, nap_step=k, wake_step=wake, resume_step=resume,
                      before=(bt.gprs, bt.fprs), saved=(u.gpr_saved, u.fpr_saved),
                      during=during, after_wake=after_wake, guest_sees=guest_sees,
                      expected=(u.gpr_expect, u.fpr_expect))


def _register_demo(config: Config) -> Trace:
    """A small run in which vcpu 1 computes, naps while vcpu 0 keeps the core in the
    guest, and computes again when its decrementer wakes it."""
    from ..guest import Busy, Idle, Workload
    from ..sim import simulate
    if config.vcpus < 2:
        raise ValueError("config.vcpus must be >= 2 for a nap in the guest (a lone vcpu "
                         "that cedes takes the whole core to the host)")
    progs = [(Busy(60.0),)] + [(Busy(5.0), Idle(15.0), Busy(10.0))] * (config.vcpus - 1)
    return simulate(config, Workload(tuple(progs), name="registers across nap"), until=60)


def registers_view(source: Trace | Config, *, vcpu: int | None = None, occurrence: int = 0,
                   title: str | None = None, fig: Figure | None = None) -> Figure:
    """The non-volatile registers of a vcpu across one nap: in the thread before nap, in
    ``vcpu->arch`` (saved by kvmppc_h_cede), in the thread while napping (nap loses
    them), after ``kvm_end_cede`` reloads them, and what the guest code finds when it
    runs again — each compared with what the guest last wrote.  Red cells are wrong
    values: with ablation ``no_nv_save`` nothing is saved and the guest finds stale
    registers.

    ``source`` is a trace holding a nap, or a Config: then a small demonstration run is
    simulated (vcpu 1 naps while vcpu 0 keeps the core in the guest).  The model keeps
    one tag per register file (the number of the busy burst that last wrote it); every
    cell shows the tag of that register.
    """
    from ..config import Config as _Config
    if isinstance(source, _Config):
        trace = _register_demo(source)
        if vcpu is None:
            vcpu = 1
    else:
        trace = source
    mo = nap_moments(trace, vcpu=vcpu, occurrence=occurrence)
    cfg = trace.config
    checked = {"saved", "reloaded", "guest"}
    rows = [
        ("before", "in the thread before nap", mo.before, f"before step {mo.nap_step + 1}"),
        ("saved", "saved in vcpu->arch by kvmppc_h_cede", mo.saved,
         f"step {mo.nap_step + 1}"),
        ("during", "in the thread while napping", mo.during, "nap does not keep them"),
        ("reloaded", "reloaded by kvm_end_cede", mo.after_wake,
         f"step {mo.wake_step + 1}" if mo.wake_step is not None else "never woke"),
        ("guest", "what the guest code finds", mo.guest_sees,
         f"step {mo.resume_step + 1}" if mo.resume_step is not None
         else "never ran again"),
        ("expected", "what the guest last wrote", mo.expected, "the right values"),
    ]
    # Laid out in tenths of an inch, 70 wide (the book's width) with 9 pt text: each row
    # is a line of words (what, when, and the verdict at the right) over the two register
    # files, 18 cells each, coloured by whether they hold what the guest last wrote.
    n_reg, cw = 18, 1.75
    W = 70.0
    x_lab, x_g, x_f, x_v = 0.8, 0.8, 0.8 + n_reg * cw + 1.9, W - 0.8
    rh = 6.4
    H = 10.5 + rh * len(rows) + 3.2
    if fig is None:
        fig = _new_figure((W / 10, H / 10))
    else:  # the layout is in tenths of an inch
        fig.set_size_inches(W / 10, H / 10)
    target = (fig, _tenths(fig, H))
    texts: list[tuple[float, float, str, dict]] = []

    def text(x: float, y: float, s: str, **kw: Any) -> None:
        texts.append((x, y, s, {"fontsize": 9, **kw}))

    if title is None:
        abl = ("  —  ablation no_nv_save: kvmppc_h_cede saves nothing"
               if "no_nv_save" in cfg.ablations else "")
        title = f"Non-volatile registers of vcpu {mo.vcpu} across nap on thread {mo.thread}{abl}"
    text(x_lab, 1.8, title, fontsize=10.5, fontweight="bold", va="center")
    for x, name, lo, hi in ((x_g, "GPRs", "r14", "r31"),
                            (x_f, "FPRs (and VMX/VSX)", "f14", "f31")):
        text(x + n_reg * cw / 2, 5.4, name, ha="center", fontweight="bold")
        text(x, 8.4, lo, color="#555555")
        text(x + n_reg * cw, 8.4, hi, ha="right", color="#555555")
    exp = mo.expected
    good, bad, lost, plain = "#CDE8C9", "#F4A6A6", "#E4E4E4", "#F7F7F7"
    boxes: list[tuple] = []
    y = 10.5
    for key, label, vals, note in rows:
        text(x_lab, y + 1.2, f"{label}  ", va="center")
        text(x_lab + _text_width(label, 9) + 1.2, y + 1.2, f"({note})", va="center",
             color="#555555")
        wrong = False
        for g, x in ((0, x_g), (1, x_f)):
            val = None if vals is None else vals[g]
            if val is None:
                fc, txt = "white", ""
            elif val == REGS_LOST:
                fc, txt = lost, "?"
            elif key in checked:
                fc, txt = (good if val == exp[g] else bad), str(val)
                wrong |= val != exp[g]
            else:
                fc, txt = plain, str(val)
            for r in range(n_reg):
                boxes.append((x + r * cw, y + 2.5, cw, 2.9, fc, "#999999"))
            if txt:  # every register of the file holds the same tag: write it once
                tx = x + (n_reg // 2 - 0.5) * cw  # in the middle of a cell
                text(tx, y + 3.95, txt, ha="center", va="center", family=_MONO,
                     fontweight="bold", color="#880000" if fc == bad else "#222222")
        if key in checked and vals is not None:
            verdict, colour = ("✗ corrupted", "#AA0000") if wrong else ("✓ correct",
                                                                         "#117733")
            if key == "saved" and wrong:
                verdict = "✗ stale copy"
            text(x_v, y + 1.2, verdict, va="center", ha="right", color=colour,
                 fontweight="bold")
        elif key == "during":
            text(x_v, y + 1.2, "lost in nap", va="center", ha="right", color="#555555")
        y += rh
    _boxes(target, boxes, lw=0.4)
    text(x_lab, y + 1.4, "One tag per register file: the number of the busy burst that "
         "last wrote it (? = lost).", color="#444444", va="center")
    _draw_texts(target, texts)
    _displayable(fig)
    return fig
