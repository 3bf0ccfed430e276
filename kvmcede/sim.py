"""The timed simulator: run the model, always taking the earliest ready step.

Timing rule (the contract): a step becomes *ready* ``cost`` ticks after it became
enabled — after the actor's previous step, or after the moment its guard turned true,
whichever is later.  The simulator always runs the ready step with the smallest time;
ties go to the step that comes first in :meth:`Model.enabled` order (threads, tasks,
timers, the remote prodder, store drains), then environment events.  Environment events
happen at their own times: a guest DEC at ``dec_expires``, the host tick every
``costs.host_tick`` while the core is in the guest, scripted events at ``at_us``.

A busy burst is the only preemptible step: if its thread leaves the guest (an IPI, the
HDEC) before the burst ends, the time already run is kept and the rest runs after the
vcpu re-enters.

Everything is integer arithmetic on timebase ticks, so the same inputs give the same
trace, bit for bit.
"""

from __future__ import annotations

import gc
import threading
from typing import Literal, overload

from .config import MAX_STEPS, MAX_UNTIL_US, Config, _is_int, check_time_us, show
from .edit import Step, _new
from .guest import Interrupt, Mmio, RemoteProd, Workload
from .host import all_idle
from .invariants import check_step
from .model import Model
from .p9 import CEDE as _P9_CEDE
from .p9 import EXIT as _P9_EXIT
from .p9 import STOP as _P9_STOP
from .state import DEC_ARMED, KVMPPC_VCPU_BUSY_IN_HOST, KVMPPC_VCPU_STOPPED, Machine
from .trace import Event, Metrics, MetricsAccumulator, Trace

__all__ = ["RECORD_MODES", "InvariantViolation", "simulate", "thread_activity",
           "vcpu_activity"]

#: What :func:`simulate` keeps: "trace" (every event and step: a :class:`Trace`) or
#: "metrics" (nothing per event: the :class:`Metrics`, computed as the run goes).
RECORD_MODES = ("trace", "metrics")

#: Steps at one instant after which a run is declared stuck (time no longer advances:
#: costs of 0 ticks around a loop).  No run of the default costs comes near it.
_MAX_STEPS_AT_ONE_TIME = 100_000


class InvariantViolation(AssertionError):
    """An invariant of reference section 10 failed during a simulation."""


_EXIT_LOCS = frozenset({"hdec_soon", "hdec_soon.poke", "hdec_soon.wait_in_guest",
                        "hdec_soon.wait_exits"})
_CEDE_LOCS = frozenset({"kvmppc_h_cede.sync_prodded", "kvmppc_h_cede.napping_threads",
                        "kvmppc_h_cede.recheck", "kvmppc_h_cede.nap", "kvm_end_cede.clear",
                        "kvm_end_cede.check"})


#: Activity of a hardware thread at each location (``thread_activity``).
LOC_ACTIVITY: dict[str, str] = {
    "guest": "guest", "nap": "nap", "secondary_nap": "offline", "host": "host",
    "secondary_too_late": "exiting", **dict.fromkeys(_EXIT_LOCS, "exiting"),
    **dict.fromkeys(_CEDE_LOCS, "cede"),
    # POWER9 path: a thread leaving the guest alone, running kvmppc_cede, or idle in the
    # host while its vcpu's task sleeps (shown like an offline thread: free for the host).
    _P9_EXIT: "exiting", _P9_CEDE: "cede", _P9_STOP: "offline",
}


def thread_activity(s: Machine, i: int) -> str:
    """What hardware thread ``i`` is doing, for timelines: "guest", "nap" (napping in
    H_CEDE), "cede" (real-mode cede / wake code; kvmppc_cede on POWER9), "entry",
    "exiting", "offline" (secondary_nap; on POWER9 idle in the host), "host"."""
    return LOC_ACTIVITY.get(s.threads[i].loc, "entry")


#: The thread locations that make a vcpu's activity (its own name: "guest", "nap").
_VCPU_LOCS = ("guest", "nap")


def _vcpu_activities(s: Machine) -> list[str]:
    where = {}  # vcpu -> "guest" or "nap" (plain loops: cheaper than comprehensions here)
    for t in s.threads:
        if t.loc in _VCPU_LOCS:
            where[t.vcpu] = t.loc
    out = []
    for v, u in enumerate(s.vcpus):
        state = u.state
        if state == KVMPPC_VCPU_STOPPED:
            out.append("stopped")
        elif state == KVMPPC_VCPU_BUSY_IN_HOST:
            out.append("userspace")
        else:
            out.append(where.get(v) or ("ceded" if u.ceded else "out"))
    return out


def vcpu_activity(s: Machine, v: int) -> str:
    """How vcpu ``v`` spends this moment: "guest" (running guest code), "nap" (napping
    in the guest partition), "ceded" (ceded, out of the guest: in the host or on its way
    there), "out" (not in the guest although it has work: waiting for the core),
    "userspace" (BUSY_IN_HOST: in the host for its own exit — MMIO emulation, an hcall
    the host handles, a signal), "stopped" (never run)."""
    return _vcpu_activities(s)[v]


class _Clock:
    """Cost of each step in ticks (the pay-before rule)."""

    def __init__(self, m: Model) -> None:
        c = m.config.costs
        self.m = m
        self.c = c
        # The steps that end in kvmppc_run_vcpu's loop test (host.run_vcpu_loop) do that
        # test under the same vc->lock, so they cost their own work plus one host step.
        self.loop = loop = c.host_step
        self.fixed = {
            "kvmppc_cede_reentry": c.realmode_step,
            "secondary_too_late": c.realmode_step,
            "kvmppc_h_cede: sync; test prodded": c.realmode_step,
            "kvmppc_h_cede: napping_threads": c.realmode_step,
            "kvmppc_h_cede: re-check entry_exit_count": c.realmode_step,
            "kvmppc_h_cede: save state, nap": c.nap_save,
            "kvm_end_cede": c.realmode_step,
            "kvm_end_cede: check exit count": c.realmode_step,
            "hdec_soon": c.realmode_step,
            "hdec_soon: HDEC poke, IPI nappers": c.realmode_step,
            "secondary_nap": c.partition_switch,
            "switch_to_host": c.partition_switch,
            "guest_interrupt": c.realmode_step,
            "guest_dec": c.realmode_step,
            "H_CEDE": c.realmode_step,
            "H_PROD": c.realmode_step,
            "H_CONFER": c.realmode_step,
            "mmio_access": c.realmode_step,
            "kvmppc_run_vcpu": c.host_step + loop,
            "kvmppc_wait_for_exec: woken": c.host_wakeup + loop,
            "kvmppc_vcore_blocked: woken": c.host_wakeup + loop,
            # Halt polling: a wake inside the window is seen at once by the spinning
            # runner, which goes round the loop with no scheduler wake-up.
            "kvmppc_vcore_blocked: poll succeeds": c.host_step + loop,
            "kvmppc_run_core: after exit": c.host_exit_handling + loop,
            "kvmppc_run_vcpu: return": c.host_step,
            "kvmppc_pseries_do_hcall": c.hcall_in_host,
            "kvmppc_decrementer_func": c.hrtimer_latency,
            "H_PROD: smp_mb; test ceded": c.realmode_step,
            "store visible": c.store_drain,
            # POWER9 path (kvmcede.p9): one thread enters / leaves alone; the host side
            # handles one vcpu, not a whole vcore.
            "kvmhv_run_single_vcpu": c.host_step,
            "kvmhv_p9_guest_entry": c.p9_guest_entry,
            "kvmhv_p9_guest_entry: exit": c.p9_guest_exit,
            "kvmppc_cede": c.realmode_step,
            "kvmhv_run_single_vcpu: after exit": c.host_step,
            "kvmhv_run_single_vcpu: woken": c.host_wakeup,
        }

    def cost(self, s: Machine, step: Step) -> int:
        name = step.name
        if name == "kvm_start_guest":
            # Out of nap through the system reset vector: an offline secondary started
            # by the host's IPI (thread_start), or a thread napping in H_CEDE woken by
            # an IPI or by its own decrementer (nap_wakeup; no IPI to wait for).
            t = s.threads[step.index]
            if t.loc == "secondary_nap":
                return self.c.ipi_latency + self.c.thread_start
            return self.c.nap_wakeup + (self.c.ipi_latency if t.ipi else 0)
        if name == "kvmppc_vcore_blocked: poll window over":
            # The runner spins for the whole window (vc->halt_poll_ns, nanoseconds).
            ns = s.vcore.halt_poll_ns
            return ns * self.m.config.timebase_hz // 1_000_000_000 + self.c.host_step
        if name == "kvmppc_hv_entry":
            return self.c.guest_entry if step.index == 0 else self.c.realmode_step
        if name == "kvmppc_interrupt":
            return self.c.ipi_latency if s.threads[step.index].ipi else self.c.hdec_poke
        if name == "KVM_RUN":
            u = s.vcpus[step.index]
            if u.exit_reason == "KVM_EXIT_MMIO":
                op = self.m.workload.op(step.index, u.pc)
                if isinstance(op, Mmio) and op.us is not None:
                    return self.m.ticks(op.us) + self.loop
                return self.c.mmio_emulation + self.loop
            return self.c.host_step + self.loop
        if name == "kvmppc_vcore_blocked":
            # Goes round the loop only if a vcpu got work after prepare_to_wait.
            return self.c.host_step + (0 if all_idle(s, self.m) else self.loop)
        return self.fixed[name]


@overload
def simulate(config: Config, workload: Workload, until: float = ..., *,
             check_invariants: bool = ..., record: Literal["trace"] = ...,
             max_steps: int = ...) -> Trace: ...
@overload
def simulate(config: Config, workload: Workload, until: float = ..., *,
             check_invariants: bool = ..., record: Literal["metrics"],
             max_steps: int = ...) -> Metrics: ...
def simulate(config: Config, workload: Workload, until: float = 1000.0, *,
             check_invariants: bool = False, record: str = "trace",
             max_steps: int = MAX_STEPS) -> Trace | Metrics:
    """Simulate ``workload`` on ``config`` for ``until`` microseconds of machine time.

    Returns a :class:`~kvmcede.trace.Trace` (``record="trace"``, the default) or, with
    ``record="metrics"``, only its :class:`~kvmcede.trace.Metrics`: no event or step is
    kept, the metrics are computed while the run goes (the same code as
    :attr:`Trace.metrics`, so they are equal), and memory does not grow with the
    simulated time — the mode for long runs and sweeps.  With ``check_invariants``
    every step is checked against the invariants of reference section 10 (slower); a
    violation raises :class:`InvariantViolation` with the step and state.

    Limits (checked before the run starts, ValueError naming the argument): ``until``
    finite, ``0 < until <= MAX_UNTIL_US`` (10 s); ``max_steps`` (default
    :data:`~kvmcede.config.MAX_STEPS`) bounds the model steps — a run that needs more, or
    whose time stops advancing (costs of 0 around a loop), stops with a ValueError.

    >>> from kvmcede import Config, Workload, Busy, Idle, simulate
    >>> wl = Workload(((Busy(50),), (Idle(20),), (Idle(None),), (Idle(None),)))
    >>> tr = simulate(Config(), wl, until=100)
    >>> tr.metrics.exits_by_reason  # vcpu 0, done at 50 us, is the last one to cede
    {'H_CEDE': 1}
    >>> simulate(Config(), wl, until=100, record="metrics") == tr.metrics
    True
    """
    if not isinstance(config, Config):
        raise ValueError(f"config: got {type(config).__name__}; allowed: a Config")
    if not isinstance(workload, Workload):
        # (worded as before: sweeps and their tests quote "workload must be a Workload")
        raise ValueError(f"workload must be a Workload (scripted, or from "
                         f"random_workload()); got {type(workload).__name__}")
    check_time_us("until", until, maximum=MAX_UNTIL_US)
    if not isinstance(record, str) or record not in RECORD_MODES:
        raise ValueError(f"record: got {show(record)}; allowed: one of {RECORD_MODES}")
    if not _is_int(max_steps) or not 1 <= max_steps <= 10**10:
        raise ValueError(f"max_steps: got {show(max_steps)}; allowed: an integer from 1 to "
                         f"10**10")
    if not isinstance(check_invariants, bool):
        raise ValueError(f"check_invariants: got {show(check_invariants)}; allowed: True or "
                         f"False")
    with _CyclicGCPaused():  # Model() checks the config and the workload before the run
        return _run(config, workload, until, check_invariants, record == "metrics",
                    int(max_steps))


class _CyclicGCPaused:
    """The cyclic garbage collector is off inside ``with _CyclicGCPaused():``.

    The simulation loop makes no reference cycles, so the collector would find nothing;
    left on, it rescans every object the process holds each time the trace has grown a
    bit (about a tenth of a run).  The switch is process-wide, so the pause nests and is
    safe when simulations run in several threads at once (a ThreadPoolExecutor sweep):
    the collector is switched back on when the last of them ends, and only if it was on
    when the first began."""

    _lock = threading.Lock()
    _depth = 0
    _was_enabled = False

    def __enter__(self) -> None:
        cls = type(self)
        with cls._lock:
            if cls._depth == 0:
                cls._was_enabled = gc.isenabled()
                gc.disable()
            cls._depth += 1

    def __exit__(self, *exc: object) -> None:
        cls = type(self)
        with cls._lock:
            cls._depth -= 1
            if cls._depth == 0 and cls._was_enabled:
                gc.enable()


def _run(config: Config, workload: Workload, until: float, check_invariants: bool,
         metrics_only: bool, max_steps: int) -> Trace | Metrics:
    """The scheduler loop of :func:`simulate` (arguments already checked).

    ``metrics_only``: every step's events go to a :class:`MetricsAccumulator` and are
    dropped; no step is kept."""
    m = Model(config, workload)
    end = m.ticks(until)
    clock = _Clock(m)
    host_tick = config.costs.host_tick
    n_threads = config.threads_per_core
    n_vcpus = config.vcpus

    # Scripted environment events, in time order, and a last one that never comes.
    never = end + 1
    ext: list[tuple[int, Step]] = []
    for ev in workload.events:
        name = ("KVM_INTERRUPT" if isinstance(ev, Interrupt) else
                "H_PROD (remote)" if isinstance(ev, RemoteProd) else "signal")
        ext.append((m.ticks(ev.at_us), Step("world", ev.vcpu, name)))
    ext.append((never, Step("world", 0, "end")))
    ext_pos = 0
    start = [m.ticks(t) for t in workload.start_us] if workload.start_us else [0] * n_vcpus

    s = m.initial()
    t_act = [thread_activity(s, i) for i in range(n_threads)]
    v_act = _vcpu_activities(s)
    events = [Event(0, i, s.threads[i].vcpu, "thread_state", a) for i, a in enumerate(t_act)]
    events += [Event(0, -1, v, "vcpu_state", a) for v, a in enumerate(v_act)]
    steps: list[tuple[int, Step]] = []
    acc = MetricsAccumulator(config) if metrics_only else None
    n_steps = 0
    same_time = 0  # steps taken since the time last advanced
    since: dict[Step, int] = {}  # enabled step -> time it became enabled
    busy_left: dict[tuple[int, int], int] = {}  # (vcpu, pc) -> ticks of the burst left
    now = 0
    fixed = clock.fixed
    cost = clock.cost
    dec_steps = [Step("world", v, "decrementer") for v in range(n_vcpus)]
    tick_step = Step("world", 0, "hdec")
    apply = m.apply
    enabled_steps = m.enabled

    while True:
        best_t = never
        best = None
        enabled = enabled_steps(s, False)
        for st in enabled:
            t0 = since.get(st)
            if t0 is None:
                t0 = since[st] = now
            name = st[2]
            c = fixed.get(name)
            if c is not None:
                t = t0 + c
            elif name == "guest_run":
                v = s.threads[st[1]].vcpu
                key = (v, s.vcpus[v].pc)
                left = busy_left.get(key)
                if left is None:
                    left = busy_left[key] = m.ticks(workload.op(*key).us)
                t = t0 + left
            elif name == "KVM_RUN" and s.vcpus[st[1]].state == KVMPPC_VCPU_STOPPED:
                t = (t0 if t0 > start[st[1]] else start[st[1]]) + cost(s, st)
            else:
                t = t0 + cost(s, st)
            if t < best_t:
                best_t, best = t, st
        if len(since) > len(enabled):
            # Steps no longer enabled forget when they became enabled; a busy burst whose
            # thread has left guest code keeps the part it has run.
            for st in [st for st in since if st not in enabled]:
                t0 = since.pop(st)
                if st[2] == "guest_run":
                    v = s.threads[st[1]].vcpu
                    if v >= 0:
                        key = (v, s.vcpus[v].pc)
                        if key in busy_left:
                            busy_left[key] = max(0, busy_left[key] - (now - t0))
        # Environment: guest decrementers, the host tick, scripted events.
        for v, u in enumerate(s.vcpus):
            if u.dec == DEC_ARMED:
                t = u.dec_expires if u.dec_expires > now else now
                if t < best_t:
                    best_t, best = t, dec_steps[v]
        vc = s.vcore
        if vc.in_guest and not vc.hdec_expired:
            t = (now // host_tick + 1) * host_tick
            if t < best_t:
                best_t, best = t, tick_step
        t, ext_step = ext[ext_pos]
        if t < now:
            t = now
        if t < best_t:
            best_t, best = t, ext_step
            ext_pos += 1
        if best is None:
            break
        if n_steps >= max_steps:
            raise ValueError(f"max_steps: got {max_steps:,}; the run needs more model steps "
                             f"to reach until={until!r} us (it is at "
                             f"{config.us(now):,.3f} us); allowed: a larger max_steps, a "
                             f"shorter until or a lighter workload")
        if best_t == now:
            same_time += 1
            if same_time > _MAX_STEPS_AT_ONE_TIME:
                raise ValueError(
                    f"costs: got {show(config.costs)}; the run took {same_time:,} steps "
                    f"without time advancing at {config.us(now):,.3f} us (step "
                    f"{best.label()}); allowed: costs that make every loop of the "
                    f"protocol take time (at least one tick)")
        else:
            same_time = 0
        n_steps += 1
        now = best_t
        if best[2] == "guest_run":
            v = s.threads[best[1]].vcpu
            busy_left.pop((v, s.vcpus[v].pc), None)
        prev = s
        s, evs = apply(s, best, now)
        if acc is None:
            steps.append((now, best))
        events += evs
        if check_invariants:
            bad = check_step(m, prev, best, s)
            if bad:
                name, msg = bad[0]
                raise InvariantViolation(f"invariant {name} broken by step {best.label()} "
                                         f"at t={now}: {msg}")
        # The actor that moved restarts its clock (an actor has at most one enabled step:
        # this one); the others keep theirs.
        since.pop(best, None)
        _activities(s, prev, now, t_act, v_act, events)
        if acc is not None:
            acc.add(events)
            events.clear()

    if acc is not None:
        acc.add(events)
        return acc.finish(end, n_steps)
    return Trace(config=config, workload=workload, events=events, steps=steps, end=end,
                 source="simulate")


def _activities(s: Machine, prev: Machine, now: int, t_act: list[str], v_act: list[str],
                events: list[Event]) -> None:
    """Emit ``thread_state`` / ``vcpu_state`` events where an activity changed.

    A thread's activity depends only on its ``loc``; a vcpu's on its ``state`` and
    ``ceded`` and on the threads in "guest" or "nap" (:func:`_vcpu_activities`).  Most
    steps change none of these, and are skipped after a few identity and string
    comparisons (this runs after every simulated step)."""
    threads, pthreads = s.threads, prev.threads
    redo = False  # must the vcpus' activities be recomputed?
    if threads is not pthreads:
        for i, t in enumerate(threads):
            pt = pthreads[i]
            if t is pt:
                continue
            loc, ploc = t.loc, pt.loc
            if loc == ploc and t.vcpu == pt.vcpu:
                continue
            a = LOC_ACTIVITY.get(loc, "entry")
            if a != t_act[i]:
                t_act[i] = a
                events.append(_new(Event, (now, i, t.vcpu, "thread_state", a, -1)))
            if not redo:
                redo = loc in _VCPU_LOCS or ploc in _VCPU_LOCS
    vcpus, pvcpus = s.vcpus, prev.vcpus
    if not redo and vcpus is not pvcpus:
        for u, pu in zip(vcpus, pvcpus, strict=True):
            if u is not pu and (u.state != pu.state or u.ceded != pu.ceded):
                redo = True
                break
    if redo:
        for v, a in enumerate(_vcpu_activities(s)):
            if a != v_act[v]:
                v_act[v] = a
                events.append(_new(Event, (now, -1, v, "vcpu_state", a, -1)))
