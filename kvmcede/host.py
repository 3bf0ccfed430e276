"""``book3s_hv.c``: the host side, one task per vcpu.

``kvmppc_run_vcpu`` (join the vcore, late join, ``n_busy``, ``kvmppc_wait_for_exec``,
blocked versus run, interrupt delivery, signals), ``kvmppc_run_core`` (ptid assignment,
starting every runnable vcpu, waiting for ``nap_count``, exit handling, ``set_timer``
versus ``end_cede``, ``kvmppc_remove_runnable``), ``kvmppc_vcore_blocked`` (the shared
wait queue), ``kvmppc_pseries_do_hcall`` (H_PROD, H_CONFER) and ``kvm_vcpu_kick``.

Reference: Linux 3.2-3.4 ``arch/powerpc/kvm/book3s_hv.c`` (the 3.4 loop order: deliver
interrupts, then count the ceded vcpus); ``reference/kernel-cede.md`` section 5.

What differs from the 3.4 source, on purpose:

* Bugs off (the default) means the later fixes are in: H_PROD kicks the *target* and a
  prodded vcpu counts as woken (8464c884, 2016, modern ``kvmppc_vcpu_woken``).  With
  ``bugs={"hprod_wakes_caller"}`` the 3.2-4.9 behaviour is modelled instead.
* Policy ``"host"`` (before 19ccb76a) is **inferred**: the pre-commit host handler was
  not read.  Modelled as: H_CEDE exits the whole core; the host marks the vcpu ceded and
  arms its DEC hrtimer (as ``kvmppc_vcpu_block`` did in v3.0); ``kvmppc_run_core`` starts
  only vcpus that are not ceded; a ceded vcpu comes back when an interrupt is delivered
  to it in the host.  The shared vcore wait queue is used for both policies.
* The runner is always on thread 0 of an otherwise offline core (``on_primary_thread``).
"""

from __future__ import annotations

from collections.abc import Callable

from .edit import Edit
from .state import (
    BOOK3S_IRQPRIO_DECREMENTER,
    BOOK3S_IRQPRIO_EXTERNAL,
    BOOK3S_IRQPRIO_EXTERNAL_LEVEL,
    DEC_ARMED,
    DEC_NEGATIVE,
    H_SUCCESS,
    KVMPPC_VCPU_BUSY_IN_HOST,
    KVMPPC_VCPU_RUNNABLE,
    KVMPPC_VCPU_STOPPED,
    RESUME_GUEST,
    RESUME_HOST,
    VCORE_EXITING,
    VCORE_INACTIVE,
    VCORE_RUNNING,
    VCORE_SLEEPING,
    Machine,
    exit_count,
)

__all__ = ["TASK_READS_SHARED", "TASK_STEPS", "all_idle", "end_cede", "kick", "prod_wakes",
           "task_step"]

_DEC = 1 << BOOK3S_IRQPRIO_DECREMENTER
EINTR = -4


def prod_wakes(m) -> bool:
    """True when a prodded vcpu counts as woken (the 8464c884 fix is in)."""
    return "hprod_wakes_caller" not in m.config.bugs


# ============================================================================================
# Which step a task can take
# ============================================================================================

def task_step(s: Machine, v: int, m) -> str | None:
    """Name of the step vcpu ``v``'s task can take in state ``s``, or None (asleep)."""
    t = s.tasks[v]
    loc = t.loc
    if loc == "kvmppc_wait_for_exec":
        if not (t.woken or t.signal or s.vcpus[v].state != KVMPPC_VCPU_RUNNABLE):
            return None
    elif loc == "kvmppc_vcore_blocked.schedule":
        if not (t.woken or t.signal):
            return None
    elif loc == "kvmppc_run_core":
        # __kvmppc_vcore_entry has returned (thread 0 is back in the host) and
        # kvmppc_wait_for_nap sees every woken secondary back in nap.
        vc = s.vcore
        if s.threads[0].loc != "host" or vc.nap_count < vc.n_woken:
            return None
    elif loc == "kvmppc_run_vcpu.out":
        # With a signal pending, wait (uninterruptibly) for a running vcore to finish.
        if (s.vcpus[v].state == KVMPPC_VCPU_RUNNABLE
                and s.vcore.vcore_state in (VCORE_RUNNING, VCORE_EXITING)):
            return None
    return _STEP_NAME[loc]


#: The locations where a task's step depends on more than the task itself and its vcpu:
#: the vcore and thread 0.  Model.enabled keeps the step of a task anywhere else while
#: those change.
TASK_READS_SHARED = frozenset({"kvmppc_run_core", "kvmppc_run_vcpu.out"})


# ============================================================================================
# Helpers shared by several paths (each one kernel function)
# ============================================================================================

def kick(e: Edit, v: int, why: str) -> None:
    """``kvm_vcpu_kick``: wake whoever waits on the vcpu's ``wqp`` (``&vc->wq``, the
    runner sleeping in kvmppc_vcore_blocked); else, if the vcpu is in a running vcore,
    ``smp_send_reschedule(vcpu->cpu)`` — and ``vcpu->cpu`` is thread 0 of the core, so
    the whole core leaves the guest (the 3.x behaviour 54695c30 later improved)."""
    vc = e.vcore
    cpu = e.vcpus[v].cpu
    if vc.wq:
        for w in vc.wq:
            e.task(w, woken=True)
        e.vc(wq=())
        e.event("kvm_vcpu_kick", -1, v, f"{why}: wake_up_interruptible(&vc->wq) wakes the "
                "vcore's runner")
        e.event("host_wakeup", -1, v, why)
    elif cpu != -1 and e.threads[cpu - vc.pcpu].loc == "host":
        # Between switch_to_host and kvmppc_run_core's exit handling vcpu->cpu is still
        # pcpu, but thread 0 runs host code: the host takes the reschedule IPI itself, so
        # it must not linger and pull the *next* guest entry straight back out.
        e.event("kvm_vcpu_kick", -1, v, f"{why}: smp_send_reschedule(cpu {cpu}), taken "
                "by the host (the core is already out of the guest)")
    elif cpu != -1:
        target = cpu - vc.pcpu
        e.thread(target, ipi=True)
        e.event("kvm_vcpu_kick", -1, v, f"{why}: smp_send_reschedule(cpu {cpu}) -> IPI "
                f"to thread {target}")
        e.event("ipi", -1, v, f"host reschedule IPI to thread {target} ({why})", target)
    else:
        e.event("kvm_vcpu_kick", -1, v, f"{why}: vcpu not in the guest, nobody waiting")


def end_cede(e: Edit, v: int) -> None:
    """``kvmppc_end_cede``: ceded = 0 and cancel the DEC hrtimer."""
    if e.vcpus[v].ceded or e.vcpus[v].timer_running:
        e.vcpu(v, ceded=0, timer_running=False)
        e.event("kvmppc_end_cede", -1, v, "ceded = 0, dec_timer cancelled")


def set_timer(e: Edit, v: int) -> None:
    """``kvmppc_set_timer``: DEC already negative -> queue a DEC exception now; else
    start the ``dec_timer`` hrtimer for ``dec_expires``."""
    vcpu = e.vcpus[v]
    if vcpu.dec == DEC_NEGATIVE:
        e.vcpu(v, pending_exceptions=vcpu.pending_exceptions | _DEC)
        e.event("kvmppc_set_timer", -1, v, "DEC already expired: queue a DEC exception")
    else:
        e.vcpu(v, timer_running=True)
        e.event("kvmppc_set_timer", -1, v, "dec_timer hrtimer armed" + (
            "" if vcpu.dec == DEC_ARMED else " (no guest timer event: far future)"))


def deliver_interrupts(e: Edit, v: int) -> None:
    """``kvmppc_core_prepare_to_enter`` / ``kvmppc_core_deliver_interrupts``: inject the
    first pending interrupt (priority order EXTERNAL, DECREMENTER, EXTERNAL_LEVEL) if the
    guest has MSR[EE] on.  Injection resets the MSR, and ``kvmppc_set_msr`` ends a cede.
    Only an edge EXTERNAL is dequeued; a DEC stays queued until the DEC is positive
    again."""
    vcpu = e.vcpus[v]
    pend = vcpu.pending_exceptions
    if not pend or not vcpu.msr_ee or vcpu.vector:
        return
    for prio, vector in ((BOOK3S_IRQPRIO_EXTERNAL, 0x500), (BOOK3S_IRQPRIO_DECREMENTER, 0x900),
                         (BOOK3S_IRQPRIO_EXTERNAL_LEVEL, 0x500)):
        if pend >> prio & 1:
            if prio == BOOK3S_IRQPRIO_EXTERNAL:
                pend &= ~(1 << prio)
            e.vcpu(v, vector=vector, msr_ee=False, pending_exceptions=pend)
            e.event("kvmppc_core_deliver_interrupts", -1, v,
                    f"inject {vector:#x} (kvmppc_inject_interrupt)", vector)
            end_cede(e, v)
            return


def remove_runnable(e: Edit, v: int) -> None:
    """``kvmppc_remove_runnable``: BUSY_IN_HOST, ``n_busy++``, renumber later ptids."""
    vcpu = e.vcpus[v]
    if vcpu.state != KVMPPC_VCPU_RUNNABLE:
        return
    vc = e.vcore
    run = vc.runnable
    k = run.index(v)
    for w in run[k + 1:]:
        e.vcpu(w, ptid=e.vcpus[w].ptid - 1)
    e.vc(runnable=run[:k] + run[k + 1:], n_busy=vc.n_busy + 1)
    e.vcpu(v, state=KVMPPC_VCPU_BUSY_IN_HOST)
    e.event("kvmppc_remove_runnable", -1, v, f"BUSY_IN_HOST (n_busy = {e.vcore.n_busy})")


def start_thread(e: Edit, v: int) -> None:
    """``kvmppc_start_thread``: cancel the vcpu's DEC hrtimer, point thread
    ``pcpu + ptid``'s paca at it (napping = 0), and IPI it awake if it is a secondary."""
    vcpu = e.vcpus[v]
    vc = e.vcore
    t = vc.pcpu + vcpu.ptid
    if vcpu.timer_running:
        e.vcpu(v, timer_running=False)
    e.vcpu(v, cpu=vc.pcpu)
    if vcpu.ptid != 0:
        e.thread(t, vcpu=v, napping=0, cpu_start=True, ipi=True)
        e.vc(n_woken=vc.n_woken + 1)
        e.event("kvmppc_start_thread", -1, v, f"thread {t}: cpu_start = 0x80, xics IPI",
                t)
        e.event("ipi", -1, v, f"host start IPI to thread {t}", t)
    else:
        e.thread(t, vcpu=v, napping=0)
        e.event("kvmppc_start_thread", -1, v, "thread 0 (the runner's own thread)", t)


# ============================================================================================
# The task's steps
# ============================================================================================

def kvmppc_run_vcpu(e: Edit, v: int) -> None:
    """Enter ``kvmppc_run_vcpu``: become RUNNABLE on the vcore's list; a vcpu's first run
    may join a running vcore at once (late join); a vcpu back from the host leaves
    ``n_busy``."""
    vcpu = e.vcpus[v]
    vc = e.vcore
    prev = vcpu.state
    e.task(v, signal=False if e.tasks[v].loc == "userspace" else e.tasks[v].signal)
    e.vcpu(v, trap=0, ret=RESUME_GUEST, exit_reason="", ceded=0,
           state=KVMPPC_VCPU_RUNNABLE)
    e.vc(runnable=(*vc.runnable, v))
    e.event("kvmppc_run_vcpu", -1, v, f"RUNNABLE, n_runnable = {len(vc.runnable) + 1}")
    if prev == KVMPPC_VCPU_STOPPED:
        if vc.vcore_state == VCORE_RUNNING and exit_count(vc.entry_exit_count) == 0:
            e.vcpu(v, ptid=len(vc.runnable))
            e.event("kvmppc_run_vcpu", -1, v, f"late join of the running vcore as ptid "
                    f"{len(vc.runnable)}")
            start_thread(e, v)
    elif prev == KVMPPC_VCPU_BUSY_IN_HOST:
        e.vc(n_busy=e.vcore.n_busy - 1)
    # Still under vc->lock: the kernel goes straight into the loop's first test, so no
    # other task's critical section can slip in between joining and testing.
    run_vcpu_loop(e, v)


def run_vcpu_loop(e: Edit, v: int) -> None:
    """One iteration of kvmppc_run_vcpu's loop, under ``vc->lock``.

    It is not a step of its own: every way into the loop test holds ``vc->lock`` from
    the step before (joining the runnable list, ``kvmppc_run_core`` and
    ``kvmppc_vcore_blocked`` returning with the lock held, or relocking after
    ``kvmppc_wait_for_exec``), so the test ends that step's critical section."""
    vc = e.vcore
    if e.vcpus[v].state != KVMPPC_VCPU_RUNNABLE or e.tasks[v].signal:
        e.task(v, loc="kvmppc_run_vcpu.out")
        return
    if vc.n_busy or vc.vcore_state != VCORE_INACTIVE:
        e.task(v, loc="kvmppc_wait_for_exec", woken=False)
        why = f"n_busy = {vc.n_busy}" if vc.n_busy else "the vcore is not INACTIVE"
        e.event("kvmppc_wait_for_exec", -1, v, f"{why}: sleep on cpu_run")
        return
    for w in vc.runnable:
        deliver_interrupts(e, w)
        if e.tasks[w].signal:
            remove_runnable(e, w)
            e.vcpu(w, exit_reason="KVM_EXIT_INTR", ret=EINTR)
            e.task(w, woken=True)
    vc = e.vcore
    if not vc.runnable or e.vcpus[v].state != KVMPPC_VCPU_RUNNABLE:
        e.task(v, loc="kvmppc_run_vcpu.out")
        return
    if vc.n_busy:
        # A signalled vcpu just left (BUSY_IN_HOST).  Deliberate deviation: the 3.4 loop
        # goes on to count the ceded vcpus and may start the vcore in this same
        # iteration with n_busy == 1; the model follows the reference's invariant 10.9
        # ("the vcore runs only if n_busy == 0") and waits for that vcpu to come back.
        e.task(v, loc="kvmppc_wait_for_exec", woken=False)
        e.event("kvmppc_wait_for_exec", -1, v, f"n_busy = {vc.n_busy}: sleep on cpu_run")
        return
    n_ceded = 0
    woken_by_prod = prod_wakes(e.m)
    for w in vc.runnable:
        u = e.vcpus[w]
        if not u.pending_exceptions and not (woken_by_prod and u.prodded):
            n_ceded += u.ceded
        elif u.ceded:
            e.vcpu(w, ceded=0)
            e.event("kvmppc_run_vcpu", -1, w, "ceded vcpu has work (pending interrupt or "
                    "prodded): ceded = 0")
    e.vc(runner=v)
    if n_ceded == len(vc.runnable):
        e.vc(wq=(*vc.wq, v), vcore_state=VCORE_SLEEPING)
        e.task(v, loc="kvmppc_vcore_blocked", woken=False)
        e.event("kvmppc_vcore_blocked", -1, v, f"all {n_ceded} runnable vcpus ceded: "
                "prepare_to_wait(&vc->wq), VCORE_SLEEPING")
    else:
        run_core(e, v)


def run_core(e: Edit, v: int) -> None:
    """``kvmppc_run_core``: assign ptids (vcpus that are not ceded first, in list order,
    then the ceded ones), reset the counters, start every runnable vcpu, enter."""
    vc = e.vcore
    for w in vc.runnable:
        if e.tasks[w].signal:
            e.vc(runner=-1)
            e.event("kvmppc_run_core", -1, v, f"vcpu {w}'s task has a signal pending: "
                    "return without running")
            return
    busy = [w for w in vc.runnable if not e.vcpus[w].ceded]
    ceded = [w for w in vc.runnable if e.vcpus[w].ceded]
    started = busy + ceded if e.m.config.policy == "realmode" else busy
    for ptid, w in enumerate(started):
        e.vcpu(w, ptid=ptid)
    e.vc(n_woken=0, nap_count=0, entry_exit_count=0, vcore_state=VCORE_RUNNING, in_guest=0,
         pcpu=0, napping_threads=0)
    e.event("kvmppc_run_core", -1, v, "ptids: " + ", ".join(
        f"vcpu {w}->{p}{' (ceded)' if w in ceded else ''}" for p, w in enumerate(started))
        + f"; vcpu0 = vcpu {started[0]} on thread 0", started[0])
    for w in started:
        start_thread(e, w)
    for w in ceded if e.m.config.policy == "host" else ():
        # Inferred (policy "host"): a vcpu ceded in the host is not started, but a kick
        # must still reach it; as for any vcpu of a running vcore that means an IPI to
        # thread 0 and a whole-core exit ("two partition switches per idle
        # transition", reference S22).
        e.vcpu(w, cpu=e.vcore.pcpu)
    e.thread(0, loc="kvmppc_hv_entry")
    e.task(v, loc="kvmppc_run_core")


def handle_exit(e: Edit, w: int) -> int:
    """``kvmppc_handle_exit`` for the trap the vcpu exited with."""
    u = e.vcpus[w]
    trap = u.trap
    if trap == 0xC00:
        if u.hcall == 0xE0 and e.m.config.policy == "host":
            # Before 19ccb76a (inferred): the host handles H_CEDE itself.  A pending prod
            # is consumed and H_CEDE returns at once (PAPR); were it left set, the vcpu
            # would count as woken forever and cede again on every re-entry.
            if u.prodded and "no_prodded_check" not in e.m.config.ablations:
                e.vcpu(w, prodded=0, r3=H_SUCCESS, msr_ee=True, cede_result="prod")
                e.event("kvmppc_handle_exit", -1, w, "H_CEDE handled in the host: "
                        "prodded was set, clear it and return at once")
                return RESUME_GUEST
            e.vcpu(w, ceded=1, r3=H_SUCCESS, msr_ee=True)
            e.event("kvmppc_handle_exit", -1, w, "H_CEDE handled in the host: ceded = 1")
            return RESUME_GUEST
        e.vcpu(w, exit_reason="KVM_EXIT_PAPR_HCALL")
        e.event("kvmppc_handle_exit", -1, w, "hcall: KVM_EXIT_PAPR_HCALL, RESUME_HOST")
        return RESUME_HOST
    if trap == 0xE00:
        e.vcpu(w, exit_reason="KVM_EXIT_MMIO")
        e.event("kvmppc_handle_exit", -1, w, "HDSI on emulated MMIO: KVM_EXIT_MMIO, "
                "RESUME_HOST")
        return RESUME_HOST
    e.event("kvmppc_handle_exit", -1, w, f"trap {trap:#x}: RESUME_GUEST")
    return RESUME_GUEST


def run_core_exit(e: Edit, v: int) -> None:
    """Back from ``__kvmppc_vcore_entry``: after ``kvmppc_wait_for_nap``, handle each
    vcpu's exit; a ceded vcpu that stays in the guest's hands gets its DEC hrtimer
    (``kvmppc_set_timer``), one that must go to userspace stops ceding; finally remove
    the vcpus that need the host from the runnable list and wake their tasks."""
    vc = e.vcore
    for w in vc.runnable:
        e.vcpu(w, cpu=-1)
    e.vc(vcore_state=VCORE_EXITING)
    e.event("kvmppc_run_core", -1, v, f"vcore exited: nap_count {vc.nap_count} >= n_woken "
            f"{vc.n_woken}; VCORE_EXITING")
    for w in vc.runnable:
        u = e.vcpus[w]
        if u.dec != DEC_NEGATIVE and u.pending_exceptions & _DEC:
            e.vcpu(w, pending_exceptions=u.pending_exceptions & ~_DEC)
            e.event("kvmppc_run_core", -1, w, "DEC is positive: dequeue the stale DEC")
        ret = handle_exit(e, w) if u.trap else RESUME_GUEST
        e.vcpu(w, ret=ret, trap=0)
        if e.vcpus[w].ceded:
            if ret != RESUME_GUEST:
                end_cede(e, w)
            else:
                set_timer(e, w)
    e.vc(vcore_state=VCORE_INACTIVE)
    for w in e.vcore.runnable:
        if e.vcpus[w].ret != RESUME_GUEST:
            remove_runnable(e, w)
            e.task(w, woken=True)
    # kvmppc_run_core returns with vc->lock held: the loop goes round at once.
    run_vcpu_loop(e, v)


def wait_for_exec(e: Edit, v: int) -> None:
    """``kvmppc_wait_for_exec`` returns (the task was woken, or its vcpu left the list);
    the task relocks ``vc->lock`` and tests the loop condition again.

    Waking touches only the task's own wait-queue entry, so taking the lock in the same
    step loses no interleaving of shared state."""
    e.task(v, woken=False)
    e.event("kvmppc_wait_for_exec", -1, v, "woken")
    run_vcpu_loop(e, v)


def all_idle(x: Edit | Machine, m) -> bool:
    """``kvmppc_vcore_blocked``'s test: every runnable vcpu of ``x`` (a state or an edit
    of one) is still ceded, with nothing pending and (bugs off) not prodded."""
    woken_by_prod = prod_wakes(m)
    for w in x.vcore.runnable:
        u = x.vcpus[w]
        if not u.ceded or u.pending_exceptions or (woken_by_prod and u.prodded):
            return False
    return True


def vcore_blocked(e: Edit, v: int) -> None:
    """``kvmppc_vcore_blocked`` after unlocking: sleep only if every runnable vcpu is
    still ceded with nothing pending.  The task joined ``vc->wq`` *before* this test, so
    a kick that slips in between finds it on the queue and wakes it: no lost wake-up."""
    if all_idle(e, e.m):
        e.task(v, loc="kvmppc_vcore_blocked.schedule")
        e.event("kvmppc_vcore_blocked", -1, v, "all idle: schedule()")
        e.event("vcore_sleep", -1, v, "vcore sleeping on vc->wq")
    else:
        _vcore_unblock(e, v, "not all idle after all: finish_wait")
        run_vcpu_loop(e, v)


def vcore_woken(e: Edit, v: int) -> None:
    """The runner sleeping in ``kvmppc_vcore_blocked`` is woken and goes round again."""
    _vcore_unblock(e, v, "woken: finish_wait")
    e.event("vcore_wake", -1, v, "vcore runner woken")
    run_vcpu_loop(e, v)


def _vcore_unblock(e: Edit, v: int, what: str) -> None:
    # finish_wait, then relock vc->lock and mark the vcore INACTIVE; the caller goes on
    # into the loop test under that lock (kvmppc_vcore_blocked returns holding it).
    e.vc(wq=tuple(w for w in e.vcore.wq if w != v), vcore_state=VCORE_INACTIVE, runner=-1)
    e.task(v, woken=False)
    e.event("kvmppc_vcore_blocked", -1, v, what + ", VCORE_INACTIVE")


def run_vcpu_out(e: Edit, v: int) -> None:
    """End of ``kvmppc_run_vcpu``: leave the list on a signal, hand the vcore to the next
    runnable vcpu's task if nobody runs it, and return to ``kvmppc_vcpu_run``."""
    if e.vcpus[v].state == KVMPPC_VCPU_RUNNABLE:
        remove_runnable(e, v)
        e.vcpu(v, exit_reason="KVM_EXIT_INTR", ret=EINTR)
    vc = e.vcore
    if vc.runner == v:
        e.vc(runner=-1)
    if vc.runnable and vc.vcore_state == VCORE_INACTIVE:
        first = vc.runnable[0]
        e.task(first, woken=True)
        e.event("kvmppc_run_vcpu", -1, v, f"hand the vcore over: wake vcpu {first}'s task")
    reason = e.vcpus[v].exit_reason
    if reason == "KVM_EXIT_PAPR_HCALL":
        e.task(v, loc="kvmppc_pseries_do_hcall")
        e.event("kvmppc_vcpu_run", -1, v, "hcall for the host: kvmppc_pseries_do_hcall")
    else:
        e.task(v, loc="userspace")
        e.event("kvmppc_vcpu_run", -1, v, f"return to userspace ({reason})")


def do_hcall(e: Edit, v: int) -> None:
    """``kvmppc_pseries_do_hcall``: H_PROD sets the target's ``prodded``, ``smp_mb``, and
    kicks the target if it is ceded (bug ``hprod_wakes_caller``: tests and wakes the
    *caller* instead); H_CONFER does nothing.  The vcpu then runs again."""
    u = e.vcpus[v]
    if u.hcall == 0xE8:
        target = u.hcall_arg
        e.store(-1, "prodded", target, 1, buffered=False)
        if "hprod_wakes_caller" in e.m.config.bugs:
            e.event("kvmppc_pseries_do_hcall", -1, v, f"H_PROD vcpu {target}: prodded = 1;"
                    " the caller is not ceded, so nobody is woken (hprod_wakes_caller)",
                    target)
        elif e.vcpus[target].ceded:
            e.event("kvmppc_pseries_do_hcall", -1, v, f"H_PROD vcpu {target}: prodded = 1, "
                    "target ceded: kick it", target)
            kick(e, target, "H_PROD")
        else:
            e.event("kvmppc_pseries_do_hcall", -1, v, f"H_PROD vcpu {target}: prodded = 1",
                    target)
    else:
        e.event("kvmppc_pseries_do_hcall", -1, v, "H_CONFER: nothing to do in 3.x")
    e.vcpu(v, r3=H_SUCCESS, exit_reason="")
    e.task(v, loc="kvmppc_vcpu_run")


TASK_STEPS: dict[str, Callable[[Edit, int], None]] = {
    "userspace": kvmppc_run_vcpu,
    "kvmppc_vcpu_run": kvmppc_run_vcpu,
    "kvmppc_wait_for_exec": wait_for_exec,
    "kvmppc_vcore_blocked": vcore_blocked,
    "kvmppc_vcore_blocked.schedule": vcore_woken,
    "kvmppc_run_core": run_core_exit,
    "kvmppc_run_vcpu.out": run_vcpu_out,
    "kvmppc_pseries_do_hcall": do_hcall,
}

_STEP_NAME = {
    "userspace": "KVM_RUN",
    "kvmppc_vcpu_run": "kvmppc_run_vcpu",
    "kvmppc_wait_for_exec": "kvmppc_wait_for_exec: woken",
    "kvmppc_vcore_blocked": "kvmppc_vcore_blocked",
    "kvmppc_vcore_blocked.schedule": "kvmppc_vcore_blocked: woken",
    "kvmppc_run_core": "kvmppc_run_core: after exit",
    "kvmppc_run_vcpu.out": "kvmppc_run_vcpu: return",
    "kvmppc_pseries_do_hcall": "kvmppc_pseries_do_hcall",
}
