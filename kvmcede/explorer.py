"""The interleaving explorer: every order of the enabled steps, checked.

:func:`explore` ignores time and walks the state graph of one small configuration
breadth-first over the model's own step semantics (:meth:`Model.enabled` with the
environment switched on, :meth:`Model.apply`), keeping a visited set of the hashable
:class:`~kvmcede.state.Machine` states.  It checks

* every invariant of :data:`kvmcede.invariants.INVARIANTS` (reference section 10 and its
  consequences) on every transition it discovers, and
* three liveness properties of the finite graph (:data:`LIVENESS`), after the graph is
  complete, by reverse reachability,

and returns an :class:`ExploreResult`: ``ok``, the number of states and transitions, the
time taken, and for every violated property the *shortest* counterexample (breadth-first
order) as a :class:`~kvmcede.trace.Trace` whose time is the step index — the same type
the simulator returns, so the same plots and players draw it.

This module is :mod:`kvmcede.explorer`; its function :func:`explore` is exported as
``kvmcede.explore``, called the way ``kvmcede.simulate`` is.  Every search is bounded:
by ``max_states`` (at most :data:`MAX_STATES_LIMIT`, about 0.8 KB a state) and by
``max_seconds`` (at most :data:`MAX_SECONDS_LIMIT`); a search stopped by either, or by
Ctrl-C, returns what it reached, labelled (:attr:`ExploreResult.stopped`).

Environment events (device interrupts, guest DEC expiries, remote H_PRODs, host ticks,
signals) may happen at any moment, each kind at most as often as its budget allows.

The liveness properties ask what the *hypervisor* can do by itself.  A path that
answers them may use every step of the hardware threads and host tasks — real-mode code,
the host's scheduling, timers, store-buffer drains, the remote prodder finishing its
H_PROD — and the guest code of the vcpu the property is about, but neither the guest
code of the *other* vcpus nor new environment events.  Why: with the H_PROD fix in
(bugs off), a vcpu whose prod was missed is picked up again at the next whole-core exit,
and another vcpu's guest code or an unrelated interrupt can always cause one; a property
that allowed that help would call a protocol "live" because something else eventually
happens.  (The ablations show exactly such hangs: the core waits for a napper that
nobody wakes, a prodded vcpu naps on.)  The host's timer tick is such an outside event
too (the ``host_ticks`` budget): a liveness violation is a hang that lasts at least until
something unrelated — at worst the next host tick — pulls the core out.  Each liveness
property is "from every reachable state where its trigger holds, a state where it no
longer holds is reachable along allowed steps"; a counterexample is a shortest run to a
state from which no allowed run gets there, followed (``Violation.continuation``) by
one run of what the hypervisor can still do from there.

Symmetry reduction (``symmetry=True``) merges states that are renumberings of each
other, in two ways.

*Vcpus*: vcpus whose programs are identical, and which no program names (no
``Prod(target)`` or ``Confer(target)`` refers to them and theirs refer to nobody), are
interchangeable: the initial state treats all vcpus alike and no step depends on a
vcpu's number, only on where the vcpu appears (its records, its place in
``runnable_threads``, on the wait queue, as runner, on which hardware thread, in which
buffered store, as the remote prodder's target).  Within each class the explorer
renumbers the vcpus in the order of a signature made of everything the state says about
each of them; two vcpus with equal signatures are referenced nowhere and have equal
records, so swapping them leaves the state unchanged: the representative is unique.

*Secondary threads* (sequentially consistent memory, SMT4, and the shipped bugs fixed
or inert — both act only on a prod, so without any prod to come they cannot): threads
1 .. L-1, L the number of runnable vcpus, may be moved among themselves together with
what names them (the vcpus they run keep their records, their ptids and
``napping_threads`` bits follow).  Every real-mode step treats the secondaries alike
(thread 0 is the primary and never moves), and so does the host, except
``kvmppc_run_core``, which places the runnable vcpus on threads in list order; but then
every secondary is offline and (dead values cleared) alike, so the placements from two
moved states are renumberings of each other.  A late join goes to thread L, which is
why only the threads below it move.  So this is a bisimulation rather than an
automorphism of the model: a test checks, on every transition of several graphs, that a
moved state enables the moved steps and that each leads to a state with the same
representative.  The explorer sorts the threads by what they hold (their record
without the vcpu number, then their ``napping_threads`` bit and their vcpu's record and
place), then renumbers the vcpus.

Because the permuted vcpus' bits in the liveness masks move with them, each stored edge
remembers the renumbering it went through.  Counterexamples are turned back into
concrete step sequences by replaying them from the real initial state, reading the
renumbering off each state's canonical form, and checked to reach the reported state.

Dead values (always on): before a state is stored, values that no step reads before
overwriting them are cleared — the vcpu, registers and ``LPCR_MER`` an offline thread
still holds, a task's ``woken`` while it is not waiting, the ptid of a vcpu no thread
runs, the "nothing to do" result of the last ``H_CEDE`` of an untimed idle loop (see
:class:`_DeadValues`).  States that differ only there behave alike step for step (a
test checks it), so verdicts and counterexample lengths are unchanged.

Partial-order reduction (``reduction=True``; off by default, so that counterexamples are
the shortest of the full graph): many real-mode steps are *private* in some states: in
the states where :func:`private_step` picks one, nothing any other actor can do before it
reads or writes what the step touches, nothing can disable it, it leaves every liveness
trigger as it is, and it can add an invariant violation but never remove one.  From such
a state the explorer follows only that step, not the other orders in which it could
interleave with the rest.  :data:`PRIVATE_STEPS` lists the locations and why each step is
private there: four local steps in any state with nobody able to interfere, and many
more once an exit is under way (the exit count stays non-zero until the next run, and
once HDEC has expired nobody can cede any more).  Why the verdicts stay exact: a run of
the full graph that does something else first can take the private step first instead
and reach the same states one private step later, with every invariant violation still
present (the step repairs none) and every liveness goal still a goal (the step changes
no trigger); and no cycle consists of private steps alone (each one moves its thread
forward along :data:`PRIVATE_ORDER`, or back to ``secondary_nap`` where only the host
can start it again), so no actor is postponed forever.  The states and transitions
counted are those of the reduced graph, and counterexamples are the shortest *in it*: a
step or two longer than the shortest of the full graph where a private step that the
violation does not need is taken on the way.  Use it to prove larger configurations:
three vcpus on SMT4 with :func:`default_workload` and one DEC expiry, 73,902 states
instead of 184,699 (a few seconds); three idle vcpus, 3,296 instead of 8,249.
"""

from __future__ import annotations

import argparse
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import pairwise

from .config import ABLATIONS, BUGS, CHANGES, Config
from .edit import PRODDER, Step
from .guest import GUEST_STEPS, Busy, Confer, Idle, Mmio, Prod, Workload
from .interrupts import B_DEC, B_HDEC, B_IRQ, B_PROD, B_SIGNAL
from .invariants import INVARIANTS, check_state, check_step, check_transition
from .model import Model
from .sim import _CyclicGCPaused
from .state import (
    BOOK3S_IRQPRIO_DECREMENTER,
    BOOK3S_IRQPRIO_EXTERNAL,
    BOOK3S_IRQPRIO_EXTERNAL_LEVEL,
    DEC_ARMED,
    DEC_OFF,
    VCORE_RUNNING,
    Machine,
)
from .trace import Event, Trace

__all__ = [
    "DEFAULT_MAX_SECONDS",
    "DEFAULT_MAX_STATES",
    "LIVENESS",
    "MAX_BUDGET",
    "MAX_SECONDS_LIMIT",
    "MAX_STATES_LIMIT",
    "PRIVATE_ORDER",
    "PRIVATE_STEPS",
    "PROPERTIES",
    "SETUPS",
    "STOPPED",
    "ExploreResult",
    "Violation",
    "add_cli_arguments",
    "cli_main",
    "default_workload",
    "explore",
    "private_step",
    "setup",
]

#: The liveness properties, checked on the finite graph once it is complete.
LIVENESS: dict[str, str] = {  # (paths: hypervisor steps only, see the module docstring)
    "core_can_leave": (
        "once an exit has started (exit count > 0 while VCORE_RUNNING), the hypervisor "
        "can always bring the whole core out of the guest (vcore_state leaves "
        "VCORE_RUNNING)"),
    "interrupt_delivered": (
        "an interrupt raised for a vcpu (device interrupt or DEC expiry) can always be "
        "delivered to it at its vector by the hypervisor and that vcpu's own code"),
    "prod_not_lost": (
        "a vcpu that is prodded while ceded can always be brought out of the cede by the "
        "hypervisor (no vcpu is ceded forever while prodded)"),
}

#: Every property the explorer checks: the invariants, then the liveness properties.
PROPERTIES: dict[str, str] = {
    **{name: f"{text} (reference {where})" if where[0].isdigit() else f"{text} ({where})"
       for name, (where, text) in INVARIANTS.items()},
    **LIVENESS,
}

#: Default and largest state limit.  A stored state costs about 800 bytes (2 million
#: states take about 1.6 GB), so the largest limit keeps a search within about 4 GB.
DEFAULT_MAX_STATES = 2_000_000
MAX_STATES_LIMIT = 5_000_000
#: Default and largest time limit of one search, in seconds of wall-clock time.
DEFAULT_MAX_SECONDS = 600.0
MAX_SECONDS_LIMIT = 3600.0
#: Largest environment budget of one kind (a handful already makes millions of states).
MAX_BUDGET = 100

#: What can stop a search before every reachable state is visited
#: (:attr:`ExploreResult.stopped`).
STOPPED: dict[str, str] = {
    "max_states": "the state limit (max_states) was reached",
    "max_seconds": "the time limit (max_seconds) was reached",
    "interrupted": "interrupted (KeyboardInterrupt / Ctrl-C)",
    "stop_at_first": "stopped at the first violation (stop_at_first)",
}


_BUDGET_NAMES = ("interrupts", "DEC expiries", "remote H_PRODs", "host ticks", "signals")

# ---- liveness bit masks -----------------------------------------------------------------
# Bit 0: core_can_leave.  Then 4 bits per vcpu v from bit 1 + 4v: raised EXTERNAL,
# raised DECREMENTER, raised EXTERNAL_LEVEL, prodded-and-ceded.
_CORE = 1
_GROUP = 0xF
_RAISED_BITS = 0x7
_PROD_BIT = 0x8
_IRQ_NAMES = ("external", "decrementer", "external (level)")
_VECTORS = (0x500, 0x900, 0x500)
assert BOOK3S_IRQPRIO_DECREMENTER == BOOK3S_IRQPRIO_EXTERNAL + 1  # packed below
_SHIFT_LEVEL = BOOK3S_IRQPRIO_EXTERNAL_LEVEL - 2

#: Edge labels for the liveness paths: a step of the hypervisor (any property may use
#: it) or guest code of vcpu ``w`` (label ``w``: only properties about ``w``).
_HYP = 255


def _trigger_mask(s: Machine) -> int:
    """The liveness "trigger" bits that hold in ``s``; each property's goal is that its
    trigger no longer holds."""
    m = 0
    vc = s.vcore
    if vc.vcore_state == VCORE_RUNNING and vc.entry_exit_count >= 0x100:
        m = _CORE
    sh = 1
    for u in s.vcpus:
        r = u.raised
        if r:
            m |= (((r >> BOOK3S_IRQPRIO_EXTERNAL) & 3) | ((r >> _SHIFT_LEVEL) & 4)) << sh
        if u.prodded and u.ceded:
            m |= _PROD_BIT << sh
        sh += 4
    return m


# ============================================================================================
# Results
# ============================================================================================

@dataclass
class Violation:
    """One violated property and its shortest counterexample.

    ``kind`` is "invariant" or "liveness"; ``trace`` is the counterexample as a Trace
    (``source="explore"``, time = step index, ``budget`` = the initial budget): replaying
    its steps (``trace.state_after(len(trace.steps))``) gives ``state``, the state in
    which the invariant fails, or from which the liveness goal can no longer be reached.
    ``depth`` is the number of steps.
    """

    name: str
    kind: str
    message: str
    trace: Trace
    depth: int
    state: Machine = field(repr=False)
    #: Liveness only: what the hypervisor can still do from ``state`` — a shortest run of
    #: allowed steps to a dead end, or (when every run goes on forever) a run into a
    #: cycle; ``continuation_end`` says which ("dead end", "cycle", or "" if none).
    continuation: list[Step] = field(default_factory=list, repr=False)
    continuation_end: str = ""

    def format(self, events: bool = True) -> str:
        """The violation and its counterexample, step by step, with kernel names."""
        lines = [f"{self.name} ({self.kind}): {self.message}",
                 f"counterexample: {self.depth} steps (shortest, breadth-first)"]
        by_time: dict[int, list[Event]] = {}
        for ev in self.trace.events:
            by_time.setdefault(ev.time, []).append(ev)
        width = len(str(self.depth + len(self.continuation)))
        for k, (_, st) in enumerate(self.trace.steps):
            lines.append(f"  {k + 1:>{width}}. {st.label()}")
            if events:
                lines.extend(_event_lines(by_time.get(k, ()), width))
        lines.append(f"  {'':>{width}}  => {self.name}: {self.message}")
        if self.continuation:
            lines.append(f"then, for example (ends in a {self.continuation_end}):")
            model = self.trace._model
            s = self.state
            for k, st in enumerate(self.continuation, start=self.depth + 1):
                s, evs = model.apply(s, st)
                lines.append(f"  {k:>{width}}. {st.label()}")
                if events:
                    lines.extend(_event_lines(evs, width))
            if self.continuation_end == "dead end":
                lines.append(f"  {'':>{width}}  (no step the property allows is enabled any "
                             "more)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Violation(name={self.name!r}, kind={self.kind!r}, depth={self.depth}, "
                f"message={self.message!r})")


@dataclass
class ExploreResult:
    """What :func:`explore` found.

    ``ok``: the exploration finished and no checked property is violated.
    ``finished``: every reachable state was visited.  ``stopped``: None when it was, else
    what stopped the search (a key of :data:`STOPPED`: "max_states", "max_seconds",
    "interrupted" or "stop_at_first"); the counts are then those reached.  ``states`` / ``transitions``: how
    many were visited / followed (states are orbit representatives under symmetry).
    ``properties``: the names checked.  ``violations``: name -> :class:`Violation`;
    ``violation``: the primary one (the shortest; ties in :data:`PROPERTIES` order).
    ``depth``: the longest shortest path explored (BFS level).  ``symmetry``: the classes
    of interchangeable vcpus the states were reduced over; ``thread_symmetry``: states
    that differ by which secondary thread holds what were merged too.  ``reduction``:
    private steps
    were not interleaved (partial-order reduction).  ``liveness_checked``: False
    when liveness properties were asked for but the search stopped early, so they could
    not be decided (a dead end that already violates one is still reported).
    """

    ok: bool
    finished: bool
    states: int
    transitions: int
    seconds: float
    properties: tuple[str, ...]
    violations: dict[str, Violation]
    config: Config
    workload: Workload
    budget: tuple[int, int, int, int, int]
    max_states: int
    depth: int = 0
    symmetry: tuple[tuple[int, ...], ...] = ()
    liveness_checked: bool = True
    reduction: bool = False
    thread_symmetry: bool = False
    max_seconds: float = DEFAULT_MAX_SECONDS
    stopped: str | None = None

    @property
    def violation(self) -> Violation | None:
        """The primary violation: the one with the shortest counterexample."""
        if not self.violations:
            return None
        order = list(PROPERTIES)
        return min(self.violations.values(), key=lambda v: (v.depth, order.index(v.name)))

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else float("inf")

    def verdict(self) -> str:
        """One line: holds / VIOLATED / not finished."""
        n = f"{self.states:,} states, {self.transitions:,} transitions, {self.seconds:.2f} s"
        if self.violations:
            v = self.violation
            more = len(self.violations) - 1
            also = f" (and {more} more: {', '.join(sorted(set(self.violations) - {v.name}))})" \
                if more else ""
            cut = (f"; search {self.stop_reason()} before it finished"
                   if self.stopped not in (None, "stop_at_first") else "")
            return (f"VIOLATED: {v.name} — {v.message}; counterexample of {v.depth} steps"
                    f"{also}{cut} [{n}]")
        if not self.finished:
            return (f"not finished: {self.states:,} states explored, "
                    f"{self.stop_reason()}; no violation found so far (not a proof) [{n}]")
        orbit = " and ".join(what for what, used in (("vcpus", self.symmetry),
                                                     ("secondary threads",
                                                      self.thread_symmetry)) if used)
        how = [what for what, used in ((f"one per orbit of interchangeable {orbit}", orbit),
                                       ("private steps not interleaved", self.reduction))
               if used]
        reps = f" ({'; '.join(how)})" if how else ""
        return (f"holds: all {len(self.properties)} properties hold in every reachable "
                f"state [{n}{reps}]")

    def stop_reason(self) -> str:
        """What stopped the search, in words ("" if it finished)."""
        if self.stopped == "max_states":
            return f"stopped by the state limit (max_states = {self.max_states:,})"
        if self.stopped == "max_seconds":
            return f"stopped by the time limit (max_seconds = {self.max_seconds:g} s)"
        if self.stopped == "interrupted":
            return "interrupted (Ctrl-C)"
        if self.stopped == "stop_at_first":
            return "stopped at the first violation (stop_at_first)"
        return "stopped early" if not self.finished else ""

    def describe(self) -> str:
        """The configuration, workload and budgets explored, in one paragraph."""
        c = self.config
        parts = [f"POWER7 SMT{c.threads_per_core}" if c.cpu == "POWER7" else c.cpu,
                 f"{c.vcpus} vcpu{'s' if c.vcpus > 1 else ''}", f"policy {c.policy}",
                 f"memory {c.memory}"]
        parts.append(c.kernel + (" (bugs " + ", ".join(sorted(c.bugs)) + ")"
                                 if c.bugs else ""))
        if c.ablations:
            parts.append("ablations " + ", ".join(sorted(c.ablations)))
        progs = "; ".join(f"vcpu {v}: {_program_text(p)}"
                          for v, p in enumerate(self.workload.programs))
        budget = ", ".join(f"{name} {b}"
                           for name, b in zip(_BUDGET_NAMES, self.budget, strict=True))
        sym = ""
        if self.symmetry:
            sym = "; symmetry over vcpus " + " ".join(
                "{" + ", ".join(map(str, c)) + "}" for c in self.symmetry)
        if self.thread_symmetry:
            sym += (f"; symmetry over secondary threads 1-{c.threads_per_core - 1} "
                    "(with the vcpus they run)")
        if self.reduction:
            sym += "; partial-order reduction of private steps"
        return f"{', '.join(parts)}\nworkload: {progs}\nbudget: {budget}{sym}"

    def format(self, events: bool = True) -> str:
        """Verdict, what was explored, and every counterexample step by step."""
        out = [self.verdict(), self.describe()]
        if not self.liveness_checked:
            out.append("liveness properties not checked: the exploration did not finish "
                       f"({self.stop_reason()})")
        v = self.violation
        if v is not None:
            out.append("")
            out.append(v.format(events))
            for other in self.violations.values():
                if other is not v:
                    out.append(f"also violated: {other.name} ({other.kind}, "
                               f"{other.depth} steps): {other.message}")
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"ExploreResult({self.verdict()})"

    def _repr_markdown_(self) -> str:
        v = self.violation
        head = f"**{self.verdict()}**\n\n```\n{self.describe()}\n```\n"
        if v is None:
            return head
        return head + f"\n```\n{v.format()}\n```\n"


def _event_lines(evs: Iterable[Event], width: int) -> list[str]:
    out = []
    for ev in evs:
        who = f"thread {ev.thread}" if ev.thread >= 0 else "host"
        vcpu = f", vcpu {ev.vcpu}" if ev.vcpu >= 0 else ""
        detail = f": {ev.detail}" if ev.detail else ""
        out.append(f"  {'':>{width}}     [{who}{vcpu}] {ev.kind}{detail}")
    return out


def _program_text(prog: tuple) -> str:
    if not prog:
        return "idle forever"
    ops = []
    for op in prog:
        if isinstance(op, Busy):
            ops.append("Busy")
        elif isinstance(op, Idle):
            ops.append("Idle(no timer)" if op.us is None else "Idle(timer)")
        elif isinstance(op, Prod):
            ops.append(f"Prod({op.target})")
        elif isinstance(op, Confer):
            ops.append(f"Confer({op.target})")
        else:
            ops.append(type(op).__name__)
    return ", ".join(ops) + ", then idle forever"


# ============================================================================================
# Symmetry
# ============================================================================================

def symmetry_classes(workload: Workload) -> tuple[tuple[int, ...], ...]:
    """Classes of interchangeable vcpus (size >= 2): equal programs that name no vcpu and
    that no program names.  See the module docstring for why this is sound."""
    named: set[int] = set()
    targeting: set[int] = set()
    for v, prog in enumerate(workload.programs):
        for op in prog:
            if isinstance(op, Prod) or (isinstance(op, Confer) and op.target != -1):
                named.add(op.target)
                targeting.add(v)
    groups: dict[tuple, list[int]] = {}
    for v, prog in enumerate(workload.programs):
        if v in named or v in targeting:
            continue
        groups.setdefault(prog, []).append(v)
    return tuple(tuple(g) for g in groups.values() if len(g) > 1)


def permute_state(s: Machine, p: tuple[int, ...],
                  threads: tuple[int, ...] | None = None) -> Machine:
    """The state with vcpu ``v`` renamed ``p[v]`` everywhere it appears, and, given
    ``threads``, hardware thread ``i`` moved to ``threads[i]`` (with the ptids and the
    ``napping_threads`` bits that name it; ``threads[0]`` must be 0)."""
    thr = s.threads
    vc = s.vcore
    vcpus = s.vcpus
    tasks = s.tasks
    stores = s.stores
    prodder = s.prodder
    if any(v != w for v, w in enumerate(p)):
        n = len(p)
        inv = [0] * n
        for v, w in enumerate(p):
            inv[w] = v
        vcpus = tuple(vcpus[inv[w]] for w in range(n))
        tasks = tuple(tasks[inv[w]] for w in range(n))
        thr = tuple(t if t.vcpu < 0 else t._replace(vcpu=p[t.vcpu]) for t in thr)
        vc = vc._replace(runnable=tuple(p[v] for v in vc.runnable),
                         wq=tuple(p[v] for v in vc.wq),
                         runner=vc.runner if vc.runner < 0 else p[vc.runner])
        if stores:
            # (A store to the vcore, vcpu -1, names no vcpu.)
            stores = tuple(st if st.vcpu < 0 else st._replace(vcpu=p[st.vcpu])
                           for st in stores)
        if prodder[1] >= 0:
            prodder = (prodder[0], p[prodder[1]])
        # hcall_arg names a Prod/Confer target, which every renumbering in use fixes.
    if threads is not None:
        moved = list(thr)
        for i, t in enumerate(thr):
            moved[threads[i]] = t
        thr = tuple(moved)
        vcpus = tuple(u if threads[u.ptid] == u.ptid else u._replace(ptid=threads[u.ptid])
                      for u in vcpus)
        nt = vc.napping_threads
        if nt:
            moved_nt = 0
            for i, j in enumerate(threads):
                moved_nt |= (nt >> i & 1) << j
            vc = vc._replace(napping_threads=moved_nt)
        if stores:
            stores = tuple(st if st.writer == PRODDER
                           else st._replace(writer=threads[st.writer]) for st in stores)
    return Machine(thr, vc, vcpus, tasks, stores, prodder, s.budget)


#: World steps whose index is a vcpu (the host tick's index is not).
_WORLD_VCPU_STEPS = frozenset({"decrementer", "KVM_INTERRUPT", "H_PROD (remote)", "signal"})


def permute_step(st: Step, p: tuple[int, ...], threads: tuple[int, ...] | None = None
                 ) -> Step:
    """The step ``st`` of a state, as the same step of the state renumbered by ``p``
    (and ``threads``, see :func:`permute_state`)."""
    a = st.actor
    if a in ("task", "timer", "prodder") or (a == "world" and st.name in _WORLD_VCPU_STEPS):
        return Step(a, p[st.index], st.name)
    if threads is not None and (a == "thread" or (a == "drain" and st.index != PRODDER)):
        return Step(a, threads[st.index], st.name)
    return st


class _Canon:
    """Orbit representatives under renumbering of interchangeable vcpus and, with
    ``thread_symmetry``, of the secondary hardware threads (see the module docstring).

    ``perms[k]`` is a pair ``(p, threads)``: vcpu renumbering and thread move.
    """

    def __init__(self, n: int, classes: tuple[tuple[int, ...], ...], n_threads: int,
                 thread_symmetry: bool) -> None:
        self.n = n
        self.classes = classes
        self.n_threads = n_threads
        self.thread_symmetry = thread_symmetry
        ident = (tuple(range(n)), tuple(range(n_threads)))
        self.perms: list[tuple[tuple[int, ...], tuple[int, ...]]] = [ident]
        self.perm_index: dict[tuple, int] = {ident: 0}

    def _signatures(self, s: Machine) -> list[tuple]:
        n = self.n
        run = [-1] * n
        for k, v in enumerate(s.vcore.runnable):
            run[v] = k
        wq = [-1] * n
        for k, v in enumerate(s.vcore.wq):
            wq[v] = k
        thr: list[tuple] = [()] * n
        for i, t in enumerate(s.threads):
            if t.vcpu >= 0:
                thr[t.vcpu] = (*thr[t.vcpu], i)
        sto: list[tuple] = [()] * n
        for k, st in enumerate(s.stores):
            if st.vcpu >= 0:  # a store to the vcore names no vcpu
                sto[st.vcpu] = (*sto[st.vcpu], (k, st.writer, st.field, st.value))
        runner = s.vcore.runner
        target = s.prodder[1]
        vcpus, tasks = s.vcpus, s.tasks
        return [(vcpus[v], tasks[v], run[v], wq[v], v == runner, thr[v], v == target,
                 sto[v]) for v in range(n)]

    def _thread_order(self, s: Machine) -> tuple[int, ...] | None:
        """The move of the secondaries that sorts threads 1 .. L-1 (L: the number of
        runnable vcpus; a late join goes to thread L) by what they hold, described
        without vcpu or thread numbers; None if they are sorted already."""
        vc = s.vcore
        last = min(len(vc.runnable), self.n_threads)
        if last < 3:
            return None
        threads = s.threads
        # The thread record without its vcpu number decides, unless two are equal.
        heads = [threads[j][:2] + threads[j][3:] for j in range(1, last)]
        if len(set(heads)) == len(heads):
            if all(a < b for a, b in pairwise(heads)):
                return None
            order = sorted(range(1, last), key=lambda j: heads[j - 1])
        else:
            vcpus, tasks = s.vcpus, s.tasks
            run = vc.runnable
            wq = vc.wq
            nt = vc.napping_threads
            target = s.prodder[1]
            keys = []
            for j in range(1, last):
                v = threads[j].vcpu
                # Then the napping bit, its vcpu's record minus the ptid, and where the
                # vcpu is (plain tuples, with no vcpu or thread number in them).
                if v >= 0:
                    u = vcpus[v]
                    held = (u[:3] + u[4:], tasks[v], run.index(v) if v in run else -1,
                            wq.index(v) if v in wq else -1, v == vc.runner, v == target)
                else:
                    held = ()
                keys.append((heads[j - 1], nt >> j & 1, held))
            order = sorted(range(1, last), key=lambda j: keys[j - 1])
            if order == list(range(1, last)):
                return None
        move = list(range(self.n_threads))
        for dst, src in zip(range(1, last), order, strict=True):
            move[src] = dst
        return tuple(move)

    def __call__(self, s: Machine) -> tuple[Machine, int]:
        """``(representative, k)``: the representative is ``permute_state(s, *perms[k])``.
        """
        move = self._thread_order(s) if self.thread_symmetry else None
        if move is not None:
            s = permute_state(s, tuple(range(self.n)), move)
        vcpus = s.vcpus
        sig = None
        p = None
        for cls in self.classes:
            # The vcpu record leads the signature: when it alone orders the class (no two
            # equal records), the rest of the signature need not be built.
            if len(cls) == 2:  # the common case, without sorting
                a, b = cls
                ra, rb = vcpus[a], vcpus[b]
                if ra < rb:
                    continue
                if rb < ra:
                    order = [b, a]
                else:
                    if sig is None:
                        sig = self._signatures(s)
                    if sig[a] <= sig[b]:
                        continue
                    order = [b, a]
            else:
                order = sorted(cls, key=vcpus.__getitem__)
                if any(vcpus[a] == vcpus[b] for a, b in pairwise(order)):
                    if sig is None:
                        sig = self._signatures(s)
                    order = sorted(cls, key=sig.__getitem__)
            if order != list(cls):
                if p is None:
                    p = list(range(self.n))
                for dst, src in zip(cls, order, strict=True):
                    p[src] = dst
        if p is None and move is None:
            return s, 0
        tp = tuple(range(self.n)) if p is None else tuple(p)
        key = (tp, tuple(range(self.n_threads)) if move is None else move)
        k = self.perm_index.get(key)
        if k is None:
            k = len(self.perms)
            self.perms.append(key)
            self.perm_index[key] = k
        return (s if p is None else permute_state(s, tp)), k


def _compose(a: tuple, b: tuple) -> tuple:
    """``a ∘ b`` for a pair of renumberings (vcpus, threads): first ``b``, then ``a``."""
    return tuple(tuple(x[y[v]] for v in range(len(y))) for x, y in zip(a, b, strict=True))


def _inverse(pair: tuple) -> tuple:
    out = []
    for p in pair:
        inv = [0] * len(p)
        for v, w in enumerate(p):
            inv[w] = v
        out.append(tuple(inv))
    return tuple(out)


def _remap_mask(mask: int, p: tuple[int, ...]) -> int:
    """Liveness bits of a representative ``permute_state(t, p)``, renumbered back to
    ``t``'s vcpus (vcpu ``v`` of ``t`` is vcpu ``p[v]`` of the representative)."""
    out = mask & _CORE
    for v, w in enumerate(p):
        out |= ((mask >> (1 + 4 * w)) & _GROUP) << (1 + 4 * v)
    return out


# ============================================================================================
# Thread steps, remembered
# ============================================================================================

class _ThreadSteps:
    """``Model.apply`` for the explorer, remembering what hardware-thread steps do.

    Under sequentially consistent memory a hardware thread's step reads only its own
    paca (:class:`~kvmcede.state.Thread`), its vcpu and the vcore (besides the fixed
    configuration and workload) — except the first exiter's poke, which reads the other
    threads and is never remembered.  So the step's effect is a function of those three
    records: the first time a combination is seen, the model's ``apply`` runs and, if the
    step wrote nothing else, the three new records are kept; later the new state is
    assembled from them.  (The same model, only not re-run: a test compares the two on
    every transition of several graphs.)
    """

    def __init__(self, model: Model) -> None:
        self.apply = model.apply
        self.memo: dict[tuple, tuple | None] = {}
        self.on = not stores_possible(model.config)

    def __call__(self, s: Machine, st: Step) -> Machine:
        if st.actor != "thread" or not self.on:
            return self.apply(s, st)[0]
        i = st.index
        threads = s.threads
        t = threads[i]
        if t.loc == "hdec_soon.poke":
            return self.apply(s, st)[0]
        v = t.vcpu
        vcpus = s.vcpus
        u = vcpus[v] if v >= 0 else None
        key = (st, t, u, s.vcore)
        memo = self.memo
        hit = memo.get(key, False)
        if hit is False:
            r = self.apply(s, st)[0]
            rt, rv = r.threads, r.vcpus
            if (r.tasks is s.tasks and r.stores is s.stores and r.prodder is s.prodder
                    and r.budget is s.budget and rt[i].vcpu == v
                    and all(a is b for k, (a, b) in enumerate(zip(rt, threads)) if k != i)
                    and all(a is b for k, (a, b) in enumerate(zip(rv, vcpus)) if k != v)):
                memo[key] = (rt[i], rv[v] if v >= 0 else None, r.vcore)
            else:
                memo[key] = None
            return r
        if hit is None:
            return self.apply(s, st)[0]
        nt, nu, nvc = hit
        return Machine(threads[:i] + (nt,) + threads[i + 1:], nvc,
                       vcpus if v < 0 else vcpus[:v] + (nu,) + vcpus[v + 1:], s.tasks,
                       s.stores, s.prodder, s.budget)


# ============================================================================================
# Dead values
# ============================================================================================

#: Task locations where a task's ``woken`` flag is read (its wait-queue wake-up is still
#: to be consumed).  Everywhere else it is dead: no step reads it there, and the task
#: reaches these locations only by steps that set it to False.
TASK_WOKEN_LIVE = frozenset({"kvmppc_wait_for_exec", "kvmppc_vcore_blocked",
                             "kvmppc_vcore_blocked.schedule"})


#: Thread locations from which the thread reaches the guest only through
#: ``kvmppc_hv_entry``, which loads the NV registers and the LPCR (clearing
#: ``LPCR_MER``) from the vcpu: the register tags and ``mer`` are dead there.
_REGISTERS_DEAD = frozenset({"secondary_nap", "kvmppc_hv_entry", "secondary_too_late"})


class _DeadValues:
    """Clear the values no step will read before overwriting them.

    Two states that differ only in such values behave alike step for step: the same
    steps are enabled, each leads to states that again differ only in dead values, and
    every invariant and liveness trigger says the same of both (the values are in none of
    them).  So the explorer stores one of them (with the value cleared), and the graph it
    explores is the same up to that renaming: verdicts and the lengths of shortest
    counterexamples are unchanged.  The values:

    * a task's ``woken`` outside :data:`TASK_WOKEN_LIVE` (a wake-up that arrives while
      the task is not waiting, e.g. the vcore hand-over waking a task that is still
      running, is overwritten when the task next prepares to wait);
    * a vcpu's ``cede_result == "plain"`` ("the last H_CEDE returned with nothing to
      do") while its current op is an untimed ``Idle`` and its DEC is off: the only
      reader that tells "plain" from "" is H_CEDE's "first cede of this idle period:
      program DEC", and for an untimed idle with DEC off that programs DEC off, which
      it already is;
    * what a hardware thread's paca and registers still say about its last vcpu while
      the thread is out of the guest for good — a secondary offline in
      ``secondary_nap`` (``cpu_start`` clear) or thread 0 running host code: its
      ``vcpu``, NV register tags and ``LPCR_MER`` (``kvmppc_start_thread`` sets the vcpu
      and ``kvmppc_hv_entry`` loads the registers and LPCR before anything reads them),
      and the register tags and ``LPCR_MER`` of a thread on its way to
      ``kvmppc_hv_entry`` or back to ``secondary_nap`` (:data:`_REGISTERS_DEAD`);
    * the ``ptid`` of a vcpu that no such thread runs: ``kvmppc_run_core`` and the late
      join assign it before it is used (``kvmppc_remove_runnable``'s renumbering of it
      only feeds the next assignment's overwrite).
    """

    def __init__(self, workload: Workload) -> None:
        # Per vcpu: the pcs at which its op is an untimed Idle, and from which pc on it
        # idles forever (untimed) past the end of its program.
        self.untimed = []
        for prog in workload.programs:
            pcs = frozenset(k for k, op in enumerate(prog)
                            if isinstance(op, Idle) and op.us is None)
            self.untimed.append((pcs, len(prog)))

    def __call__(self, s: Machine) -> Machine:
        tasks = s.tasks
        for k in tasks:
            if k.woken and k.loc not in TASK_WOKEN_LIVE:
                tasks = tuple(k._replace(woken=False)
                              if k.woken and k.loc not in TASK_WOKEN_LIVE else k
                              for k in tasks)
                break
        vcpus = s.vcpus
        untimed = self.untimed
        for v, u in enumerate(vcpus):
            if u.cede_result == "plain" and u.dec == DEC_OFF:
                pcs, end = untimed[v]
                if u.pc >= end or u.pc in pcs:
                    if vcpus is s.vcpus:
                        vcpus = list(vcpus)
                    vcpus[v] = u._replace(cede_result="")
        threads = s.threads
        hosted = 0  # bit v: vcpu v is on a thread that is in the guest or on its way
        for i, t in enumerate(threads):
            loc = t.loc
            if loc == "host" if i == 0 else (loc == "secondary_nap" and not t.cpu_start):
                if t.vcpu != -1 or t.gprs or t.fprs or t.mer:
                    if threads is s.threads:
                        threads = list(threads)
                    threads[i] = t._replace(vcpu=-1, gprs=0, fprs=0, mer=False)
                continue
            if loc in _REGISTERS_DEAD and (t.gprs or t.fprs or t.mer):
                if threads is s.threads:
                    threads = list(threads)
                threads[i] = t._replace(gprs=0, fprs=0, mer=False)
            if t.vcpu >= 0:
                hosted |= 1 << t.vcpu
        for v, u in enumerate(vcpus):
            if u.ptid and not hosted >> v & 1:
                if vcpus is s.vcpus:
                    vcpus = list(vcpus)
                vcpus[v] = u._replace(ptid=0)
        if threads is s.threads and vcpus is s.vcpus and tasks is s.tasks:
            return s
        return Machine(tuple(threads), s.vcore, tuple(vcpus), tasks, s.stores, s.prodder,
                       s.budget)


# ============================================================================================
# Partial-order reduction: private steps
# ============================================================================================

#: The thread locations whose step can be private, and why (see :func:`private_step`).
#: Every argument rests on facts of the protocol that hold while the stepping thread i
#: stays where it is:
#:
#: * while thread i has entered the guest and not yet counted itself out in
#:   ``hdec_soon``, the exit count stays below the entry count, so the primary cannot
#:   switch back to the host, the runner cannot leave ``kvmppc_run_core`` and no host
#:   code touches the vcore's vcpus (nor restarts threads);
#: * once the exit count is non-zero it stays non-zero (and the entry count stays put)
#:   until the runner starts the next run, which waits for every woken secondary to be
#:   back in ``secondary_nap`` and for the primary to be in the host: so for as long as
#:   thread i is anywhere else, "an exit is in progress" cannot change;
#: * once ``in_guest`` is 0 it stays 0 until the next run, for the same reason;
#: * once HDEC has expired (``hdec_expired``) it stays so until ``switch_to_host``, and
#:   every thread in the guest can then only take the HDEC interrupt: nobody can cede
#:   any more, so nobody can reach ``kvmppc_h_cede``'s ``napping_threads`` decision.
#:
#: The first four entries hold whatever the configuration; the others ("exit phase")
#: are used with bugs off (a historical bug breaks the facts above).
PRIVATE_STEPS: dict[str, str] = {
    "secondary_nap": (
        "a secondary the host has started (IPI and cpu_start set, i > 0) acks the IPI: only "
        "poke could touch its paca meanwhile, and poke IPIs napping_threads, whose bit i "
        "is clear and can only be set by thread i itself; the runner waits for it in "
        "nap_count, so the vcore keeps running"),
    "kvmppc_h_cede.sync_prodded": (
        "the prodded test finds prodded = 0 and no one can set it (no remote H_PROD left "
        "in the budget, no Prod in any program, the remote prodder idle): it sets trap = 0 "
        "and r3 = H_SUCCESS, which only the host reads after the core has left"),
    "kvmppc_h_cede.nap": (
        "saving the NV GPRs and FPRs into the vcpu and napping touch the thread's own "
        "registers and vcpu only; an IPI or DEC that comes first just wakes it afterwards"),
    "kvmppc_cede_reentry": (
        "delivering at most one interrupt and clearing ceded reads the vcpu's pending "
        "interrupts and DEC, which nothing can change meanwhile when no device interrupt "
        "is left in the budget and the vcpu's DEC cannot expire (not ARMED, or no DEC "
        "expiry left), and no one can test ceded (no prod source)"),
    # ---- the exit phase (bugs off) ----
    "kvmppc_hv_entry": (
        "with an exit in progress the entry goes to secondary_too_late without touching "
        "entry_exit_count: it reads only 'exit count != 0', which cannot change while the "
        "thread has not napped again"),
    "kvm_end_cede.check": (
        "with an exit in progress the woken napper joins the exit (hdec_soon): it reads "
        "only 'exit count != 0', which cannot change while the thread is counted in"),
    "kvmppc_h_cede.recheck": (
        "with an exit in progress the re-check sends the thread to kvm_end_cede (and "
        "under ablation no_exit_recheck it reads nothing): 'exit count != 0' cannot change "
        "while the thread is counted in"),
    "hdec_soon": (
        "a thread that is not the first exiter adds 0x100 to entry_exit_count: the other "
        "exit increments commute with it (none of them is the first either), everyone "
        "else only tests 'exit count != 0', which is already true, and the primary's wait "
        "for exit count == entry count cannot end before this thread is counted out; the "
        "trap and registers it saves into its vcpu are read by the host only after the "
        "core has left"),
    "hdec_soon.poke": (
        "the first exiter's poke when HDEC has already expired and no other thread has "
        "its napping_threads bit set or can set one (none is between the H_CEDE prodded "
        "test and the napping_threads decision; the guests can only take the HDEC): it "
        "writes nothing and IPIs nobody"),
    "kvm_end_cede.clear": (
        "clearing the thread's own napping_threads bit during an exit, with HDEC expired "
        "and no other thread at the poke, the prodded test or the napping_threads "
        "decision: the only other accesses to napping_threads left are other threads "
        "clearing their own bits, which commute"),
    "nap": (
        "a napper's wake-up (kvm_start_guest -> kvm_end_cede: ack the IPI, reload the "
        "registers, clear its napping_threads bit) in the same exit phase as "
        "kvm_end_cede.clear; on thread 0 also with no source of a host kick (which would "
        "IPI thread 0)"),
    "guest": (
        "taking the hypervisor interrupt (kvmppc_interrupt) when an IPI is already "
        "presented (the trap is 0x500 whatever happens), or when HDEC has expired and "
        "no one can still send this thread an IPI (no poke pending; no host kick on "
        "thread 0): the thread only picks its trap and goes to hdec_soon"),
    "hdec_soon.wait_in_guest": (
        "a secondary going back to secondary_nap once in_guest = 0 (which stays 0 until "
        "it has napped): nap_count++ commutes with the other secondaries' increments, "
        "and the runner waits for the last of them"),
    "secondary_too_late": (
        "as hdec_soon.wait_in_guest, for a secondary that arrived after the exit began"),
    "hdec_soon.wait_exits": (
        "the primary's switch_to_host once every entered thread is out, with no poke "
        "pending (a late poke would write HDEC), no source of a host kick or signal (they "
        "IPI thread 0 or read where it is) and no host tick that the cleared HDEC could "
        "still allow: only the runner, still waiting for it, reads what it writes"),
}

#: Where each thread location lies on the way from a start to the next ``secondary_nap``
#: (or, for thread 0, to the host).  Every private step moves its thread to a later
#: location, except those that end in ``secondary_nap``; and there the thread's next
#: private step (the start) needs the IPI and ``cpu_start`` that only the host's
#: ``kvmppc_start_thread`` (a task step, never private) sets.  So no cycle of the state
#: graph consists of private steps alone, and no other actor is postponed for ever.
PRIVATE_ORDER: dict[str, int] = {loc: k for k, loc in enumerate((
    "secondary_nap", "kvmppc_hv_entry", "kvmppc_cede_reentry", "guest",
    "kvmppc_h_cede.sync_prodded", "kvmppc_h_cede.napping_threads", "kvmppc_h_cede.recheck",
    "kvmppc_h_cede.nap", "nap", "kvm_end_cede.clear", "kvm_end_cede.check", "hdec_soon",
    "hdec_soon.poke", "hdec_soon.wait_in_guest", "secondary_too_late",
    "hdec_soon.wait_exits", "host"))}

_EXIT_PHASE_BLOCKERS = frozenset({"hdec_soon.poke", "kvmppc_h_cede.sync_prodded",
                                  "kvmppc_h_cede.napping_threads"})
_CEDE_DECIDING = frozenset({"kvmppc_h_cede.sync_prodded", "kvmppc_h_cede.napping_threads"})
_POKE = frozenset({"hdec_soon.poke"})


def _another_at(threads: tuple, i: int, locs: frozenset) -> bool:
    """Some thread other than ``i`` is at one of ``locs``."""
    return any(j != i and t.loc in locs for j, t in enumerate(threads))


def private_step(s: Machine, steps: list[Step], *, prods_possible: bool,
                 config: Config) -> Step | None:
    """The first of ``steps`` (the enabled steps of ``s``) that is private in ``s``, or
    None.  ``prods_possible``: some program has a ``Prod`` op (H_PROD by a vcpu's task).
    ``config``: the configuration explored; the exit-phase private steps are used only
    with its bugs off.

    Only for sequentially consistent memory on POWER7 (the caller checks); the reasons are
    at :data:`PRIVATE_STEPS`.  A private step is a hypervisor step, so it serves every
    liveness property, and private steps alone never form a cycle
    (:data:`PRIVATE_ORDER`).
    """
    if s.stores:
        # Only under ablation weak_cede_barrier (memory "sc"): a thread's
        # napping_threads update may still be buffered.  The arguments below assume
        # none is; from a state without one, another actor's single step can only buffer
        # a napping_threads update, which no private step reads (see stores_possible).
        return None
    budget = s.budget
    vc = s.vcore
    no_prod = not prods_possible and not budget[B_PROD] and not s.prodder[0]
    # Both shipped bugs act only on a prodded vcpu: without any prod to come, or one
    # still set, they are inert and the exit-phase facts hold.
    exit_phase = not config.bugs or (no_prod and not any(u.prodded for u in s.vcpus))
    exiting = vc.entry_exit_count >= 0x100
    kick_free = None  # computed on first use
    threads = s.threads
    for st in steps:
        if st.actor != "thread":
            return None  # threads come first in Model.enabled order
        i = st.index
        t = threads[i]
        loc = t.loc
        if loc == "secondary_nap":
            if i and not vc.napping_threads >> i & 1:
                return st
        elif loc == "kvmppc_h_cede.nap":
            return st
        elif loc == "kvmppc_h_cede.sync_prodded":
            if no_prod and not s.vcpus[t.vcpu].prodded:
                return st
        elif loc == "kvmppc_cede_reentry":
            if (no_prod and not budget[B_IRQ]
                    and not (budget[B_DEC] and s.vcpus[t.vcpu].dec == DEC_ARMED)):
                return st
        elif not exit_phase:
            continue
        elif loc in ("hdec_soon.wait_in_guest", "secondary_too_late"):
            return st
        elif loc in ("kvmppc_hv_entry", "kvm_end_cede.check", "hdec_soon"):
            if exiting:
                return st
        elif loc == "kvmppc_h_cede.recheck":
            if exiting or "no_exit_recheck" in config.ablations:
                return st
        elif loc in ("kvm_end_cede.clear", "nap", "hdec_soon.poke"):
            if not (exiting and vc.hdec_expired):
                continue
            if _another_at(threads, i, _CEDE_DECIDING if loc == "hdec_soon.poke"
                           else _EXIT_PHASE_BLOCKERS):
                continue
            if loc == "hdec_soon.poke":
                if not vc.napping_threads & ~(1 << i):
                    return st
            elif loc == "kvm_end_cede.clear" or i:
                return st
            else:
                if kick_free is None:
                    kick_free = _kick_free(s, no_prod)
                if kick_free:
                    return st
        elif loc == "guest":
            if st.name != "kvmppc_interrupt":
                continue
            if t.ipi:
                return st
            if vc.hdec_expired and not _another_at(threads, i, _POKE):
                if i:
                    return st
                if kick_free is None:
                    kick_free = _kick_free(s, no_prod)
                if kick_free:
                    return st
        elif loc == "hdec_soon.wait_exits":
            if (not budget[B_HDEC] or vc.hdec_expired) and not _another_at(threads, i, _POKE):
                if kick_free is None:
                    kick_free = _kick_free(s, no_prod)
                if kick_free:
                    return st
    return None


def stores_possible(config: Config) -> bool:
    """Whether stores can sit in store buffers in ``config``: memory mode
    ``"store_buffer"``, or ablation ``weak_cede_barrier`` (whose napping_threads update
    waits in a buffer even under sequential consistency).  Then the explorer does not
    remember thread steps (their effect depends on the buffers) nor move secondary
    threads (a buffered ``napping_threads`` value holds thread numbers); the
    partial-order reduction is used only with ``memory="sc"``, and :func:`private_step`
    picks no step in a state with a buffered store."""
    return config.memory == "store_buffer" or "weak_cede_barrier" in config.ablations


def _kick_free(s: Machine, no_prod: bool) -> bool:
    """No host kick (it IPIs thread 0) and no signal can happen from ``s`` on: no device
    interrupt or signal in the budget, no prod source, no DEC hrtimer armed."""
    b = s.budget
    return (no_prod and not b[B_IRQ] and not b[B_SIGNAL]
            and not any(u.timer_running for u in s.vcpus))


# ============================================================================================
# Workloads and ready-made explorations
# ============================================================================================

def default_workload(config: Config) -> Workload:
    """Small per-vcpu programs that exercise cede, wake-up and exit.

    vcpu 0 computes, idles with its decrementer armed (so it can nap and be woken by its
    DEC, or be the last one out and wait in the host on its hrtimer), then makes an MMIO
    access (a whole-core exit while others may be napping); every other vcpu idles
    from the start with no timer (woken only by an interrupt, a prod, or a core exit).
    After its program every vcpu idles forever.
    """
    config.validate()
    first = (Busy(50.0), Idle(20.0), Mmio())
    return Workload((first,) + ((),) * (config.vcpus - 1), name="default",
                    notes="vcpu 0: busy, timed idle, MMIO; the others idle without a timer")


_NO_BUDGET = {"interrupts": 0, "dec_expiries": 0, "prods": 0, "host_ticks": 0, "signals": 0}


#: The kernel the ablation setups run: both shipped bugs fixed, so that each
#: counterexample shows only what its ablation removed.
_FIXED = frozenset(CHANGES)


def _two_vcpus(**cfg: object) -> Config:
    cfg.setdefault("changes", _FIXED)
    return Config(threads_per_core=2, vcpus=2, **cfg)


def _setup_protocol() -> tuple[Config, Workload, dict]:
    # Linux 3.4 as shipped: the default program has no prod, so the shipped bugs (both
    # about prods) cannot act; the bug setups below show them.
    cfg = Config(threads_per_core=4, vcpus=2)
    return cfg, default_workload(cfg), {**_NO_BUDGET, "dec_expiries": 1}


def _busy_then_mmio_with_napper(ablation: str, notes: str) -> tuple[Config, Workload, dict]:
    cfg = _two_vcpus(ablations={ablation})
    wl = Workload(((Busy(1.0), Mmio()), ()), name=ablation, notes=notes)
    return cfg, wl, dict(_NO_BUDGET)


def _setup_no_ipi_on_exit() -> tuple[Config, Workload, dict]:
    return _busy_then_mmio_with_napper(
        "no_ipi_on_exit", "vcpu 1 naps with no timer while vcpu 0 takes an MMIO exit: "
        "without the IPI nothing wakes the napper and the primary waits forever")


def _setup_no_exit_recheck() -> tuple[Config, Workload, dict]:
    return _busy_then_mmio_with_napper(
        "no_exit_recheck", "vcpu 1 sets its napping bit just after vcpu 0's exit read "
        "napping_threads: without the re-check it naps un-IPI'd")


def _setup_no_prodded_check() -> tuple[Config, Workload, dict]:
    cfg = _two_vcpus(ablations={"no_prodded_check"})
    wl = Workload(((), ()), name="no_prodded_check",
                  notes="a remote H_PROD reaches a vcpu before it cedes; without the "
                        "prodded test it naps anyway, and the prod is lost")
    return cfg, wl, {**_NO_BUDGET, "prods": 1}


def _setup_no_nv_save() -> tuple[Config, Workload, dict]:
    cfg = _two_vcpus(ablations={"no_nv_save"})
    wl = Workload(((Busy(1.0),), (Busy(1.0), Idle(5.0), Busy(1.0))), name="no_nv_save",
                  notes="vcpu 1 computes, naps with its DEC armed and wakes on it; nap "
                        "lost the NV registers it had written")
    return cfg, wl, {**_NO_BUDGET, "dec_expiries": 1}


def _setup_no_cede_sync() -> tuple[Config, Workload, dict]:
    cfg = _two_vcpus(ablations={"no_cede_sync"}, memory="store_buffer")
    wl = Workload(((), ()), name="no_cede_sync",
                  notes="store-buffer memory: a vcpu's ceded = 1 and the remote prodder's "
                        "prodded = 1 both sit in store buffers while each side reads the "
                        "other's flag (Dekker without the sync)")
    return cfg, wl, {**_NO_BUDGET, "prods": 1}


def _setup_weak_cede_barrier() -> tuple[Config, Workload, dict]:
    # Sequentially consistent memory but for this one store: the napping bit can wait in
    # the store buffer past the re-read of the exit count.  (Under memory "store_buffer"
    # Linux 3.4's lwsync gives the same counterexample: lwsync does not order a store
    # before a later load; see tests/test_memory_model.py.)
    return _busy_then_mmio_with_napper(
        "weak_cede_barrier", "vcpu 1 sets its napping bit, but the store is still in its "
        "store buffer when it re-reads entry_exit_count (0) and when vcpu 0's exit reads "
        "napping_threads: nobody IPIs the napper and the primary waits for ever")


def _setup_prodded_branch() -> tuple[Config, Workload, dict]:
    cfg = _two_vcpus(changes={BUGS["hprod_wakes_caller"][0]})  # only this bug left
    wl = Workload(((), ()), name="prodded_branch",
                  notes="a prodded vcpu's H_CEDE branches into the nap sequence: it naps "
                        "with no napping bit, no paca napping and no saved registers")
    return cfg, wl, {**_NO_BUDGET, "prods": 1}


def _setup_hprod_wakes_caller() -> tuple[Config, Workload, dict]:
    cfg = Config(threads_per_core=1, vcpus=1, changes={BUGS["prodded_branch"][0]})
    wl = Workload(((),), name="hprod_wakes_caller",
                  notes="the only vcpu idles, the vcore sleeps; a remote H_PROD sets "
                        "prodded but wakes nobody")
    return cfg, wl, {**_NO_BUDGET, "prods": 1}


#: name -> (builder, the property its counterexample violates, one line on what it shows)
SETUPS: dict[str, tuple[Callable[[], tuple[Config, Workload, dict]], str | None, str]] = {
    "protocol": (_setup_protocol, None,
                 "the real protocol (Linux 3.4 as shipped, no ablation; its bugs need a "
                 "prod, which this program has not): every property holds"),
    "no_ipi_on_exit": (_setup_no_ipi_on_exit, "core_can_leave", ABLATIONS["no_ipi_on_exit"]),
    "no_exit_recheck": (_setup_no_exit_recheck, "core_can_leave",
                        ABLATIONS["no_exit_recheck"]),
    "no_prodded_check": (_setup_no_prodded_check, "prod_not_lost",
                         ABLATIONS["no_prodded_check"]),
    "no_nv_save": (_setup_no_nv_save, "nv_registers_preserved", ABLATIONS["no_nv_save"]),
    "no_cede_sync": (_setup_no_cede_sync, "prod_not_lost", ABLATIONS["no_cede_sync"]),
    "weak_cede_barrier": (_setup_weak_cede_barrier, "core_can_leave",
                          ABLATIONS["weak_cede_barrier"]),
    "prodded_branch": (_setup_prodded_branch, "nap_is_flagged", BUGS["prodded_branch"][1]),
    "hprod_wakes_caller": (_setup_hprod_wakes_caller, "prod_not_lost",
                           BUGS["hprod_wakes_caller"][1]),
}


def setup(name: str) -> tuple[Config, Workload, dict]:
    """A ready-made exploration: ``cfg, wl, kw = setup(name)``; ``explore(cfg, wl, **kw)``.

    ``"protocol"`` is the real protocol; every name in :data:`~kvmcede.ABLATIONS` and
    :data:`~kvmcede.BUGS` gives the smallest configuration, workload and budgets in which
    that change shows its counterexample (the property it breaks is
    ``SETUPS[name][1]``).
    """
    if name not in SETUPS:
        raise ValueError(f"name must be one of {sorted(SETUPS)}, got {name!r}")
    cfg, wl, kw = SETUPS[name][0]()
    return cfg, wl, dict(kw)


# ============================================================================================
# The explorer
# ============================================================================================

def _check_budget(name: str, value: object) -> int:
    if (not isinstance(value, int) or isinstance(value, bool)
            or not 0 <= value <= MAX_BUDGET):
        raise ValueError(f"{name} must be an integer from 0 to {MAX_BUDGET}, got {value!r}")
    return value


def _check_max_states(value: object) -> int:
    if (not isinstance(value, int) or isinstance(value, bool)
            or not 1 <= value <= MAX_STATES_LIMIT):
        raise ValueError(f"max_states must be an integer from 1 to {MAX_STATES_LIMIT:,} "
                         f"(about 4 GB of states), got {value!r}")
    return value


def _check_max_seconds(value: object) -> float:
    if (not isinstance(value, int | float) or isinstance(value, bool)
            or not 0 < value <= MAX_SECONDS_LIMIT):  # (also rejects NaN)
        raise ValueError(f"max_seconds must be a number of seconds > 0 and <= "
                         f"{MAX_SECONDS_LIMIT:g}, got {value!r}")
    return float(value)


def _check_workload_for_explorer(workload: Workload) -> None:
    """The explorer models outside events with budgets, not times: say so, rather than
    silently ignoring a workload's timed events or start times."""
    if workload.events:
        kinds = sorted({type(ev).__name__ for ev in workload.events})
        raise ValueError(
            f"workload.events: the explorer ignores time, so it cannot replay timed events "
            f"({', '.join(kinds)}); give it an environment budget instead: interrupts= for "
            "Interrupt, prods= for RemoteProd, signals= for Signal (each event may then "
            "happen at any moment), and a workload without events")
    if workload.start_us is not None and any(t != 0 for t in workload.start_us):
        raise ValueError(
            f"workload.start_us: the explorer ignores time and starts every vcpu's task "
            f"at once, trying every order of their first steps; it cannot honour start "
            f"times {tuple(workload.start_us)!r} (use start_us=None)")


def _timed_idles(workload: Workload) -> int:
    return sum(1 for prog in workload.programs for op in prog
               if isinstance(op, Idle) and op.us is not None)


class _Progress:
    """Progress while exploring: silent for the first second, then a tqdm bar (a widget
    in notebooks) or plain lines on stderr; or a callable ``f(states, queue, transitions)``
    called about every 0.2 s and once at the end.

    (Never test the bar's truth value: a ``tqdm(total=None)`` has no length, and
    ``bool()`` of it raises TypeError; ``self.bar`` is None until a bar is made.)
    """

    def __init__(self, progress: object, max_states: int) -> None:
        self.mode = "off" if progress is False else (
            "call" if callable(progress) else "auto")
        self.fn = progress if callable(progress) else None
        self.max_states = max_states
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.bar: object | None = None  # a tqdm bar, once one is made
        self.lines = False  # no tqdm: plain lines on stderr instead
        self.shown = 0

    def update(self, states: int, queue: int, transitions: int) -> None:
        now = time.perf_counter()
        if self.mode == "call":
            if now - self.last >= 0.2:
                self.last = now
                self.fn(states, queue, transitions)
            return
        if self.mode == "off" or now - self.t0 < 1.0:
            return
        if self.bar is None and not self.lines:
            try:
                from tqdm.auto import tqdm
                # A counter, not a percentage: the state limit is no estimate of the
                # graph's size.
                self.bar = tqdm(total=None, unit=" states", desc="explore",
                                leave=False, dynamic_ncols=True)
            except Exception:  # tqdm missing or unusable: plain lines
                self.lines = True
        if self.bar is not None:
            self.bar.update(states - self.shown)
            self.shown = states
            self.bar.set_postfix(queue=queue, refresh=False)
        elif now - self.last >= 1.0:
            self.last = now
            self.shown = states
            print(f"explore: {states:,} states, queue {queue:,}, {transitions:,} transitions, "
                  f"{now - self.t0:.1f} s", file=sys.stderr, flush=True)

    def close(self, states: int, queue: int, transitions: int) -> None:
        """End of the exploration: a callable gets the final counts once more."""
        if self.mode == "call":
            self.fn(states, queue, transitions)
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def explore(config: Config, workload: Workload | None = None, *, interrupts: int = 1,
            dec_expiries: int | None = None, prods: int = 0, host_ticks: int = 0,
            signals: int = 0, properties: Iterable[str] | None = None,
            max_states: int = DEFAULT_MAX_STATES,
            max_seconds: float = DEFAULT_MAX_SECONDS, progress: object = None,
            symmetry: bool = True, reduction: bool = False,
            stop_at_first: bool = False) -> ExploreResult:
    """Explore every interleaving of ``config`` running ``workload`` breadth-first.

    The initial state is ``Model(config, workload).initial(budget=(interrupts,
    dec_expiries, prods, host_ticks, signals))``: every environment event may happen at any
    moment, each kind at most that many times.  ``dec_expiries=None`` allows as many DEC
    expiries as the programs have timed ``Idle`` ops (each can expire once).
    ``workload=None`` uses :func:`default_workload`.

    ``properties``: names from :data:`PROPERTIES` to check (default: all).  Invariants are
    checked on every transition; liveness properties (what the hypervisor can do by
    itself, see the module docstring) once the graph is complete, so not when the search
    stops early — except that a dead end (a state where a property's trigger holds and no
    step it allows is enabled) is reported as soon as it is found.  Counterexamples are
    shortest: for an invariant, a shortest run to a transition that breaks it; for a
    liveness property, a shortest run to a state from which its goal is unreachable.

    ``max_states`` (1 .. :data:`MAX_STATES_LIMIT`, default 2,000,000, about 1.6 GB) and
    ``max_seconds`` (wall-clock seconds, > 0 and at most :data:`MAX_SECONDS_LIMIT`, default
    600): stop cleanly when either is reached; a KeyboardInterrupt (Ctrl-C) during the
    search stops it the same way.  The result then has ``finished=False``,
    ``stopped`` = "max_states", "max_seconds" or "interrupted", the counts reached, any
    violation already found, and the verdict "not finished: ...".  ``stop_at_first``: stop at the first
    violation (then a liveness violation comes from the first dead end, which need not be
    the shortest).  ``symmetry``: store one state per orbit of interchangeable vcpus (see
    the module docstring).  ``reduction``: follow only the private step where one is
    enabled (partial-order reduction, see the module docstring and
    :data:`PRIVATE_STEPS`; used only with ``memory="sc"`` on POWER7).  ``progress``:
    None/True shows states so far and queue size
    when the run takes more than a second (``tqdm.auto``: a bar in a terminal, a widget in
    a notebook; plain stderr lines without tqdm), False is silent, a callable gets
    ``(states, queue, transitions)`` about five times a second.

    The cost is that of the model's steps: roughly 10,000-20,000 states per second.  Two
    vcpus with one or two environment events take under a second; three vcpus on SMT4
    with :func:`default_workload` and one DEC expiry take about 12 s (184,699 states), or
    about 5 s with ``reduction=True`` (73,902 states); four such vcpus reach 1.3 million
    states even reduced (a minute or two), and more events many millions (use
    ``max_states``).

    The workload's programs are explored; its timed ``events`` and ``start_us`` have no
    meaning without time and are refused (ValueError) rather than ignored: environment
    events are the budgets ``interrupts``, ``prods`` and ``signals``.

    >>> from kvmcede import Config
    >>> r = explore(Config(threads_per_core=1, vcpus=1), progress=False)
    >>> r.ok, r.finished
    (True, True)
    """
    if not isinstance(config, Config):
        raise ValueError(f"config must be a kvmcede.Config, got {config!r}")
    config.validate()
    if workload is None:
        workload = default_workload(config)
    elif not isinstance(workload, Workload):
        raise ValueError(f"workload must be a kvmcede.Workload or None (the default "
                         f"workload), got {workload!r}")
    workload.check(config)
    _check_workload_for_explorer(workload)
    for name, value in (("symmetry", symmetry), ("reduction", reduction),
                        ("stop_at_first", stop_at_first)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise ValueError(f"progress must be None, True, False or a callable "
                         f"f(states, queue, transitions), got {progress!r}")
    max_states = _check_max_states(max_states)
    max_seconds = _check_max_seconds(max_seconds)
    model = Model(config, workload)
    if dec_expiries is None:
        dec_expiries = _timed_idles(workload)
    budget = tuple(_check_budget(n, b) for n, b in (
        ("interrupts", interrupts), ("dec_expiries", dec_expiries), ("prods", prods),
        ("host_ticks", host_ticks), ("signals", signals)))
    if properties is None:
        props = tuple(PROPERTIES)
    else:
        if isinstance(properties, str):
            properties = [properties]
        try:
            props = tuple(properties)
        except TypeError:
            raise ValueError(f"properties must be a property name or a list of them, got "
                             f"{properties!r}") from None
        if not props or not all(isinstance(p, str) for p in props):
            raise ValueError(f"properties must name at least one of {sorted(PROPERTIES)}, "
                             f"got {properties!r}")
        bad = sorted(set(props) - set(PROPERTIES))
        if bad:
            raise ValueError(f"properties: unknown name(s) {bad}; allowed: "
                             f"{sorted(PROPERTIES)}")
        props = tuple(p for p in PROPERTIES if p in props)
    invariants = frozenset(p for p in props if p in INVARIANTS)
    liveness = tuple(p for p in props if p in LIVENESS)
    explorer = _Explorer(model, budget, invariants, liveness, max_states, progress,
                         symmetry, reduction, stop_at_first, props, max_seconds)
    # The search makes no reference cycles; the collector would rescan every stored
    # state each time a few thousand more are allocated (the simulator's switch).
    with _CyclicGCPaused():
        return explorer.run()


class _Explorer:
    def __init__(self, model: Model, budget: tuple, invariants: frozenset, liveness: tuple,
                 max_states: int, progress: object, symmetry: bool, reduction: bool,
                 stop_at_first: bool, props: tuple,
                 max_seconds: float = DEFAULT_MAX_SECONDS) -> None:
        self.model = model
        self.max_seconds = max_seconds
        self.config = model.config
        self.workload = model.workload
        self.budget = budget
        self.invariants = invariants
        self.liveness = liveness
        self.max_states = max_states
        self.progress = progress
        self.stop_at_first = stop_at_first
        cfg = self.config
        self.reduction = reduction and cfg.memory == "sc" and cfg.cpu == "POWER7"
        self.prods_possible = any(isinstance(op, Prod) for prog in self.workload.programs
                                  for op in prog)
        self.props = props
        n = self.config.vcpus
        # On the POWER9 path vcpu v runs on thread v: renumbering vcpus would move them
        # between threads, so no symmetry there (a renumbered state is not equivalent).
        symmetry = symmetry and cfg.cpu != "POWER9"
        classes = symmetry_classes(self.workload) if symmetry else ()
        self.classes = classes
        # The shipped bugs act only on prods (see private_step): inert without any.
        bugs_inert = not self.prods_possible and not budget[B_PROD]
        self.thread_symmetry = (symmetry and not stores_possible(cfg)
                                and (not cfg.bugs or bugs_inert)
                                and cfg.threads_per_core >= 3)
        self.canon = (_Canon(n, classes, cfg.threads_per_core, self.thread_symmetry)
                      if classes or self.thread_symmetry else None)
        self.dead = _DeadValues(self.workload)
        # Which liveness bits are asked for.
        want = 0
        if "core_can_leave" in liveness:
            want |= _CORE
        per = (_RAISED_BITS if "interrupt_delivered" in liveness else 0) | (
            _PROD_BIT if "prod_not_lost" in liveness else 0)
        for v in range(n):
            want |= per << (1 + 4 * v)
        self.want = want
        self.allowed = {_HYP: -1}
        for v in range(n):
            self.allowed[v] = _GROUP << (1 + 4 * v)

    # ---- the search ----------------------------------------------------------------------
    def run(self) -> ExploreResult:
        t0 = time.perf_counter()
        model = self.model
        enabled = model.enabled
        thread_steps = model.thread_steps
        other_steps = model.other_steps
        canon = self.canon
        invariants = self.invariants
        check = bool(invariants)
        want = self.want
        live = bool(want)
        guest_steps = frozenset(GUEST_STEPS)
        reduce = self.reduction
        prods_possible = self.prods_possible
        cfg = self.config

        s0 = model.initial(budget=self.budget)
        perm0 = 0
        clear_dead = self.dead
        step_to = _ThreadSteps(model)
        s0 = clear_dead(s0)
        if canon is not None:
            s0, perm0 = canon(s0)
        ids: dict[Machine, int] = {s0: 0}
        reps: list[Machine] = [s0]
        parent = array("l", [-1])
        pstep = array("l", [-1])
        pperm = array("l", [perm0])
        depth = array("l", [0])
        steps: list[Step] = []
        step_ids: dict[Step, int] = {}
        trig = array("Q", [_trigger_mask(s0) & want])
        # Edges of the liveness graph, grouped by source (sources are expanded in id
        # order): edge_start[k] is the first edge of state k.
        edge_start = array("l")
        edge_dst = array("l")
        edge_perm = array("l")
        edge_label = array("B")
        found: dict[str, tuple] = {}  # name -> ("inv", sid, step, msg, t) / ("dead", sid, bits)
        queue: deque[tuple[Machine, int]] = deque([(s0, 0)])
        transitions = 0
        finished = True
        prog = _Progress(self.progress, self.max_states)
        max_states = self.max_states
        stop_at_first = self.stop_at_first
        allowed = [0] * 256
        for label, mask in self.allowed.items():
            allowed[label] = mask
        # (Local names for the hot loop.)
        ids_setdefault = ids.setdefault
        popleft = queue.popleft
        push = queue.append
        n_exp = 0
        stop = False
        stopped: str | None = None
        deadline = t0 + self.max_seconds
        try:
            while queue:
                n_exp += 1
                if not n_exp & 1023:
                    prog.update(len(parent), len(queue), transitions)
                    if time.perf_counter() > deadline:
                        stopped = "max_seconds"
                        break
                s, sid = popleft()
                if live:
                    edge_start.append(len(edge_dst))
                reach_here = 0  # liveness bits that some allowed step out of s may serve
                complete = True
                if reduce:
                    # The threads' steps come first; the rest is needed only when none of
                    # them is private.
                    here = thread_steps(s)
                    st = private_step(s, here, prods_possible=prods_possible, config=cfg)
                    if st is not None:
                        here = [st]
                    else:
                        here += other_steps(s, True)
                else:
                    here = enabled(s, True)
                for st in here:
                    t = step_to(s, st)
                    transitions += 1
                    if check:
                        for name, msg in check_transition(model, s, st, t):
                            if name in invariants and name not in found:
                                found[name] = ("inv", sid, st, msg, t)
                                stop = stop or stop_at_first
                    u = clear_dead(t)
                    if canon is not None:
                        c, k = canon(u)
                    else:
                        c, k = u, 0
                    new = len(parent)
                    tid = ids_setdefault(c, new)  # (one hash of the state, not two)
                    if tid == new:
                        if check:
                            # A state's own invariants, once: breadth-first, the first way
                            # into it is a shortest one.
                            for name, msg in check_state(model, t):
                                if name in invariants and name not in found:
                                    found[name] = ("inv", sid, st, msg, t)
                                    stop = stop or stop_at_first
                        if tid >= max_states:
                            del ids[c]
                            finished = complete = False
                            stopped = "max_states"
                            stop = True
                            break
                        reps.append(c)
                        parent.append(sid)
                        code = step_ids.get(st)
                        if code is None:
                            code = step_ids[st] = len(steps)
                            steps.append(st)
                        pstep.append(code)
                        pperm.append(k)
                        depth.append(depth[sid] + 1)
                        trig.append(_trigger_mask(c) & want if live else 0)
                        push((c, tid))
                    if live:
                        actor = st.actor
                        if actor == "world":
                            continue  # liveness paths use no new environment events
                        if actor == "thread" and st.name in guest_steps:
                            label = s.threads[st.index].vcpu
                        else:
                            label = _HYP
                        reach_here |= allowed[label]
                        edge_dst.append(tid)
                        edge_perm.append(k)
                        edge_label.append(label)
                if live and complete:
                    # A dead end for a triggered bit: no allowed step at all, so the goal is
                    # unreachable (found at once; cycles are found after the search).
                    dead = trig[sid] & ~reach_here
                    if dead:
                        for name in self._names_of_bits(dead):
                            if name not in found:
                                found[name] = ("dead", sid, dead)
                                stop = stop or stop_at_first
                if stop:
                    break
        except KeyboardInterrupt:
            # Keep what was reached.  The interrupt may have come between the appends
            # for one new state: cut the per-state arrays back to the states complete in
            # all of them (their ids are dense, so that is a prefix).
            stopped = "interrupted"
            n = min(len(reps), len(parent), len(pstep), len(pperm), len(depth), len(trig))
            for arr in (reps, parent, pstep, pperm, depth, trig):
                del arr[n:]
            found = {name: rec for name, rec in found.items() if rec[1] < n}
        if stopped is None and stop and self.stop_at_first and queue:
            stopped = "stop_at_first"
        if queue or stopped is not None:
            finished = False
        prog.close(len(parent), len(queue), transitions)
        n_states = len(parent)
        liveness_checked = live and finished
        stuck = None
        if liveness_checked:
            edge_start.append(len(edge_dst))
            try:
                stuck = self._stuck(trig, edge_start, edge_dst, edge_perm, edge_label)
            except KeyboardInterrupt:  # every state was visited; liveness is undecided
                stopped, finished, liveness_checked = "interrupted", False, False
        seconds = time.perf_counter() - t0
        self._reps = reps
        violations = self._violations(found, stuck, parent, pstep, pperm, steps, trig)
        # Order the violations as PROPERTIES lists them.
        violations = {p: violations[p] for p in PROPERTIES if p in violations}
        return ExploreResult(
            ok=finished and not violations, finished=finished, states=n_states,
            transitions=transitions, seconds=seconds, properties=self.props,
            violations=violations, config=self.config, workload=self.workload,
            budget=self.budget, max_states=self.max_states, depth=max(depth),
            max_seconds=self.max_seconds, stopped=stopped,
            symmetry=self.classes, liveness_checked=liveness_checked or not live,
            reduction=self.reduction, thread_symmetry=self.thread_symmetry)

    def _names_of_bits(self, bits: int) -> list[str]:
        out = []
        if bits & _CORE:
            out.append("core_can_leave")
        groups = bits >> 1
        raised = prod = False
        while groups:
            raised |= bool(groups & _RAISED_BITS)
            prod |= bool(groups & _PROD_BIT)
            groups >>= 4
        if raised:
            out.append("interrupt_delivered")
        if prod:
            out.append("prod_not_lost")
        return out

    # ---- liveness ---------------------------------------------------------------------------
    def _stuck(self, trig: array, edge_start: array, edge_dst: array, edge_perm: array,
               edge_label: array) -> dict[int, int]:
        """States with liveness bits whose goal no allowed path reaches: id -> bits.

        ``ok[s]``: the trigger bits whose goal is reachable from ``s`` (in ``s``'s vcpu
        numbering).  States without a trigger bit are goals for every bit.  For the
        others ``ok`` is the least fixpoint of "some allowed edge leads to a state whose
        ok has the bit", computed with a worklist over the reversed edges among them.
        """
        perms = self.canon.perms if self.canon is not None else [((), ())]
        allowed = self.allowed
        want = self.want
        pending = [s for s in range(len(trig)) if trig[s]]
        if not pending:
            return {}
        is_pending = {s: True for s in pending}
        ok: dict[int, int] = dict.fromkeys(pending, 0)
        rev: dict[int, list[int]] = {}
        for s in pending:
            for e in range(edge_start[s], edge_start[s + 1]):
                t = edge_dst[e]
                if t in is_pending and t != s:
                    rev.setdefault(t, []).append(s)
        work = deque(pending)
        queued = set(pending)
        while work:
            s = work.popleft()
            queued.discard(s)
            have = ok[s]
            need = trig[s] & ~have
            if not need:
                continue
            new = have
            for e in range(edge_start[s], edge_start[s + 1]):
                t = edge_dst[e]
                got = ok.get(t)
                bits = want if got is None else got | (want & ~trig[t])
                k = edge_perm[e]
                if k:
                    bits = _remap_mask(bits, perms[k][0])
                new |= bits & allowed[edge_label[e]] & need
                if not trig[s] & ~new:
                    break
            if new != have:
                ok[s] = new
                for src in rev.get(s, ()):
                    if src not in queued and trig[src] & ~ok[src]:
                        queued.add(src)
                        work.append(src)
        return {s: trig[s] & ~ok[s] for s in pending if trig[s] & ~ok[s]}

    # ---- counterexamples --------------------------------------------------------------------
    def _path(self, sid: int, parent: array, pstep: array, pperm: array,
              steps: list[Step]) -> tuple[list[Step], tuple]:
        """Concrete steps from the real initial state to (a renumbering of) state ``sid``,
        and the renumbering ``sigma`` (a pair: vcpus, threads) with the concrete state
        equal to ``permute_state(representative, *sigma)`` up to dead values.

        The path is replayed from the real initial state: at each state the renumbering
        that relates it to its stored representative is read off the canonical form
        (moving secondary threads is a bisimulation, not an automorphism: after
        ``kvmppc_run_core`` the relation can change), and the stored step is renumbered
        by it.
        """
        chain = []
        k = sid
        while k > 0:
            chain.append(k)
            k = parent[k]
        chain.reverse()
        n = self.config.vcpus
        ident = (tuple(range(n)), tuple(range(self.config.threads_per_core)))
        model = self.model
        s = model.initial(budget=self.budget)
        out = []
        sigma = self._relation(s) if self.canon is not None else ident
        for k in chain:
            st = permute_step(steps[pstep[k]], *sigma)
            out.append(st)
            s, _ = model.apply(s, st)
            if self.canon is not None:
                sigma = self._relation(s)
        return out, sigma

    def _relation(self, concrete: Machine) -> tuple:
        """The renumbering ``sigma`` with ``concrete`` = ``permute_state(rep, *sigma)`` up
        to dead values, ``rep`` its stored representative."""
        _, k = self.canon(self.dead(concrete))
        return _inverse(self.canon.perms[k])

    def _trace(self, concrete: list[Step], name: str, kind: str, message: str) -> tuple:
        model = self.model
        s = model.initial(budget=self.budget)
        events: list[Event] = []
        for k, st in enumerate(concrete):
            s, evs = model.apply(s, st)
            events.extend(ev._replace(time=k) for ev in evs)
        tr = Trace(self.config, self.workload, events, [(k, st) for k, st in enumerate(concrete)],
                   end=len(concrete), source="explore", budget=self.budget,
                   meta={"property": name, "kind": kind, "message": message})
        return tr, s

    def _violations(self, found: dict, stuck: dict | None, parent: array, pstep: array,
                    pperm: array, steps: list[Step], trig: array) -> dict[str, Violation]:
        out: dict[str, Violation] = {}
        cands: dict[str, tuple[int, int, object]] = {}  # name -> (depth-ish id, sid, info)
        for name, rec in found.items():
            if rec[0] == "inv":
                _, sid, st, msg, t = rec
                path, sigma = self._path(sid, parent, pstep, pperm, steps)
                concrete = [*path, permute_step(st, *sigma)]
                tr, s = self._trace(concrete, name, "invariant", msg)
                self._check_replay(name, s, t)
                # msg names vcpus as the stored representative numbers them; say it in
                # the numbering of the concrete counterexample the reader steps through.
                prev = tr.state_after(len(concrete) - 1)
                msg = dict(check_step(self.model, prev, concrete[-1], s)).get(name, msg)
                tr.meta["message"] = msg
                out[name] = Violation(name, "invariant", msg, tr, len(concrete), s)
            else:
                _, sid, bits = rec
                cands[name] = (sid, bits, "dead")
        if stuck:
            for sid in sorted(stuck):
                for name in self._names_of_bits(stuck[sid]):
                    if name not in cands or cands[name][0] > sid:
                        cands[name] = (sid, stuck[sid], "stuck")
        for name, (sid, bits, _) in cands.items():
            path, sigma = self._path(sid, parent, pstep, pperm, steps)
            sigma_inv = _inverse(sigma)
            concrete_bits = (_remap_mask(bits, sigma_inv[0]) if self.canon is not None
                             else bits)
            msg = self._liveness_message(name, concrete_bits)
            tr, s = self._trace(path, name, "liveness", msg)
            self._check_replay(name, s, self._reps[sid])
            cont, end = self._continuation(s, concrete_bits)
            out[name] = Violation(name, "liveness", msg, tr, len(path), s, cont, end)
        return out

    def _continuation(self, s: Machine, bits: int, limit: int = 20_000
                      ) -> tuple[list[Step], str]:
        """From stuck state ``s``: the shortest run of steps allowed for ``bits`` to a
        dead end, else a run that closes a cycle."""
        model = self.model
        allowed = self.allowed
        guest_steps = GUEST_STEPS

        def steps_of(x: Machine) -> list[Step]:
            out = []
            for st in model.enabled(x, False):
                if (st.actor == "thread" and st.name in guest_steps
                        and not bits & allowed[x.threads[st.index].vcpu]):
                    continue  # another vcpu's guest code: not allowed
                out.append(st)
            return out

        parent: dict[Machine, tuple[Machine, Step] | None] = {s: None}
        queue = deque([s])
        cycle_at: tuple[Machine, Step] | None = None
        while queue and len(parent) < limit:
            x = queue.popleft()
            nexts = steps_of(x)
            if not nexts:
                return self._unwind(parent, x, []), "dead end"
            for st in nexts:
                y, _ = model.apply(x, st)
                if y in parent:
                    if cycle_at is None and self._on_path(parent, x, y):
                        cycle_at = (x, st)
                    continue
                parent[y] = (x, st)
                queue.append(y)
        if cycle_at is not None:
            x, st = cycle_at
            return self._unwind(parent, x, [st]), "cycle"
        return [], ""

    @staticmethod
    def _on_path(parent: dict, x: Machine, y: Machine) -> bool:
        while x is not None:
            if x == y:
                return True
            link = parent[x]
            x = link[0] if link is not None else None
        return False

    @staticmethod
    def _unwind(parent: dict, x: Machine, tail: list[Step]) -> list[Step]:
        out = list(tail)
        while parent[x] is not None:
            x, st = parent[x]
            out.append(st)
        out.reverse()
        return out

    def _check_replay(self, name: str, concrete: Machine, explored: Machine) -> None:
        """The replayed counterexample must reach (a renumbering of) the explored state;
        a mismatch would be a bug in the renumbering bookkeeping of this module."""
        concrete, explored = self.dead(concrete), self.dead(explored)
        if self.canon is not None:
            concrete, _ = self.canon(concrete)
            explored, _ = self.canon(explored)
        if concrete != explored:
            raise AssertionError(f"explorer: the counterexample for {name} does not replay "
                                 "to the state it was found in")

    def _liveness_message(self, name: str, bits: int) -> str:
        n = self.config.vcpus
        if name == "core_can_leave":
            return ("an exit has started (exit count > 0, VCORE_RUNNING) and from here no "
                    "sequence of hypervisor steps brings the core out of the guest")
        parts = []
        for v in range(n):
            g = (bits >> (1 + 4 * v)) & _GROUP
            if name == "interrupt_delivered" and g & _RAISED_BITS:
                kinds = [f"{_IRQ_NAMES[b]} ({_VECTORS[b]:#x})" for b in range(3) if g >> b & 1]
                parts.append(f"vcpu {v}'s {' and '.join(kinds)} interrupt")
            if name == "prod_not_lost" and g & _PROD_BIT:
                parts.append(f"vcpu {v}")
        who = ", ".join(parts)
        if name == "interrupt_delivered":
            return (f"{who} is raised and from here no sequence of steps of the hypervisor "
                    "and that vcpu delivers it")
        return (f"{who} is prodded and ceded, and from here no sequence of hypervisor steps "
                "ends the cede")


# ============================================================================================
# Command line: `python -m kvmcede explore ...` (kvmcede.cli calls these two functions)
# ============================================================================================

_WORKLOADS = {
    "default": "vcpu 0: busy, timed idle, MMIO; the other vcpus idle with no timer",
    "idle": "every vcpu idles from the start with no timer",
}


def _cli_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``."""
    def parse(text: str) -> int:
        try:
            v: int | None = int(text)
        except ValueError:
            v = None
        if v is None or not low <= v <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high:,}, "
                                             f"got {text!r}")
        return v
    return parse


def _cli_seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0 < v <= MAX_SECONDS_LIMIT:  # (NaN and inf fail too)
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0 and <= "
                                         f"{MAX_SECONDS_LIMIT:g}, got {text!r}")
    return v


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``kvmcede explore`` to ``parser``."""
    from .config import CPUS, MEMORY_MODES, POLICIES
    parser.add_argument(
        "setup", nargs="?", choices=sorted(SETUPS), metavar="SETUP",
        help="a ready-made exploration (configuration, workload and budgets) that finishes "
             "in about a second: 'protocol' or an ablation or bug name; without it the "
             "options below describe one. Choices: " + ", ".join(sorted(SETUPS)))
    parser.add_argument("--setup", dest="setup_option", choices=sorted(SETUPS),
                        metavar="SETUP", help="the same as the SETUP argument")
    g = parser.add_argument_group("machine (ignored with SETUP)")
    g.add_argument("--vcpus", type=int, default=2, help="vcpus of the vcore (default 2)")
    g.add_argument("--threads-per-core", "--smt", dest="threads_per_core", type=int,
                   choices=(1, 2, 4), default=4, help="SMT mode of the core (default 4)")
    g.add_argument("--policy", choices=POLICIES, default="realmode",
                   help="realmode (commit 19ccb76a) or host (before it) (default realmode)")
    g.add_argument("--cpu", choices=CPUS, default="POWER7", help="(default POWER7)")
    from .cli import add_kernel_arguments
    add_kernel_arguments(g)
    g.add_argument("--ablation", action="append", choices=sorted(ABLATIONS), default=[],
                   metavar="NAME", help="remove one line of the protocol (repeatable): "
                   + ", ".join(sorted(ABLATIONS)))
    g.add_argument("--memory", choices=MEMORY_MODES, default="sc",
                   help="sc (sequentially consistent) or store_buffer (default sc)")
    g.add_argument("--workload", choices=sorted(_WORKLOADS), default="default",
                   help="; ".join(f"{k}: {v}" for k, v in _WORKLOADS.items()))
    b = parser.add_argument_group("environment budgets (each kind of event happens at most "
                                  "this often; with SETUP they override its budgets)")
    budget = _cli_int(0, MAX_BUDGET)
    each = f", 0 .. {MAX_BUDGET}"
    b.add_argument("--interrupts", type=budget, default=None, metavar="N",
                   help=f"device interrupts (KVM_INTERRUPT){each} (default 1)")
    b.add_argument("--dec-expiries", type=budget, default=None, metavar="N",
                   help=f"guest DEC expiries{each} (default: one per timed Idle op)")
    b.add_argument("--prods", type=budget, default=None, metavar="N",
                   help=f"H_PRODs from a vcpu on another core{each} (default 0)")
    b.add_argument("--host-ticks", type=budget, default=None, metavar="N",
                   help=f"host timer ticks (HDEC expiries){each} (default 0)")
    b.add_argument("--signals", type=budget, default=None, metavar="N",
                   help=f"signals to vcpu tasks{each} (default 0)")
    s = parser.add_argument_group("search")
    s.add_argument("--property", action="append", choices=list(PROPERTIES), default=None,
                   metavar="NAME", help="check only this property (repeatable; default: "
                   "all " + str(len(PROPERTIES)) + ", see --list)")
    s.add_argument("--max-states", type=_cli_int(1, MAX_STATES_LIMIT),
                   default=DEFAULT_MAX_STATES, metavar="N",
                   help=f"stop (not finished, exit status 3) after this many states, 1 .. "
                        f"{MAX_STATES_LIMIT:,} (about 800 bytes each) (default "
                        f"{DEFAULT_MAX_STATES:,})")
    s.add_argument("--max-seconds", type=_cli_seconds, default=DEFAULT_MAX_SECONDS,
                   metavar="S",
                   help="stop (not finished, exit status 3) after this many seconds of "
                        f"searching, > 0 and <= {MAX_SECONDS_LIMIT:g} (default "
                        f"{DEFAULT_MAX_SECONDS:g})")
    s.add_argument("--no-symmetry", dest="symmetry", action="store_false",
                   help="do not merge states that differ only by renumbering "
                        "interchangeable vcpus or secondary threads")
    s.add_argument("--reduce", dest="reduction", action="store_true",
                   help="partial-order reduction: do not interleave private real-mode steps "
                        "(same verdicts, fewer states; counterexamples may be a step or two "
                        "longer than the shortest)")
    s.add_argument("--stop-at-first", action="store_true",
                   help="stop at the first violation found")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress on stderr for runs longer than a second (default: when "
                        "stderr is a terminal)")
    o = parser.add_argument_group("output")
    o.add_argument("--no-events", dest="events", action="store_false",
                   help="print only the steps of the counterexample, not their events")
    o.add_argument("--json", metavar="PATH",
                   help="write the counterexample as a kvmcede trace (JSON)")
    o.add_argument("--perfetto", metavar="PATH",
                   help="write the counterexample as Chrome/Perfetto trace-event JSON")
    o.add_argument("--list", action="store_true",
                   help="list the setups and the properties, and exit")


def _cli_list() -> str:
    lines = ["setups:"]
    for name, (_, prop, what) in SETUPS.items():
        expect = f"breaks {prop}" if prop else "holds"
        lines.append(f"  {name:<20} {expect}: {what}")
    lines.append("properties:")
    for name, text in PROPERTIES.items():
        kind = "liveness" if name in LIVENESS else "invariant"
        lines.append(f"  {name:<26} ({kind}) {text}")
    return "\n".join(lines)


def cli_main(args: argparse.Namespace) -> int:
    """Run ``kvmcede explore`` for parsed ``args``; print the verdict and, if a property
    is violated, the counterexample step by step.  Exit status (see
    :data:`kvmcede.cli.EXIT_CODES`): 0 every property holds, 1 a property is violated,
    2 bad input, 3 not finished (``--max-states`` or ``--max-seconds`` reached),
    5 an output file could not be written (saved to a fallback), 130 interrupted (the
    counts reached are printed first)."""
    from .cli import (
        EXIT_FAILED,
        EXIT_INTERRUPTED,
        EXIT_NOT_FINISHED,
        EXIT_OK,
        EXIT_OUTPUT,
        EXIT_USAGE,
        changes_from_args,
        write_output,
    )
    prog = "kvmcede explore"
    if getattr(args, "list", False):
        print(_cli_list())
        return EXIT_OK
    name = args.setup
    option = getattr(args, "setup_option", None)
    if option is not None:
        if name is not None and name != option:
            print(f"{prog}: error: SETUP {name!r} and --setup {option!r} disagree; give "
                  "one", file=sys.stderr)
            return EXIT_USAGE
        name = option
    try:
        if name:
            cfg, wl, kw = setup(name)
        else:
            cfg = Config(threads_per_core=args.threads_per_core, vcpus=args.vcpus,
                         policy=args.policy, cpu=args.cpu, changes=changes_from_args(args),
                         ablations=args.ablation, memory=args.memory)
            wl = default_workload(cfg) if args.workload == "default" else Workload(
                ((),) * cfg.vcpus, name="idle")
            kw = {}
        for key in ("interrupts", "dec_expiries", "prods", "host_ticks", "signals"):
            value = getattr(args, key)
            if value is not None:
                kw[key] = value
        progress = args.progress if args.progress is not None else sys.stderr.isatty()
        result = explore(cfg, wl, properties=args.property, max_states=args.max_states,
                         max_seconds=getattr(args, "max_seconds", DEFAULT_MAX_SECONDS),
                         progress=progress, symmetry=args.symmetry,
                         reduction=args.reduction, stop_at_first=args.stop_at_first, **kw)
    except ValueError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(result.format(events=args.events))
    v = result.violation
    if result.stopped == "interrupted":  # (Ctrl-C says so even after a violation)
        rc = EXIT_INTERRUPTED
    elif v is not None:
        rc = EXIT_FAILED
    elif not result.finished:
        rc = EXIT_NOT_FINISHED
    else:
        rc = EXIT_OK
    if result.stopped == "interrupted":
        print(f"{prog}: interrupted after {result.states:,} states and "
              f"{result.transitions:,} transitions ({result.seconds:.1f} s)", file=sys.stderr)
    wanted = [(flag, path) for flag, path in (("--json", getattr(args, "json", None)),
                                              ("--perfetto", getattr(args, "perfetto", None)))
              if path]
    if wanted and v is None:
        print(f"(no counterexample, so nothing written to {' or '.join(p for _, p in wanted)})")
    elif wanted:
        writers = {"--json": (lambda p: _write_text(p, v.trace.to_json()),
                              "counterexample trace (JSON)"),
                   "--perfetto": (v.trace.write_perfetto,
                                  "counterexample as Perfetto trace events")}
        ok = True
        for flag, path in wanted:
            write, what = writers[flag]
            ok = write_output(prog, flag, path, write, what, sys.stdout) and ok
        if not ok and rc == EXIT_OK:
            rc = EXIT_OUTPUT
    return rc


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
