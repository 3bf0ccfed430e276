"""The invariants of reference section 10 (and a few consequences), as named checks.

:func:`check_step` checks one step (the state before, the step, the state after) and
returns the broken invariants as ``(name, message)`` pairs: those of the state after
(:func:`check_state`) and those about the step (:func:`check_transition`).  The
simulator can run it after every step (``simulate(..., check_invariants=True)``); the
explorer runs :func:`check_transition` on every transition it discovers and
:func:`check_state` on every state the first time it reaches it.  :data:`INVARIANTS`
describes each one.
"""

from __future__ import annotations

from .edit import Step
from .state import (
    BOOK3S_IRQPRIO_EXTERNAL,
    BOOK3S_IRQPRIO_EXTERNAL_LEVEL,
    H_SUCCESS,
    KVMPPC_VCPU_BUSY_IN_HOST,
    KVMPPC_VCPU_RUNNABLE,
    REGS_LOST,
    VCORE_INACTIVE,
    VCORE_RUNNING,
    VCORE_SLEEPING,
    Machine,
    entry_count,
    exit_count,
)

__all__ = ["INVARIANTS", "NOT_ON_POWER9", "check_state", "check_step", "check_transition"]

#: name -> (reference section 10 item or "consequence", what must hold)
INVARIANTS: dict[str, tuple[str, str]] = {
    "entry_only_while_no_exit": (
        "10.1", "the entry count is incremented only while the exit count is 0"),
    "nap_leaves_one_awake": (
        "10.2", "popcount(napping_threads) < entry count: one entered thread stays awake"),
    "cede_handled_before_nap": (
        "10.3", "a vcpu past kvmppc_h_cede's prodded test has trap = 0 and r3 = H_SUCCESS"),
    "nap_is_flagged": (
        "10.2", "a thread napping in H_CEDE has paca napping = 1 and its napping_threads "
        "bit set"),
    "first_exiter_ipis_nappers": (
        "10.4", "after the first exiter's poke every napping thread but itself has an IPI"),
    "woken_napper_checks_exit": (
        "10.5", "a woken napper re-enters iff no exit is in progress"),
    "primary_leaves_last": (
        "10.6", "the primary leaves when exit count == entry count; secondaries when "
        "in_guest == 0; the host reads vcpu state when nap_count >= n_woken"),
    "ptids_in_order": (
        "10.7", "ptids: vcpus not ceded first in list order, then ceded; every runnable "
        "vcpu started (policy realmode)"),
    "ceded_vcpu_has_timer": (
        "10.8", "a runnable ceded vcpu outside the guest has its DEC hrtimer armed or a "
        "DEC queued"),
    "vcore_runs_only_when_ready": (
        "10.9", "the vcore starts only from INACTIVE with n_busy == 0, and sleeps only if "
        "every runnable vcpu is ceded"),
    "one_interrupt_per_entry": (
        "10.10", "at most one interrupt synthesized at entry, external first; ceded = 0"),
    "nv_registers_preserved": (
        "consequence", "guest code always sees the NV GPRs/FPRs it last wrote"),
    "counts_consistent": (
        "consequence", "exit count <= entry count <= threads started"),
    "no_napper_after_exit": (
        "consequence", "no thread is left napping in H_CEDE once the core has left"),
    # The POWER9 path (kvmcede.p9); checked only there.
    "p9_ceded_vcpu_has_timer": (
        "10.8 (POWER9)", "a ceded vcpu whose task sleeps in the cede wait has its DEC "
        "hrtimer armed, or is woken (interrupt pending or prodded)"),
    "p9_thread_runs_own_vcpu": (
        "POWER9", "a thread in (or entering / leaving) the guest runs only its own vcpu, "
        "whose thread_cpu is that thread or -1"),
    "p9_not_ceded_in_guest": (
        "10.10 (POWER9)", "ceded is 0 whenever the vcpu is in the guest"),
    "p9_exits_are_per_thread": (
        "POWER9", "no step takes a thread out of the guest but that thread's own (a kick "
        "only IPIs it); a vcpu's exit never takes another thread out"),
}

#: The invariants that do not apply to the POWER9 path, and why (each is about the shared
#: vcore or the real-mode nap, which the P9 path does not have).
NOT_ON_POWER9: dict[str, str] = {
    "entry_only_while_no_exit": "no entry_exit_count: each thread enters alone",
    "nap_leaves_one_awake": "no nap in the guest: a ceded vcpu leaves it",
    "cede_handled_before_nap": "no real-mode H_CEDE (kvmppc_cede sets trap = 0 after exit)",
    "nap_is_flagged": "no nap in the guest",
    "first_exiter_ipis_nappers": "no whole-core exit, no nappers to IPI",
    "woken_napper_checks_exit": "no napping thread to wake",
    "primary_leaves_last": "no primary and secondaries: every thread leaves alone",
    "ptids_in_order": "no kvmppc_run_core, no ptids: vcpu v runs on its own thread",
    "ceded_vcpu_has_timer": "about the vcore's runnable list; p9_ceded_vcpu_has_timer "
                            "instead",
    "vcore_runs_only_when_ready": "no vcore runner: each vcpu's task runs it alone",
    "one_interrupt_per_entry": "about kvmppc_cede_reentry; p9_not_ceded_in_guest instead",
    "counts_consistent": "no entry_exit_count, n_woken or nap_count",
    "no_napper_after_exit": "no nap in the guest",
}

_EXT = (1 << BOOK3S_IRQPRIO_EXTERNAL) | (1 << BOOK3S_IRQPRIO_EXTERNAL_LEVEL)
#: Task locations whose step ends the runner's previous run or sleep and marks the vcore
#: INACTIVE itself before the loop test in the same vc->lock section.
_RUNNER_RELOCKS = frozenset({"kvmppc_run_core", "kvmppc_vcore_blocked",
                             "kvmppc_vcore_blocked.schedule", "kvmppc_vcore_blocked.poll"})
_PAST_PRODDED_TEST = frozenset({"kvmppc_h_cede.napping_threads", "kvmppc_h_cede.recheck",
                                "kvmppc_h_cede.nap", "nap"})


def check_state(m, s: Machine) -> list[tuple[str, str]]:
    """Invariants that are properties of one state."""
    if m.config.cpu == "POWER9":  # the shared-vcore invariants do not apply (NOT_ON_POWER9)
        return _p9_state(s)
    bad: list[tuple[str, str]] = []
    vc = s.vcore
    eec = vc.entry_exit_count
    entered = entry_count(eec)
    nt = vc.napping_threads
    if nt and nt.bit_count() >= entered:
        bad.append(("nap_leaves_one_awake", f"napping_threads = {nt:#06b} with entry count "
                    f"{entered}"))
    for i, t in enumerate(s.threads):
        loc = t.loc
        if loc in _PAST_PRODDED_TEST and t.vcpu >= 0:
            u = s.vcpus[t.vcpu]
            if u.trap != 0 or u.r3 != H_SUCCESS:
                bad.append(("cede_handled_before_nap", f"thread {i} at {loc} with vcpu "
                            f"{t.vcpu}: trap = {u.trap:#x}, r3 = {u.r3:#x}"))
        if loc == "nap":
            ptid = s.vcpus[t.vcpu].ptid if t.vcpu >= 0 else i
            if not t.napping or not nt >> ptid & 1:
                bad.append(("nap_is_flagged", f"thread {i} naps in H_CEDE with paca napping "
                            f"= {t.napping} and napping_threads = {nt:#06b}"))
            if s.threads[0].loc == "host":  # the primary has left the partition
                bad.append(("no_napper_after_exit", f"thread {i} (vcpu {t.vcpu}) still naps "
                            "in H_CEDE but the core has left the guest"))
        if loc == "guest" and t.vcpu >= 0:
            u = s.vcpus[t.vcpu]
            if t.gprs != u.gpr_expect or t.fprs != u.fpr_expect:
                lost = "lost in nap" if REGS_LOST in (t.gprs, t.fprs) else "stale"
                bad.append(("nv_registers_preserved", f"vcpu {t.vcpu} runs with NV regs "
                            f"tag {t.gprs}/{t.fprs} ({lost}), it last wrote "
                            f"{u.gpr_expect}/{u.fpr_expect}"))
    started = vc.n_woken + 1
    if exit_count(eec) > entered or (entered > started and vc.vcore_state == VCORE_RUNNING):
        bad.append(("counts_consistent", f"entry count {entered}, exit count "
                    f"{exit_count(eec)}, threads started {started}"))
    if vc.vcore_state != VCORE_RUNNING:
        for v in vc.runnable:
            u = s.vcpus[v]
            if (u.state == KVMPPC_VCPU_RUNNABLE and u.ceded and not u.timer_running
                    and not u.pending_exceptions and _on_no_thread(s, v)):
                bad.append(("ceded_vcpu_has_timer", f"vcpu {v} is ceded in the host with "
                            "no DEC hrtimer and nothing queued"))
    return bad


def _on_no_thread(s: Machine, v: int) -> bool:
    return all(t.vcpu != v or t.loc in ("secondary_nap", "host") for t in s.threads)


def check_step(m, prev: Machine, step: Step, s: Machine) -> list[tuple[str, str]]:
    """Invariants of one step ``prev --step--> s`` (including those of ``s``)."""
    return check_state(m, s) + check_transition(m, prev, step, s)


def check_transition(m, prev: Machine, step: Step, s: Machine) -> list[tuple[str, str]]:
    """The invariants of one step ``prev --step--> s`` that are about the step itself
    (:func:`check_step` without those of the state ``s``)."""
    if m.config.cpu == "POWER9":
        return _p9_transition(prev, step, s)
    bad: list[tuple[str, str]] = []
    pv, nv = prev.vcore, s.vcore
    pe, ne = pv.entry_exit_count, nv.entry_exit_count
    # 10.1: the entry count grows only while nobody has started exiting.
    if entry_count(ne) > entry_count(pe) and exit_count(pe) != 0 and (
            nv.vcore_state == VCORE_RUNNING and pv.vcore_state == VCORE_RUNNING):
        bad.append(("entry_only_while_no_exit", f"entry count {entry_count(pe)} -> "
                    f"{entry_count(ne)} with exit count {exit_count(pe)}"))
    if step.actor == "thread":
        i = step.index
        pt = prev.threads[i]
        t = s.threads[i]
        if pt.loc == "hdec_soon.poke":
            for j in range(len(s.threads)):
                if j != i and pv.napping_threads >> j & 1 and not s.threads[j].ipi:
                    bad.append(("first_exiter_ipis_nappers", f"thread {j} is in "
                                f"napping_threads {pv.napping_threads:#06b} but thread {i} "
                                "did not IPI it"))
        elif pt.loc == "kvm_end_cede.check":
            reenter = t.loc == "kvmppc_cede_reentry"
            if reenter != (exit_count(pe) == 0):
                bad.append(("woken_napper_checks_exit", f"thread {i} went to {t.loc} with "
                            f"exit count {exit_count(pe)}"))
        elif pt.loc == "hdec_soon.wait_exits":
            if exit_count(pe) != entry_count(pe):
                bad.append(("primary_leaves_last", f"primary left with entry count "
                            f"{entry_count(pe)} and exit count {exit_count(pe)}"))
        elif pt.loc in ("hdec_soon.wait_in_guest", "secondary_too_late"):
            if pv.in_guest != 0:
                bad.append(("primary_leaves_last", f"secondary {i} left while in_guest = 1"))
        elif pt.loc == "kvmppc_cede_reentry" and pt.vcpu >= 0:
            u0, u1 = prev.vcpus[pt.vcpu], s.vcpus[pt.vcpu]
            if u1.ceded:
                bad.append(("one_interrupt_per_entry", f"vcpu {pt.vcpu} still ceded after "
                            "kvmppc_cede_reentry"))
            if (u0.vector == 0 and u0.msr_ee and u0.pending_exceptions & _EXT
                    and u1.vector != 0x500):
                bad.append(("one_interrupt_per_entry", f"vcpu {pt.vcpu}: external pending "
                            f"with EE on, but vector {u1.vector:#x} synthesized"))
    elif step.actor == "task":
        pl, nl = prev.tasks[step.index].loc, s.tasks[step.index].loc
        if pl == "kvmppc_run_core" and pv.nap_count < pv.n_woken:
            bad.append(("primary_leaves_last", f"host read vcpu state with nap_count "
                        f"{pv.nap_count} < n_woken {pv.n_woken}"))
        started = prev.threads[0].loc == "host" and s.threads[0].loc != "host"
        if nl == "kvmppc_run_core" and started:
            # This critical section started the vcore (thread 0 left the host for the
            # guest).  It must have found it INACTIVE, unless it is the runner's own
            # section that made it INACTIVE first (kvmppc_run_core ending the last run,
            # or waking from kvmppc_vcore_blocked).
            # n_busy as the section saw it: a vcpu back from the host leaves n_busy in the
            # same section; after the step too, since it may remove a signalled vcpu.
            v = step.index
            back = (prev.vcpus[v].state == KVMPPC_VCPU_BUSY_IN_HOST
                    and s.vcpus[v].state == KVMPPC_VCPU_RUNNABLE)
            busy = max(pv.n_busy - back, nv.n_busy)
            found = pv.vcore_state if pl not in _RUNNER_RELOCKS else VCORE_INACTIVE
            if found != VCORE_INACTIVE or busy:
                bad.append(("vcore_runs_only_when_ready", f"vcore started from state "
                            f"{pv.vcore_state} with n_busy {busy}"))
            bad.extend(_check_ptids(m, prev, s))
        elif nl == "kvmppc_vcore_blocked.schedule":
            busy = [v for v in nv.runnable if not s.vcpus[v].ceded]
            if busy or nv.vcore_state != VCORE_SLEEPING:
                bad.append(("vcore_runs_only_when_ready", f"vcore sleeps while vcpus {busy} "
                            "are not ceded"))
    return bad


def _check_ptids(m, prev: Machine, s: Machine) -> list[tuple[str, str]]:
    # Judge by the state after the step: the same critical section delivers interrupts
    # (ending cedes) and drops signalled vcpus before kvmppc_run_core assigns ptids.
    run = s.vcore.runnable
    busy = [v for v in run if not s.vcpus[v].ceded]
    ceded = [v for v in run if s.vcpus[v].ceded]
    expect = busy + ceded if m.config.policy == "realmode" else busy
    got = sorted((s.vcpus[v].ptid, v) for v in expect)
    if [v for _, v in got] != expect or [p for p, _ in got] != list(range(len(expect))):
        return [("ptids_in_order", f"expected ptid order {expect}, got {got}")]
    for p, v in enumerate(expect):
        if s.threads[p].vcpu != v:
            return [("ptids_in_order", f"vcpu {v} (ptid {p}) not started on thread {p}")]
    return []


# ============================================================================================
# The POWER9 path (kvmcede.p9)
# ============================================================================================

#: Thread locations of the P9 path where a thread holds its vcpu (in, entering, leaving).
_P9_ON_THREAD = frozenset({"kvmhv_p9_guest_entry", "guest", "kvmhv_p9_guest_entry.exit",
                           "kvmppc_cede"})


def _p9_state(s: Machine) -> list[tuple[str, str]]:
    """The invariants of one state on the POWER9 path."""
    bad: list[tuple[str, str]] = []
    for i, t in enumerate(s.threads):
        if t.loc not in _P9_ON_THREAD:
            continue
        v = t.vcpu
        if v != i or s.vcpus[v].thread_cpu not in (-1, i):
            bad.append(("p9_thread_runs_own_vcpu", f"thread {i} at {t.loc} holds vcpu {v}"
                        + ("" if v < 0 else f" (thread_cpu {s.vcpus[v].thread_cpu})")))
            continue
        u = s.vcpus[v]
        if t.loc in ("kvmhv_p9_guest_entry", "guest") and u.ceded:
            bad.append(("p9_not_ceded_in_guest", f"vcpu {v} is ceded at {t.loc}"))
        if t.loc == "guest" and (t.gprs != u.gpr_expect or t.fprs != u.fpr_expect):
            bad.append(("nv_registers_preserved", f"vcpu {v} runs with NV regs tag "
                        f"{t.gprs}/{t.fprs}, it last wrote {u.gpr_expect}/{u.fpr_expect}"))
    for v, k in enumerate(s.tasks):
        u = s.vcpus[v]
        if (k.loc == "kvmhv_run_single_vcpu.schedule" and u.ceded and not u.timer_running
                and not u.pending_exceptions and not u.prodded):
            bad.append(("p9_ceded_vcpu_has_timer", f"vcpu {v} sleeps ceded with no DEC "
                        "hrtimer and nothing to wake it"))
    return bad


def _p9_transition(prev: Machine, step: Step, s: Machine) -> list[tuple[str, str]]:
    """The invariants of one step on the POWER9 path."""
    mine = step.index if step.actor == "thread" else -1
    for i, (a, b) in enumerate(zip(prev.threads, s.threads, strict=True)):
        if a.loc == "guest" and b.loc != "guest" and i != mine:
            return [("p9_exits_are_per_thread", f"step {step.label()} took thread {i} out "
                     "of the guest")]
    return []
