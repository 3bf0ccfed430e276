"""The POWER9 path: each vcpu enters and leaves the guest alone, on its own thread.

On POWER9 (radix guests) the threads of a core need not be in the same partition, so
Linux 4.20's 95a6432ce903 ("KVM: PPC: Book3S HV: Streamlined guest entry/exit path on
P9 for radix guests") runs every vcpu by itself with ``kvmhv_run_single_vcpu``: no vcore
runner, no ptids, no ``entry_exit_count``, no nap in the guest, no core-wide exit.  Since
2021 ("KVM: PPC: Book3S HV P9: Stop handling hcalls in real-mode in the P9 path")
H_CEDE is handled in the host right after the guest exit, by ``kvmppc_cede`` (before
that, ``kvmppc_nested_cede``); the vcpu's task then sleeps on its own ``rcuwait`` until
``kvmppc_vcpu_check_block()`` says the vcpu has work.  ``Config(cpu="POWER9")`` selects
this path; the guest programs, interrupt sources and metrics are the rest of the model's.

Reference: ``arch/powerpc/kvm/book3s_hv.c`` of Linux 5.x/6.x (``kvmhv_run_single_vcpu``,
``kvmhv_p9_guest_entry``, ``kvmppc_cede``, ``kvmppc_vcpu_check_block`` /
``kvmppc_vcpu_woken``, ``kvmppc_set_timer``, ``kvmppc_fast_vcpu_kick_hv``, H_PROD in
``kvmppc_pseries_do_hcall``); ``reference/kernel-cede.md`` section 7, "Modern P9 path".

The steps, in the kernel's order::

    task    KVM_RUN / kvmhv_run_single_vcpu      thread_cpu = this thread, smp_mb,
                                                 prepare_to_enter, cancel dec_timer
    thread  kvmhv_p9_guest_entry                 this thread alone enters the guest
    thread  (guest code ... sc 1 / interrupt)
    thread  kvmhv_p9_guest_entry: exit           this thread alone leaves the guest
    thread  kvmppc_cede                          (H_CEDE only) ceded = 1, smp_mb, prodded?
    task    kvmhv_run_single_vcpu: after exit    thread_cpu = -1, handle the exit; ceded
                                                 and not woken: kvmppc_set_timer,
                                                 rcuwait: signal? woken? else schedule()
    task    kvmhv_run_single_vcpu: woken         (after a kick) the wait loop again
                                                 ... finally ceded = 0

What the model simplifies, and why:

* vcpu ``v``'s task runs on hardware thread ``v`` (so ``thread_cpu`` is ``v``): the host
  scheduler may put it on any cpu, but which one does not change the protocol, and
  pinning keeps a vcpu and its thread side by side in timelines.  While the task sleeps
  in the cede wait its thread is idle in the host (location ``"stop"``, a POWER9 stop
  state), free for other host work; a thread without a vcpu is always there.
* ``vcpu->arch.state``: 5.x marks the vcpu BUSY_IN_HOST after every exit; nothing on the
  P9 path reads it, so the model keeps its 3.4 meaning (BUSY_IN_HOST while the vcpu is in
  the host for its own exit: userspace or an hcall), which is what the metrics split by.
* every kick is ``kvmppc_fast_vcpu_kick_hv`` (DEC hrtimer, KVM_INTERRUPT, H_PROD); the
  generic ``kvm_vcpu_kick`` does the same two things here: wake the vcpu's rcuwait,
  else IPI the cpu the vcpu runs on.
* left out: XIVE (escalations, ``kvmppc_xive_rearm_escalation`` un-ceding), msgsnd
  doorbells, nested guests, ``need_resched``, VPA dispatch counts and ``halt_poll_ns``;
  ``kvmppc_vcpu_woken`` therefore tests ``pending_exceptions`` and ``prodded``.
* HDEC is per thread on POWER9 and holds the host's next timer event; the model's host
  tick expires every thread's at the same moment (:func:`host_tick`), and each thread
  leaves alone.
* memory is sequentially consistent: the two ``smp_mb`` pairs (``kvmppc_cede`` against
  H_PROD, ``thread_cpu`` against the kick) are kept as orders inside single steps.
"""

from __future__ import annotations

from collections.abc import Callable

from .edit import Edit
from .guest import GUEST_STEPS, guest_step, h_confer, h_prod, mmio_access, resume_guest
from .host import EINTR, deliver_interrupts, handle_exit, set_timer
from .realmode import TRAP_EXTERNAL, TRAP_HDEC, TRAP_SYSCALL, exit_reason
from .state import (
    BOOK3S_IRQPRIO_DECREMENTER,
    BOOK3S_IRQPRIO_EXTERNAL,
    DEC_ARMED,
    DEC_NEGATIVE,
    DEC_OFF,
    H_SUCCESS,
    KVMPPC_VCPU_BUSY_IN_HOST,
    KVMPPC_VCPU_RUNNABLE,
    RESUME_GUEST,
    Machine,
    Thread,
    Vcpu,
)

__all__ = [
    "CEDE",
    "ENTRY",
    "EXIT",
    "IN_GUEST_LOCS",
    "STOP",
    "TASK_READS_SHARED",
    "TASK_STEPS",
    "THREAD_STEPS",
    "WORLD_STEPS",
    "initial_threads",
    "kvmhv_run_single_vcpu",
    "kvmppc_cede",
    "kvmppc_fast_vcpu_kick_hv",
    "kvmppc_vcpu_check_block",
    "kvmppc_vcpu_woken",
    "task_step",
    "thread_function",
    "thread_step",
]

H_CEDE = 0xE0
H_PROD = 0xE8
_DEC = 1 << BOOK3S_IRQPRIO_DECREMENTER
_EXT = 1 << BOOK3S_IRQPRIO_EXTERNAL

# ---- where a hardware thread is (Thread.loc) ------------------------------------------------
HOST = "host"  # host code on this cpu: its vcpu's task (or userspace)
STOP = "stop"  # idle in the host: its task sleeps in the cede wait, or it has no vcpu
ENTRY = "kvmhv_p9_guest_entry"  # on its way into the guest
EXIT = "kvmhv_p9_guest_entry.exit"  # left the guest: saving the vcpu, restoring the host
CEDE = "kvmppc_cede"  # the exit was H_CEDE: kvmppc_cede runs before returning to the host
#: The locations where a thread holds its vcpu in (or on its way into) the guest: an IPI
#: sent there takes it out; anywhere else the host takes the IPI itself.
IN_GUEST_LOCS = frozenset({ENTRY, "guest"})

# ---- where a vcpu's task is (Task.loc), besides "userspace", "kvmppc_vcpu_run" and ----------
# ---- "kvmppc_pseries_do_hcall" ----------------------------------------------------------------
RUN = "kvmhv_run_single_vcpu"  # its thread is in (or entering / leaving) the guest
RCUWAIT = "kvmhv_run_single_vcpu.rcuwait"  # in the cede wait loop, running (woken)
SCHEDULE = "kvmhv_run_single_vcpu.schedule"  # asleep in schedule() on vcpu->wait


def initial_threads(n_threads: int, n_vcpus: int) -> tuple[Thread, ...]:
    """Thread ``v`` runs vcpu ``v``'s task (in userspace, about to call KVM_RUN); the
    threads with no vcpu idle in the host."""
    return tuple(Thread(HOST if i < n_vcpus else STOP) for i in range(n_threads))


# ============================================================================================
# Which step an actor can take
# ============================================================================================

def thread_step(s: Machine, i: int, m) -> str | None:
    """Name of the step hardware thread ``i`` can take in ``s``, or None (host code, run
    by the task's steps, or idle)."""
    t = s.threads[i]
    loc = t.loc
    if loc == "guest":
        # A hypervisor interrupt on this thread: a host IPI (a kick) or its own HDEC.
        if t.ipi or t.hdec_expired:
            return "kvmppc_interrupt"
        return guest_step(s, i, m)
    return _THREAD_STEP_NAME.get(loc)


def task_step(s: Machine, v: int, m) -> str | None:
    """Name of the step vcpu ``v``'s task can take in ``s``, or None."""
    loc = s.tasks[v].loc
    if loc == RUN and s.threads[v].loc != HOST:
        return None  # kvmhv_p9_guest_entry has not returned yet
    return _TASK_STEP_NAME.get(loc)


#: Task locations whose step depends on more than the task and its vcpu: its thread.
#: (Model.enabled re-tests them whenever the threads change.)
TASK_READS_SHARED = frozenset({RUN})


# ============================================================================================
# The wake-up condition and the kick
# ============================================================================================

def kvmppc_vcpu_woken(u: Vcpu) -> bool:
    """``kvmppc_vcpu_woken``: an interrupt is pending or the vcpu was prodded (the XIVE
    and doorbell terms of the kernel's test are not modelled)."""
    return bool(u.pending_exceptions or u.prodded)


def kvmppc_vcpu_check_block(u: Vcpu) -> bool:
    """``kvmppc_vcpu_check_block``: true when the vcpu must *not* block, i.e. it is not
    ceded or it has been woken.  (It blocks iff ``ceded && !woken``.)"""
    return not u.ceded or kvmppc_vcpu_woken(u)


def kvmppc_fast_vcpu_kick_hv(e: Edit, v: int, why: str) -> None:
    """``kvmppc_fast_vcpu_kick_hv``: ``rcuwait_wake_up(&vcpu->wait)`` wakes the vcpu's
    task if it sleeps in the cede wait; then, if the vcpu is on a thread
    (``thread_cpu >= 0``), IPI that thread (``kvmppc_ipi_thread``) — only that thread
    leaves the guest.

    The caller made the work visible (pending interrupt, ``prodded``) before the kick
    reads ``thread_cpu`` (rcuwait_wake_up has an ``smp_mb``); kvmhv_run_single_vcpu sets
    ``thread_cpu`` before it tests for work.  So either the entry sees the work, or the
    kick sees the thread."""
    woke = e.tasks[v].loc == SCHEDULE
    if woke:
        e.task(v, loc=RCUWAIT)
        e.event("kvmppc_fast_vcpu_kick_hv", -1, v, f"{why}: rcuwait_wake_up(&vcpu->wait) "
                f"wakes vcpu {v}'s task")
        e.event("host_wakeup", -1, v, why)
    cpu = e.vcpus[v].thread_cpu
    if cpu < 0:
        if not woke:
            e.event("kvmppc_fast_vcpu_kick_hv", -1, v, f"{why}: vcpu not on a thread, "
                    "nobody waiting")
    elif e.threads[cpu].loc in IN_GUEST_LOCS:
        e.thread(cpu, ipi=True)
        e.event("kvmppc_fast_vcpu_kick_hv", -1, v, f"{why}: thread_cpu = {cpu}: "
                f"kvmppc_ipi_thread({cpu})", cpu)
        e.event("ipi", -1, v, f"host IPI to thread {cpu} ({why})", cpu)
    else:
        # Between the exit and kvmhv_run_single_vcpu's "thread_cpu = -1" the thread runs
        # host code with interrupts off; it takes the IPI itself when it enables them.
        e.event("kvmppc_fast_vcpu_kick_hv", -1, v, f"{why}: IPI to thread {cpu}, taken "
                "by the host (the vcpu has already left the guest)", cpu)


# ============================================================================================
# The task's steps (host side, on the vcpu's own thread)
# ============================================================================================

def kvmhv_run_single_vcpu(e: Edit, v: int) -> None:
    """``kvmhv_run_single_vcpu`` up to the guest entry (interrupts off, on thread ``v``):
    RUNNABLE and ``ceded = 0``; with a signal pending, KVM_EXIT_INTR (``sigpend``);
    otherwise ``vcpu->cpu = thread_cpu =`` this thread and paca ``kvm_vcpu = vcpu``,
    ``smp_mb``, ``kvmppc_core_prepare_to_enter`` (inject the first pending interrupt; a
    pending external also sets LPCR_MER), cancel the DEC hrtimer, and enter.

    ``thread_cpu`` is set *before* the test for pending work (the ``smp_mb``): a kick
    that makes work pending after the test finds the thread and IPIs it, so the vcpu
    leaves at once and the next entry delivers the work — no wake-up is lost."""
    k = e.tasks[v]
    if k.loc == "userspace":
        e.task(v, signal=False)  # userspace handled it before calling KVM_RUN again
    e.vcpu(v, trap=0, ret=RESUME_GUEST, exit_reason="", ceded=0, state=KVMPPC_VCPU_RUNNABLE)
    if e.tasks[v].signal:
        e.vcpu(v, exit_reason="KVM_EXIT_INTR", ret=EINTR, state=KVMPPC_VCPU_BUSY_IN_HOST)
        e.task(v, loc="userspace")
        e.event("kvmhv_run_single_vcpu", -1, v, "signal pending: KVM_EXIT_INTR, return to "
                "userspace")
        return
    e.vcpu(v, cpu=v, thread_cpu=v)
    e.thread(v, vcpu=v)
    deliver_interrupts(e, v)
    u = e.vcpus[v]
    if u.timer_running:
        e.vcpu(v, timer_running=False)
    e.thread(v, loc=ENTRY, mer=bool(u.pending_exceptions & _EXT))
    e.task(v, loc=RUN)
    e.event("kvmhv_run_single_vcpu", -1, v, f"RUNNABLE; vcpu->cpu = thread_cpu = {v}, "
            "smp_mb, prepare_to_enter; enter on this thread alone", v)


def after_exit(e: Edit, v: int) -> None:
    """``kvmhv_run_single_vcpu`` once ``kvmhv_p9_guest_entry`` has returned:
    ``vcpu->cpu = thread_cpu = -1``; drop a DEC that is stale (DEC positive again); handle
    the exit (``kvmppc_handle_exit_hv``; none for a handled H_CEDE, whose trap is 0).  If
    the vcpu is to resume the guest but ``kvmppc_vcpu_check_block()`` is false (ceded and
    not woken): ``kvmppc_set_timer``, ``prepare_to_rcuwait(&vcpu->wait)`` and the wait
    loop; otherwise return to ``kvmppc_vcpu_run_hv``.

    The rcuwait is entered (and the first loop test made) in the same step: a kick that
    comes after it finds the task waiting; one that came before made the vcpu woken, which
    the test sees."""
    e.vcpu(v, cpu=-1, thread_cpu=-1)
    u = e.vcpus[v]
    if u.dec != DEC_NEGATIVE and u.pending_exceptions & _DEC:
        e.vcpu(v, pending_exceptions=u.pending_exceptions & ~_DEC)
        e.event("kvmhv_run_single_vcpu", -1, v, "DEC is positive: dequeue the stale DEC")
    ret = handle_exit(e, v) if u.trap else RESUME_GUEST
    e.vcpu(v, ret=ret, trap=0)
    u = e.vcpus[v]
    if ret == RESUME_GUEST and not kvmppc_vcpu_check_block(u):
        set_timer(e, v)
        e.event("kvmhv_run_single_vcpu", -1, v, "ceded and not woken: kvmppc_set_timer, "
                "prepare_to_rcuwait(&vcpu->wait)")
    elif ret == RESUME_GUEST and u.ceded:
        _finish(e, v, "ceded but woken (kvmppc_vcpu_check_block): no wait")
        return
    else:
        _finish(e, v, "")
        return
    _rcuwait_loop(e, v)


def rcuwait_woken(e: Edit, v: int) -> None:
    """The task sleeping in the cede wait was woken (a kick or a signal): it runs on its
    thread again and goes round the loop."""
    e.thread(v, loc=HOST)
    e.event("kvmhv_run_single_vcpu", -1, v, "woken: back from schedule()")
    _rcuwait_loop(e, v)


def _rcuwait_loop(e: Edit, v: int) -> None:
    """One iteration of the wait loop (``set_current_state(TASK_INTERRUPTIBLE)`` first, so
    a wake-up between the tests and ``schedule()`` is not lost): a signal ends it with
    KVM_EXIT_INTR; a woken vcpu ends it; otherwise ``schedule()``."""
    if e.tasks[v].signal:
        e.vcpu(v, exit_reason="KVM_EXIT_INTR", ret=EINTR)
        _finish(e, v, "signal pending: KVM_EXIT_INTR; finish_rcuwait")
    elif kvmppc_vcpu_check_block(e.vcpus[v]):
        _finish(e, v, "vcpu woken (kvmppc_vcpu_check_block): finish_rcuwait")
    else:
        e.task(v, loc=SCHEDULE)
        e.thread(v, loc=STOP)
        e.event("kvmhv_run_single_vcpu", -1, v, f"ceded, nothing pending: schedule() "
                f"(thread {v} is free for the host)")


def _finish(e: Edit, v: int, why: str) -> None:
    """End of ``kvmhv_run_single_vcpu`` (``ceded = 0``) and the test of
    ``kvmppc_vcpu_run_hv``'s loop: enter again (RESUME_GUEST), handle an hcall in the
    host, or return to userspace."""
    e.vcpu(v, ceded=0)
    if e.threads[v].loc == STOP:
        e.thread(v, loc=HOST)
    u = e.vcpus[v]
    if why:
        e.event("kvmhv_run_single_vcpu", -1, v, why + "; ceded = 0")
    if u.ret == RESUME_GUEST:
        e.task(v, loc="kvmppc_vcpu_run")
    elif u.exit_reason == "KVM_EXIT_PAPR_HCALL":
        e.vcpu(v, state=KVMPPC_VCPU_BUSY_IN_HOST)
        e.task(v, loc="kvmppc_pseries_do_hcall")
        e.event("kvmppc_vcpu_run_hv", -1, v, "hcall for the host: kvmppc_pseries_do_hcall")
    else:
        e.vcpu(v, state=KVMPPC_VCPU_BUSY_IN_HOST)
        e.task(v, loc="userspace")
        e.event("kvmppc_vcpu_run_hv", -1, v, f"return to userspace ({u.exit_reason})")


def kvmppc_pseries_do_hcall(e: Edit, v: int) -> None:
    """``kvmppc_pseries_do_hcall`` (after 8464c884): H_PROD sets the target's
    ``prodded``, ``smp_mb``, and kicks the target if it is ceded; H_CONFER does nothing
    the model can see.  Then the vcpu runs again.

    ``prodded = 1; smp_mb; if (ceded)`` is the other half of kvmppc_cede's Dekker pair."""
    u = e.vcpus[v]
    if u.hcall == H_PROD:
        target = u.hcall_arg
        e.vcpu(target, prodded=1)
        if e.vcpus[target].ceded:
            e.event("kvmppc_pseries_do_hcall", -1, v, f"H_PROD vcpu {target}: prodded = 1, "
                    "smp_mb, target ceded: kick it", target)
            kvmppc_fast_vcpu_kick_hv(e, target, "H_PROD")
        else:
            e.event("kvmppc_pseries_do_hcall", -1, v, f"H_PROD vcpu {target}: prodded = 1, "
                    "smp_mb, target not ceded", target)
    else:
        e.event("kvmppc_pseries_do_hcall", -1, v, "H_CONFER: nothing the model sees")
    e.vcpu(v, r3=H_SUCCESS, exit_reason="")
    e.task(v, loc="kvmppc_vcpu_run")


TASK_STEPS: dict[str, Callable[[Edit, int], None]] = {
    "userspace": kvmhv_run_single_vcpu,
    "kvmppc_vcpu_run": kvmhv_run_single_vcpu,
    RUN: after_exit,
    RCUWAIT: rcuwait_woken,
    "kvmppc_pseries_do_hcall": kvmppc_pseries_do_hcall,
}

_TASK_STEP_NAME = {
    "userspace": "KVM_RUN",
    "kvmppc_vcpu_run": "kvmhv_run_single_vcpu",
    RUN: "kvmhv_run_single_vcpu: after exit",
    RCUWAIT: "kvmhv_run_single_vcpu: woken",
    "kvmppc_pseries_do_hcall": "kvmppc_pseries_do_hcall",
}


# ============================================================================================
# The thread's steps
# ============================================================================================

def kvmhv_p9_guest_entry(e: Edit, i: int) -> None:
    """``kvmhv_p9_guest_entry`` into the guest: load the vcpu's registers, switch *this
    thread* to the guest's LPID/PID and load HDEC with the host's next timer event; no
    other thread is involved or waited for.  The guest resumes (at the vector of an
    interrupt the host injected, if any)."""
    t = e.threads[i]
    v = t.vcpu
    u = e.vcpus[v]
    e.vc(in_guest=e.vcore.in_guest + 1)
    e.thread(i, loc="guest", gprs=u.gpr_saved, fprs=u.fpr_saved, trap=0, hdec_expired=False)
    e.event("kvmhv_p9_guest_entry", i, v, f"thread {i} alone enters the guest"
            + (" (LPCR_MER: external pending)" if t.mer else ""))
    resume_guest(e, i, v)


def kvmppc_interrupt(e: Edit, i: int) -> None:
    """The guest on this thread takes a hypervisor interrupt: a host IPI (0x500) or this
    thread's own HDEC (0x980).  Only this thread leaves the guest."""
    t = e.threads[i]
    trap = TRAP_EXTERNAL if t.ipi else TRAP_HDEC
    e.thread(i, loc=EXIT, trap=trap)
    e.event("kvmppc_interrupt", i, t.vcpu, f"guest exit on thread {i}: "
            f"{'IPI' if t.ipi else 'HDEC'} ({trap:#x})", trap)


def h_cede(e: Edit, i: int) -> None:
    """The idle loop's H_CEDE on the P9 path: program DEC, hard-disable (MSR[EE] = 0),
    ``sc 1``: an ordinary hcall exit of this thread; ``kvmppc_cede`` runs right after it
    in ``kvmhv_p9_guest_entry``."""
    v = e.threads[i].vcpu
    u = e.vcpus[v]
    if u.cede_result == "":  # first H_CEDE of this idle period: program the timer
        op = e.m.workload.op(v, u.pc)
        if op.us is None:
            e.vcpu(v, dec=DEC_OFF)
        else:
            e.vcpu(v, dec=DEC_ARMED, dec_expires=e.now + e.m.ticks(op.us))
    e.vcpu(v, guest="cede", msr_ee=False, r3=H_CEDE, hcall=H_CEDE, hcall_arg=-1)
    e.thread(i, loc=EXIT, trap=TRAP_SYSCALL)
    e.event("H_CEDE", i, v, f"sc 1: H_CEDE exits thread {i} only")


def _exits_alone(fn: Callable[[Edit, int], None]) -> Callable[[Edit, int], None]:
    """The guest op ``fn`` (H_PROD, H_CONFER, an MMIO load) exits the guest; on the P9
    path the thread goes to ``kvmhv_p9_guest_entry``'s exit, not the 3.4 ``hdec_soon``."""
    def step(e: Edit, i: int) -> None:
        fn(e, i)
        e.thread(i, loc=EXIT)
    step.__name__ = step.__qualname__ = fn.__name__
    step.__doc__ = fn.__doc__
    return step


def guest_exit(e: Edit, i: int) -> None:
    """``kvmhv_p9_guest_entry`` after the guest exit: save the vcpu's registers and trap,
    restore the host's on *this thread only* (the host takes a pending IPI when it
    re-enables interrupts).  An H_CEDE goes on to ``kvmppc_cede`` ("H_CEDE has to be
    handled now, not later"); any other exit returns to ``kvmhv_run_single_vcpu``."""
    t = e.threads[i]
    v = t.vcpu
    u = e.vcpus[v]
    e.vc(in_guest=e.vcore.in_guest - 1)
    e.vcpu(v, trap=t.trap, gpr_saved=t.gprs, fpr_saved=t.fprs)
    reason = exit_reason(t.trap, u.hcall)
    e.event("kvmhv_p9_guest_entry", i, v, f"guest exit ({reason}): thread {i} alone "
            "returns to the host", t.trap)
    e.event("vcpu_exit", i, v, reason, t.trap)
    cede = t.trap == TRAP_SYSCALL and u.hcall == H_CEDE
    e.thread(i, loc=CEDE if cede else HOST, ipi=False, hdec_expired=False, mer=False,
             trap=t.trap if cede else 0)


def kvmppc_cede(e: Edit, i: int) -> None:
    """``kvmppc_cede``: MSR[EE] = 1 (PAPR: "as if it was on"), ``ceded = 1``, ``smp_mb``;
    if ``prodded``: clear it, ``smp_mb``, ``ceded = 0`` (the prod came first: H_CEDE
    returns at once).  Then r3 = H_SUCCESS and trap = 0: the hcall is handled.

    ``ceded = 1; smp_mb; if (prodded)`` against H_PROD's ``prodded = 1; smp_mb; if
    (ceded) kick`` is a Dekker pair: at least one side sees the other's store, so a prod
    is never lost (here the whole function is one step)."""
    t = e.threads[i]
    v = t.vcpu
    e.vcpu(v, msr_ee=True, ceded=1)
    if e.vcpus[v].prodded and "no_prodded_check" not in e.m.config.ablations:
        e.vcpu(v, prodded=0, ceded=0, cede_result="prod")
        e.event("kvmppc_cede", i, v, "MSR[EE] = 1, ceded = 1, smp_mb: prodded was set: "
                "clear it, smp_mb, ceded = 0 (H_CEDE returns at once)")
    else:
        e.event("kvmppc_cede", i, v, "MSR[EE] = 1, ceded = 1, smp_mb: not prodded")
    e.vcpu(v, r3=H_SUCCESS, trap=0)
    e.thread(i, loc=HOST, trap=0)


#: The guest's steps on the P9 path: its own H_CEDE; the other exits go to EXIT.
GUEST_STEPS_P9: dict[str, Callable[[Edit, int], None]] = {
    **GUEST_STEPS, "H_CEDE": h_cede, "H_PROD": _exits_alone(h_prod),
    "H_CONFER": _exits_alone(h_confer), "mmio_access": _exits_alone(mmio_access),
}

THREAD_STEPS: dict[str, Callable[[Edit, int], None]] = {
    ENTRY: kvmhv_p9_guest_entry,
    EXIT: guest_exit,
    CEDE: kvmppc_cede,
}

_THREAD_STEP_NAME = {
    ENTRY: "kvmhv_p9_guest_entry",
    EXIT: "kvmhv_p9_guest_entry: exit",
    CEDE: "kvmppc_cede",
}


def thread_function(loc: str, name: str) -> Callable[[Edit, int], None]:
    """The function of the step ``name`` of a thread at ``loc``."""
    if loc == "guest":
        return kvmppc_interrupt if name == "kvmppc_interrupt" else GUEST_STEPS_P9[name]
    return THREAD_STEPS[loc]


# ============================================================================================
# Interrupt sources whose reaction differs on the P9 path (the per-thread HDEC, signals);
# the DEC timer, KVM_INTERRUPT and the remote H_PROD are kvmcede.interrupts' own, whose
# vcpu_kick picks kvmppc_fast_vcpu_kick_hv here
# ============================================================================================

def host_tick(e: Edit, v: int) -> None:
    """The host's timer tick: HDEC is per thread on POWER9, so every thread in the guest
    takes its own HDEC interrupt and leaves alone."""
    for i, t in enumerate(e.threads):
        if t.loc == "guest":
            e.thread(i, hdec_expired=True)
    e.event("hdec", -1, -1, "host tick: the HDEC of every thread in the guest expires")


def signal(e: Edit, v: int) -> None:
    """A signal for vcpu ``v``'s task: ``signal_wake_up`` wakes it if it sleeps in the
    cede wait; if its vcpu is in the guest, ``kick_process`` IPIs the task's cpu (the
    vcpu's thread), which leaves the guest; the next entry returns KVM_EXIT_INTR."""
    k = e.tasks[v]
    e.task(v, signal=True)
    e.event("signal", -1, v, "signal pending for the vcpu's task")
    if k.loc == SCHEDULE:
        e.task(v, loc=RCUWAIT)
    elif k.loc == RUN and e.threads[v].loc in IN_GUEST_LOCS:
        e.thread(v, ipi=True)
        e.event("ipi", -1, v, f"host reschedule IPI to thread {v} (signal)", v)


#: World steps whose reaction differs on the P9 path, by name (as in
#: :data:`kvmcede.interrupts.WORLD_STEPS`, whose budgets they keep).
WORLD_STEPS: dict[str, Callable[[Edit, int], None]] = {
    "hdec": host_tick,
    "signal": signal,
}
