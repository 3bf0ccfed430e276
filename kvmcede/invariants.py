"""The invariants of reference section 10 (and a few consequences), as named checks.

:func:`check_step` checks one step (the state before, the step, the state after) and
returns the broken invariants as ``(name, message)`` pairs: those of the state after
(:func:`check_state`) and those about the step (:func:`check_transition`).  The
simulator can run it after every step (``simulate(..., check_invariants=True)``); the
explorer runs :func:`check_transition` on every transition it discovers and
:func:`check_state` on every state the first time it reaches it.  :data:`INVARIANTS`
describes each one.

Every item of section 10 is checked in full, by one or more names:

====  ==========================================================================
10.1  ``entry_only_while_no_exit``
10.2  ``nap_leaves_one_awake``, ``nap_is_flagged``
10.3  ``cede_handled_before_nap``, ``host_never_handles_cede`` (policy realmode)
10.4  ``first_exiter_ipis_nappers``, ``hdec_poked_by_first_exiter``
10.5  ``woken_napper_checks_exit``
10.6  ``primary_leaves_last``
10.7  ``ptids_in_order``
10.8  ``ceded_vcpu_has_timer``, ``host_injection_ends_cede``
10.9  ``vcore_runs_only_when_ready``, ``vcore_sleeps_iff_all_ceded``
10.10 ``one_interrupt_per_entry``, ``mer_set_for_external``
====  ==========================================================================

plus consequences (``nv_registers_preserved``, ``counts_consistent``,
``no_napper_after_exit``).  Under memory "store_buffer" a
check about what a thread *decided* uses the value that thread loaded (its own buffered
stores forwarded, :func:`~kvmcede.state.vcore_view`); a check about the machine uses the
newest value in coherence order.
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
    vcore_view,
)

__all__ = ["INVARIANTS", "NOT_ON_POWER9", "check_state", "check_step", "check_transition"]

#: name -> (reference section 10 item or "consequence", what must hold)
INVARIANTS: dict[str, tuple[str, str]] = {
    "entry_only_while_no_exit": (
        "10.1", "the entry count is incremented only while the exit count is 0"),
    "nap_leaves_one_awake": (
        "10.2", "popcount(napping_threads) < entry count: one entered thread stays awake"),
    "cede_handled_before_nap": (
        "10.3", "a vcpu past kvmppc_h_cede's prodded test has trap = 0 and r3 = H_SUCCESS, "
        "on the nap path and on the H_TOO_HARD -> host path alike (policy realmode)"),
    "host_never_handles_cede": (
        "10.3", "the host never runs exit handling for an H_CEDE: every vcpu inside H_CEDE "
        "reaches kvmppc_run_core's exit handling with trap = 0 (policy realmode; under "
        "policy host the host handles every H_CEDE by design)"),
    "nap_is_flagged": (
        "10.2", "a thread napping in H_CEDE has paca napping = 1 and its napping_threads "
        "bit set (broken by the shipped bug prodded_branch: fixed by 04f995a5)"),
    "first_exiter_ipis_nappers": (
        "10.4", "the first exiter's poke IPIs every thread in napping_threads (as it loads "
        "it) but itself, and no other thread"),
    "hdec_poked_by_first_exiter": (
        "10.4", "an exiter goes on to poke HDEC iff it is the first (old value < 0x100) and "
        "others entered (entry count > 1); after the poke HDEC has expired (unless the "
        "exit is itself an HDEC interrupt); a later "
        "exiter (or a first one with entry count <= 1) neither pokes nor IPIs"),

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
    "host_injection_ends_cede": (
        "10.8", "an interrupt the host injects (kvmppc_core_deliver_interrupts) ends the "
        "vcpu's cede: ceded = 0 and its DEC hrtimer cancelled"),
    "vcore_runs_only_when_ready": (
        "10.9", "the vcore starts only from INACTIVE with n_busy == 0, and sleeps only if "
        "every runnable vcpu is ceded"),
    "vcore_sleeps_iff_all_ceded": (
        "10.9", "the vcore is never started while every runnable vcpu is ceded (it sleeps "
        "instead), and its runner sleeps on vc->wq, where a kick of any member vcpu (wqp) "
        "finds it"),
    "one_interrupt_per_entry": (
        "10.10", "at most one interrupt synthesized at entry, external first (a DEC only if "
        "no external is pending, none if one was injected already); ceded = 0"),
    "mer_set_for_external": (
        "10.10", "kvmppc_cede_reentry sets LPCR_MER whenever an external interrupt is "
        "pending, so it is taken when the guest enables EE"),
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
    "host_never_handles_cede": "H_CEDE is handled in the host by design (kvmppc_cede after "
                               "the exit)",
    "hdec_poked_by_first_exiter": "no whole-core exit, no first exiter, no HDEC poke",
    "host_injection_ends_cede": "the P9 loop clears ceded itself once the vcpu is woken; "
                                "p9_ceded_vcpu_has_timer and p9_not_ceded_in_guest instead",
    "vcore_sleeps_iff_all_ceded": "no vcore runner: each vcpu's task sleeps on its own "
                                  "rcuwait",
    "mer_set_for_external": "about kvmppc_cede_reentry, which the P9 path does not have",
    "counts_consistent": "no entry_exit_count, n_woken or nap_count",
    "no_napper_after_exit": "no nap in the guest",
}

_EXT = (1 << BOOK3S_IRQPRIO_EXTERNAL) | (1 << BOOK3S_IRQPRIO_EXTERNAL_LEVEL)
_TRAP_HDEC = 0x980
#: Task locations whose step ends the runner's previous run or sleep and marks the vcore
#: INACTIVE itself before the loop test in the same vc->lock section.
_RUNNER_RELOCKS = frozenset({"kvmppc_run_core", "kvmppc_vcore_blocked",
                             "kvmppc_vcore_blocked.schedule", "kvmppc_vcore_blocked.poll"})
_PAST_PRODDED_TEST = frozenset({"kvmppc_h_cede.napping_threads", "kvmppc_h_cede.recheck",
                                "kvmppc_h_cede.nap", "nap", "kvm_end_cede.clear",
                                "kvm_end_cede.check"})
#: The exit path, from hdec_soon to the wait for the partition switch.
_EXIT_PATH = frozenset({"hdec_soon", "hdec_soon.poke", "hdec_soon.wait_in_guest",
                        "hdec_soon.wait_exits"})


def check_state(m, s: Machine) -> list[tuple[str, str]]:
    """Invariants that are properties of one state."""
    if m.config.cpu == "POWER9":  # the shared-vcore invariants do not apply (NOT_ON_POWER9)
        return _p9_state(s)
    bad: list[tuple[str, str]] = []
    vc = s.vcore
    eec = vcore_view(s, "entry_exit_count")
    entered = entry_count(eec)
    nt = vcore_view(s, "napping_threads")
    realmode = m.config.policy == "realmode"
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
        elif loc in _EXIT_PATH and realmode and t.vcpu >= 0:
            # The H_TOO_HARD -> host path of a cede (the last one awake, a cede that met
            # an exit, a woken napper joining one) carries trap 0 and r3 = H_SUCCESS.
            u = s.vcpus[t.vcpu]
            if u.guest == "cede" and (t.trap != 0 or u.r3 != H_SUCCESS or (
                    loc != "hdec_soon" and u.trap != 0)):
                bad.append(("cede_handled_before_nap", f"thread {i} exits from H_CEDE of "
                            f"vcpu {t.vcpu} with trap {t.trap:#x}, r3 = {u.r3:#x}"))
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
    pe = vcore_view(prev, "entry_exit_count")
    ne = vcore_view(s, "entry_exit_count")
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
            nt = vcore_view(prev, "napping_threads", i)  # what the exiter loads
            for j in range(len(s.threads)):
                sent = s.threads[j].ipi and not prev.threads[j].ipi
                if j != i and nt >> j & 1 and not s.threads[j].ipi:
                    bad.append(("first_exiter_ipis_nappers", f"thread {j} is in "
                                f"napping_threads {nt:#06b} but thread {i} did not IPI it"))
                elif sent and (j == i or not nt >> j & 1):
                    bad.append(("first_exiter_ipis_nappers", f"thread {i} IPI'd thread {j}, "
                                f"which is not in napping_threads {nt:#06b}"))
            if pt.trap != _TRAP_HDEC and not nv.hdec_expired:
                bad.append(("hdec_poked_by_first_exiter", f"thread {i} (first exiter, trap "
                            f"{pt.trap:#x}) left HDEC unexpired"))
        elif pt.loc == "hdec_soon":
            old = vcore_view(prev, "entry_exit_count", i)  # the value its lwarx returns
            should = old < 0x100 and entry_count(old) > 1
            if (t.loc == "hdec_soon.poke") != should:
                bad.append(("hdec_poked_by_first_exiter", f"thread {i} exits with old "
                            f"entry_exit_count {old:#06x} and goes to {t.loc}"))
            sent = [j for j, (a, b) in enumerate(zip(prev.threads, s.threads))
                    if b.ipi and not a.ipi]
            if sent:
                bad.append(("hdec_poked_by_first_exiter", f"thread {i}'s exit increment "
                            f"IPI'd threads {sent}"))
        elif pt.loc == "kvm_end_cede.check":
            reenter = t.loc == "kvmppc_cede_reentry"
            seen = exit_count(vcore_view(prev, "entry_exit_count", i))
            if reenter != (seen == 0):
                bad.append(("woken_napper_checks_exit", f"thread {i} went to {t.loc} with "
                            f"exit count {seen}"))
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
            ext = u0.pending_exceptions & _EXT
            if u0.vector == 0 and u0.msr_ee and ext and u1.vector != 0x500:
                bad.append(("one_interrupt_per_entry", f"vcpu {pt.vcpu}: external pending "
                            f"with EE on, but vector {u1.vector:#x} synthesized"))
            elif u0.vector and u1.vector != u0.vector:
                bad.append(("one_interrupt_per_entry", f"vcpu {pt.vcpu}: {u1.vector:#x} "
                            f"synthesized on top of the injected {u0.vector:#x}"))
            elif u0.vector == 0 and u1.vector and (not u0.msr_ee or (
                    u1.vector == 0x900 and ext)):
                bad.append(("one_interrupt_per_entry", f"vcpu {pt.vcpu}: {u1.vector:#x} "
                            f"synthesized with EE {int(u0.msr_ee)}, pending "
                            f"{u0.pending_exceptions:#x}"))
            if ext and not t.mer:
                bad.append(("mer_set_for_external", f"vcpu {pt.vcpu} has an external "
                            "interrupt pending but LPCR_MER is clear after "
                            "kvmppc_cede_reentry"))
    else:
        # Host side (tasks, the DEC hrtimer, H_PROD, the outside world): an interrupt it
        # injects (a vector set outside the guest) ends the cede.
        for w, (u0, u1) in enumerate(zip(prev.vcpus, s.vcpus)):
            if u1.vector and not u0.vector and (u1.ceded or u1.timer_running):
                bad.append(("host_injection_ends_cede", f"vcpu {w} was injected "
                            f"{u1.vector:#x} but ceded = {u1.ceded}, dec_timer "
                            f"{'armed' if u1.timer_running else 'off'}"))
    if step.actor == "task":
        pl, nl = prev.tasks[step.index].loc, s.tasks[step.index].loc
        if pl == "kvmppc_run_core" and pv.nap_count < pv.n_woken:
            bad.append(("primary_leaves_last", f"host read vcpu state with nap_count "
                        f"{pv.nap_count} < n_woken {pv.n_woken}"))
        if pl == "kvmppc_run_core" and m.config.policy == "realmode":
            for w in pv.runnable:
                u0 = prev.vcpus[w]
                if u0.guest == "cede" and u0.trap != 0:
                    bad.append(("host_never_handles_cede", f"vcpu {w} comes back from "
                                f"H_CEDE with trap {u0.trap:#x}: the host would handle it"))
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
            if all(s.vcpus[w].ceded for w in nv.runnable):
                bad.append(("vcore_sleeps_iff_all_ceded", f"vcore started with every "
                            f"runnable vcpu {list(nv.runnable)} ceded"))
            bad.extend(_check_ptids(m, prev, s))
        elif nl == "kvmppc_vcore_blocked.schedule":
            busy = [v for v in nv.runnable if not s.vcpus[v].ceded]
            if busy or nv.vcore_state != VCORE_SLEEPING:
                bad.append(("vcore_runs_only_when_ready", f"vcore sleeps while vcpus {busy} "
                            "are not ceded"))
            k = s.tasks[step.index]
            if step.index not in nv.wq and not k.woken and not k.signal:
                bad.append(("vcore_sleeps_iff_all_ceded", f"the runner (vcpu "
                            f"{step.index}'s task) sleeps but not on vc->wq {nv.wq}"))
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
