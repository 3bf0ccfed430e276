"""``book3s_hv.c``: the host side, one task per vcpu.

``kvmppc_run_vcpu`` (join the vcore, late join, ``n_busy``, ``kvmppc_wait_for_exec``,
blocked versus run, interrupt delivery, signals), ``kvmppc_run_core`` (ptid assignment,
starting every runnable vcpu, waiting for ``nap_count``, exit handling, ``set_timer``
versus ``end_cede``, ``kvmppc_remove_runnable``), ``kvmppc_vcore_blocked`` (the shared
wait queue, and halt polling when change ``0cda69dd`` is on), ``kvmppc_pseries_do_hcall``
(H_PROD, H_CONFER) and ``kvm_vcpu_kick``.

Reference: ``reference/kernel-cede.md`` section 5, and the 3.2-era
``arch/powerpc/kvm/book3s_hv.c`` the reference cites as source B (``kvmppc_run_vcpu``,
``kvmppc_vcore_blocked``, ``kvmppc_pseries_do_hcall``), which has the 3.4 loop: at the
top of each iteration wait while ``n_busy`` or the vcore is not INACTIVE; count
``n_ceded += v->arch.ceded`` over the runnable vcpus (no test of pending exceptions);
``kvmppc_vcore_blocked`` or ``kvmppc_run_core``; and only then, at the *bottom* of the
iteration, deliver interrupts to every runnable vcpu and drop the signalled ones.
(The CyanogenMod "3.4" tree the reference lists as source C already has the later
order — deliver and drop first, count second, no ``n_busy``, wake ``vc->wq`` on join,
wake the first runnable task on leaving — which came with the 2012 rework "Run virtual
core whenever any vcpus in it can run"; that rework is not modelled, see below.)

Consequence of the 3.4 order: a ceded vcpu whose DEC hrtimer fired while the vcore was
held (``n_busy``, another run) is still ceded when it is counted, so it is started
*ceded*, after the vcpus with work, and ``kvmppc_cede_reentry`` synthesizes its
interrupt in real mode (reference 3.3) instead of the host injecting it.

Which kernel (``Config.changes``):

* 3.4 as shipped (default): H_PROD sets the target's ``prodded``, then tests and wakes
  the *caller* (bug ``hprod_wakes_caller``); neither the count nor ``all_idle`` looks
  at ``prodded``.
* ``8464c884`` (4.10): H_PROD kicks the target if it is ceded, and a prodded vcpu
  counts as woken: the count un-cedes it and ``all_idle`` is false (4.10's
  ``kvmppc_vcpu_woken`` / ``kvmppc_vcore_check_block``).  The model keeps the 3.4 loop
  around it (in 4.10 the count also un-cedes vcpus with pending exceptions, which the
  3.4 loop delivers at its bottom instead), and its kick is 3.4's ``kvm_vcpu_kick``
  (the targeted ``kvmppc_fast_vcpu_kick_hv`` of 54695c30 is not modelled).
* ``0cda69dd`` (4.7, halt polling): see :func:`vcore_poll`.

Not modelled, with the reason: the 2012 loop rework named above and 3.6's
``VCORE_STARTING``/``hwthread_req`` (they belong to kernels whose real-mode side the
model does not follow either); preemption of the runner (``VCORE_PREEMPT``, 2013) and
piggybacking (2015); VPA/DTL updates (no effect on the protocol); ``-EBUSY`` from
``on_primary_thread`` (the model's core is always offline and the runner always on
thread 0).

Policy ``"host"`` (before 19ccb76a) is **inferred**: the pre-commit host handler was not
read.  Modelled as: H_CEDE exits the whole core; the host marks the vcpu ceded and arms
its DEC hrtimer (as ``kvmppc_vcpu_block`` did in v3.0); ``kvmppc_run_core`` starts only
vcpus that are not ceded; a ceded vcpu comes back when an interrupt is delivered to it in
the host.  The shared vcore wait queue is used for both policies.
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
    VCORE_POLLING,
    VCORE_RUNNING,
    VCORE_SLEEPING,
    Machine,
    exit_count,
)

__all__ = ["HALT_POLL", "TASK_READS_SHARED", "TASK_STEPS", "all_idle", "end_cede",
           "halt_polling", "kick", "prod_wakes", "task_step"]

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
    elif loc == "kvmppc_vcore_blocked.poll":
        return ("kvmppc_vcore_blocked: poll succeeds" if s.vcore.poll_woken
                else "kvmppc_vcore_blocked: poll window over")
    elif loc == "kvmppc_run_vcpu.out":
        # With a signal pending, wait (uninterruptibly) for a running vcore to finish.
        if (s.vcpus[v].state == KVMPPC_VCPU_RUNNABLE
                and s.vcore.vcore_state in (VCORE_RUNNING, VCORE_EXITING)):
            return None
    return _STEP_NAME[loc]


#: The locations where a task's step depends on more than the task itself and its vcpu:
#: the vcore and thread 0.  Model.enabled keeps the step of a task anywhere else while
#: those change.
TASK_READS_SHARED = frozenset({"kvmppc_run_core", "kvmppc_run_vcpu.out",
                               "kvmppc_vcore_blocked.poll"})


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
    if vc.vcore_state == VCORE_POLLING and v in vc.runnable:
        # Halt polling: nobody waits on wqp and vcpu->cpu is -1, so the kernel's kick
        # does nothing; the runner's next kvmppc_vcore_check_block() sees the work.
        e.vc(poll_woken=True)
        e.event("kvm_vcpu_kick", -1, v, f"{why}: the runner is polling "
                "(VCORE_POLLING): kvmppc_vcore_check_block() will see it, no wake-up")
    elif vc.wq:
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
    if vc.vcore_state == VCORE_POLLING:
        # A runnable vcpu that is not ceded: the poller's kvmppc_vcore_check_block()
        # sees it on its next look.
        e.vc(poll_woken=True)
    # Still under vc->lock: the kernel goes straight into the loop's first test, so no
    # other task's critical section can slip in between joining and testing.
    run_vcpu_loop(e, v)


def run_vcpu_loop(e: Edit, v: int) -> None:
    """The top of an iteration of kvmppc_run_vcpu's loop, under ``vc->lock``.

    3.4 order: leave if the vcpu is no longer RUNNABLE or its task has a signal; wait
    while ``n_busy`` or the vcore is not INACTIVE; count the ceded vcpus; if all are
    ceded ``kvmppc_vcore_blocked``, else ``kvmppc_run_core``.  Interrupt delivery and
    signals come at the bottom (:func:`run_vcpu_loop_bottom`), after the vcore has run
    or slept.

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
    # 3.4 counts v->arch.ceded and nothing else: a ceded vcpu with an interrupt queued
    # (its DEC hrtimer fired while the vcore was held) still counts as ceded.  With
    # 8464c884 a prodded vcpu counts as woken and stops ceding (4.10's count).
    n_ceded = 0
    woken_by_prod = prod_wakes(e.m)
    for w in vc.runnable:
        u = e.vcpus[w]
        if woken_by_prod and u.prodded:
            if u.ceded:
                e.vcpu(w, ceded=0)
                e.event("kvmppc_run_vcpu", -1, w, "ceded vcpu was prodded: ceded = 0")
        else:
            n_ceded += u.ceded
    e.vc(runner=v)
    if n_ceded == len(vc.runnable):
        e.event("kvmppc_run_vcpu", -1, v, f"all {n_ceded} runnable vcpus ceded")
        vcore_blocked_enter(e, v)
    else:
        run_core(e, v)


def run_vcpu_loop_bottom(e: Edit, v: int) -> None:
    """The bottom of an iteration of kvmppc_run_vcpu's loop (3.4), still under
    ``vc->lock`` after ``kvmppc_run_core`` or ``kvmppc_vcore_blocked`` returned: deliver
    pending interrupts to every runnable vcpu (``kvmppc_core_deliver_interrupts``; an
    injection ends a cede), take the vcpus whose task has a signal off the list
    (KVM_EXIT_INTR, -EINTR) and wake their tasks; then the loop test again."""
    e.vc(runner=-1)
    for w in e.vcore.runnable:
        deliver_interrupts(e, w)
        if e.tasks[w].signal:
            remove_runnable(e, w)
            e.vcpu(w, exit_reason="KVM_EXIT_INTR", ret=EINTR)
            e.task(w, woken=True)
    run_vcpu_loop(e, v)


def run_core(e: Edit, v: int) -> None:
    """``kvmppc_run_core``: assign ptids (vcpus that are not ceded first, in list order,
    then the ceded ones), reset the counters, start every runnable vcpu, enter."""
    vc = e.vcore
    for w in vc.runnable:
        if e.tasks[w].signal:
            e.event("kvmppc_run_core", -1, v, f"vcpu {w}'s task has a signal pending: "
                    "return without running")
            run_vcpu_loop_bottom(e, v)
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
    # kvmppc_run_core returns with vc->lock held: on to the bottom of the loop.
    run_vcpu_loop_bottom(e, v)


def wait_for_exec(e: Edit, v: int) -> None:
    """``kvmppc_wait_for_exec`` returns (the task was woken, or its vcpu left the list);
    the task relocks ``vc->lock`` and tests the loop condition again.

    Waking touches only the task's own wait-queue entry, so taking the lock in the same
    step loses no interleaving of shared state."""
    e.task(v, woken=False)
    e.event("kvmppc_wait_for_exec", -1, v, "woken")
    run_vcpu_loop(e, v)


def all_idle(x: Edit | Machine, m) -> bool:
    """``kvmppc_vcore_blocked``'s test (3.4 ``all_idle``; 4.7+
    ``kvmppc_vcore_check_block`` negated): every runnable vcpu of ``x`` (a state or an
    edit of one) is still ceded with nothing pending and, with 8464c884, not prodded."""
    woken_by_prod = prod_wakes(m)
    for w in x.vcore.runnable:
        u = x.vcpus[w]
        if not u.ceded or u.pending_exceptions or (woken_by_prod and u.prodded):
            return False
    return True


# ---- kvmppc_vcore_blocked, with and without halt polling -----------------------------------

#: The change that adds halt polling to kvmppc_vcore_blocked (see :data:`CHANGES`).
HALT_POLL = "0cda69dd"


def halt_polling(m) -> bool:
    """True when halt polling (change 0cda69dd) is in the configuration."""
    return HALT_POLL in m.config.changes


def vcore_blocked_enter(e: Edit, v: int) -> None:
    """``kvmppc_vcore_blocked`` entered with ``vc->lock`` held, every runnable vcpu
    counted ceded.

    3.4: ``prepare_to_wait(&vc->wq)``, ``VCORE_SLEEPING``, unlock; the ``all_idle`` test
    and ``schedule()`` are the next step (:func:`vcore_blocked`).

    Halt polling (0cda69dd): note ``start_poll``; if this vcore's window
    ``vc->halt_poll_ns`` is not 0, go ``VCORE_POLLING`` and unlock to poll instead
    (:func:`vcore_poll`)."""
    vc = e.vcore
    if halt_polling(e.m):
        e.vc(block_start=e.now)
        if vc.halt_poll_ns:
            e.vc(vcore_state=VCORE_POLLING, poll_woken=not all_idle(e, e.m))
            e.task(v, loc="kvmppc_vcore_blocked.poll", woken=False)
            e.event("kvmppc_vcore_blocked", -1, v, "VCORE_POLLING: poll "
                    f"kvmppc_vcore_check_block() for up to {vc.halt_poll_ns} ns")
            return
    e.vc(wq=(*vc.wq, v), vcore_state=VCORE_SLEEPING)
    e.task(v, loc="kvmppc_vcore_blocked", woken=False)
    e.event("kvmppc_vcore_blocked", -1, v, f"all {len(vc.runnable)} runnable vcpus ceded: "
            "prepare_to_wait(&vc->wq), VCORE_SLEEPING")


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
        adjust_halt_poll(e, v)
        run_vcpu_loop_bottom(e, v)


def vcore_woken(e: Edit, v: int) -> None:
    """The runner sleeping in ``kvmppc_vcore_blocked`` is woken; back in
    kvmppc_run_vcpu's loop it delivers the interrupts (the bottom of the iteration)."""
    _vcore_unblock(e, v, "woken: finish_wait")
    e.event("vcore_wake", -1, v, "vcore runner woken")
    adjust_halt_poll(e, v)
    run_vcpu_loop_bottom(e, v)


def _vcore_unblock(e: Edit, v: int, what: str) -> None:
    # finish_wait, then relock vc->lock and mark the vcore INACTIVE; the caller goes on
    # into the loop under that lock (kvmppc_vcore_blocked returns holding it).
    e.vc(wq=tuple(w for w in e.vcore.wq if w != v), vcore_state=VCORE_INACTIVE, runner=-1)
    e.task(v, woken=False)
    e.event("kvmppc_vcore_blocked", -1, v, what + ", VCORE_INACTIVE")


def vcore_poll(e: Edit, v: int) -> None:
    """Halt polling (0cda69dd, Linux 4.7): the runner, unlocked in ``VCORE_POLLING``,
    spins on ``kvmppc_vcore_check_block()`` until a vcpu has work or ``vc->halt_poll_ns``
    has passed.

    A wake inside the window (a queued interrupt, a prod with 8464c884, a vcpu that
    became runnable) ends the poll at once: relock, ``VCORE_INACTIVE``, and back to the
    loop with no ``schedule()`` and no scheduler wake-up — what polling buys.  When the
    window ends, relock, ``VCORE_INACTIVE``, ``prepare_to_swait``, test once more under
    the lock (a wake found now also counts as a successful poll, as in the kernel) and
    otherwise ``VCORE_SLEEPING`` and ``schedule()`` as without polling.  Polling is host
    time spent on thread 0 for nothing when it fails; the trace records each poll
    (``halt_poll`` events: succeeded / failed, with the ticks polled).

    Reference: ``kvmppc_vcore_blocked`` in ``arch/powerpc/kvm/book3s_hv.c`` of the
    kernels with halt polling (read in a ~4.10-era copy; reference 7, "2016, halt
    polling").  Not modelled: ``single_task_running()`` ending the poll early (the host
    runs nothing else on the runner's cpu), and the statistics counters."""
    vc = e.vcore
    polled = e.now - vc.block_start
    woken = vc.poll_woken or not all_idle(e, e.m)
    e.vc(vcore_state=VCORE_INACTIVE, poll_woken=False)
    e.task(v, woken=False)
    if woken:
        e.event("halt_poll", -1, v, "succeeded", polled)
        e.event("kvmppc_vcore_blocked", -1, v, "kvmppc_vcore_check_block(): a vcpu has "
                "work; VCORE_INACTIVE without sleeping")
        adjust_halt_poll(e, v)
        run_vcpu_loop_bottom(e, v)
        return
    e.event("halt_poll", -1, v, "failed", polled)
    e.vc(wq=(*vc.wq, v), vcore_state=VCORE_SLEEPING)
    e.task(v, loc="kvmppc_vcore_blocked.schedule")
    e.event("kvmppc_vcore_blocked", -1, v, f"poll window of {vc.halt_poll_ns} ns over: "
            "prepare_to_swait(&vc->wq), VCORE_SLEEPING, schedule()")
    e.event("vcore_sleep", -1, v, "vcore sleeping on vc->wq")


def adjust_halt_poll(e: Edit, v: int) -> None:
    """Halt polling: grow or shrink this vcore's window from how long it blocked
    (``block_ns``, from ``start_poll`` to now), as ``kvmppc_vcore_blocked`` ends:
    a block no longer than the window leaves it; a block longer than ``halt_poll_ns``
    (the maximum) shrinks it (``/= halt_poll_ns_shrink``, or to 0 when that is 0); a
    block shorter than the maximum grows it (``*= halt_poll_ns_grow``, at least
    ``halt_poll_ns_grow_start``); never above the maximum.  The grow rule is the later
    one with ``halt_poll_ns_grow_start`` (4.7 started from a fixed 10 us)."""
    if not halt_polling(e.m):
        return
    c = e.m.config.costs
    vc = e.vcore
    block_ns = (e.now - vc.block_start) * 1_000_000_000 // e.m.config.timebase_hz
    cur = old = vc.halt_poll_ns
    if c.halt_poll_ns:
        if block_ns <= cur:
            pass
        elif cur and block_ns > c.halt_poll_ns:
            cur = cur // c.halt_poll_ns_shrink if c.halt_poll_ns_shrink else 0
        elif cur < c.halt_poll_ns and block_ns < c.halt_poll_ns and c.halt_poll_ns_grow:
            cur = max(cur * c.halt_poll_ns_grow, c.halt_poll_ns_grow_start)
        cur = min(cur, c.halt_poll_ns)
    else:
        cur = 0
    if cur != old:
        e.vc(halt_poll_ns=cur)
        e.event("kvmppc_vcore_blocked", -1, v, f"blocked {block_ns} ns: vc->halt_poll_ns "
                f"{old} -> {cur}")


def run_vcpu_out(e: Edit, v: int) -> None:
    """End of ``kvmppc_run_vcpu``: leave the list on a signal (KVM_EXIT_INTR) and return
    to ``kvmppc_vcpu_run``.

    3.4 wakes nobody here: a vcpu that leaves with the vcore INACTIVE and others still
    runnable has made ``n_busy`` non-zero, and whichever task brings ``n_busy`` back to
    0 (this one, when its vcpu comes back) runs the vcore itself.  (Waking the first
    runnable vcpu's task here came with the later loop without ``n_busy``.)"""
    if e.vcpus[v].state == KVMPPC_VCPU_RUNNABLE:
        remove_runnable(e, v)
        e.vcpu(v, exit_reason="KVM_EXIT_INTR", ret=EINTR)
    if e.vcore.runner == v:
        e.vc(runner=-1)
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
    "kvmppc_vcore_blocked.poll": vcore_poll,
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
