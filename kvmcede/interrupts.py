"""Interrupt sources: the guest decrementer, its host hrtimer, device interrupts from
userspace, H_PROD from another core, the host tick (HDEC), signals, and store buffers.

These are the *environment* actors.  Under the timed simulator they happen at given
times; under the explorer they may happen in any order, each kind bounded by a budget.
The reactions to them (a napping thread waking, the guest taking a DEC) are guarded
steps of the threads and tasks, in :mod:`kvmcede.realmode`, :mod:`kvmcede.guest` and
:mod:`kvmcede.host`.

Reference: ``kvmppc_decrementer_func`` / ``kvmppc_decrementer_wakeup`` and the
``KVM_INTERRUPT`` ioctl (Linux 3.4 ``arch/powerpc/kvm/powerpc.c``, ``book3s.c``),
``H_PROD`` in ``kvmppc_pseries_do_hcall`` (``book3s_hv.c``); reference sections 5.5, 5.6.
"""

from __future__ import annotations

from .edit import PRODDER, Edit
from .host import kick
from .p9 import kvmppc_fast_vcpu_kick_hv
from .state import (
    BOOK3S_IRQPRIO_DECREMENTER,
    BOOK3S_IRQPRIO_EXTERNAL,
    DEC_ARMED,
    DEC_NEGATIVE,
    KVMPPC_VCPU_STOPPED,
    Machine,
)

__all__ = ["B_DEC", "B_HDEC", "B_IRQ", "B_PROD", "B_SIGNAL", "WORLD_STEPS", "world_steps"]

# Indexes into Machine.budget.
B_IRQ, B_DEC, B_PROD, B_HDEC, B_SIGNAL = range(5)

_DEC = 1 << BOOK3S_IRQPRIO_DECREMENTER
_EXT = 1 << BOOK3S_IRQPRIO_EXTERNAL


def timer_fires(s: Machine, v: int) -> bool:
    """The vcpu's ``dec_timer`` hrtimer is armed and its expiry time has come."""
    u = s.vcpus[v]
    return u.timer_running and u.dec == DEC_NEGATIVE


def vcpu_kick(e: Edit, v: int, why: str) -> None:
    """Kick vcpu ``v`` as this configuration's kernel does: ``kvm_vcpu_kick`` (3.4,
    :func:`kvmcede.host.kick`), or on the POWER9 path ``kvmppc_fast_vcpu_kick_hv``
    (:func:`kvmcede.p9.kvmppc_fast_vcpu_kick_hv`).  The interrupt sources below are the
    same code on both; only the kick differs."""
    if e.m.config.cpu == "POWER9":
        kvmppc_fast_vcpu_kick_hv(e, v, why)
    else:
        kick(e, v, why)


def kvmppc_decrementer_func(e: Edit, v: int) -> None:
    """The DEC hrtimer of a vcpu ceded in the host fires: queue a DEC exception and
    ``kvm_vcpu_kick`` the vcpu."""
    u = e.vcpus[v]
    e.vcpu(v, timer_running=False, pending_exceptions=u.pending_exceptions | _DEC)
    e.event("kvmppc_decrementer_func", -1, v, "dec_timer fired: queue DEC")
    vcpu_kick(e, v, "decrementer")


# ---- the environment ------------------------------------------------------------------------

def decrementer(e: Edit, v: int) -> None:
    """The guest DEC of vcpu ``v`` passes zero."""
    u = e.vcpus[v]
    e.vcpu(v, dec=DEC_NEGATIVE, raised=u.raised | _DEC)
    e.event("decrementer", -1, v, "guest DEC expires", 0x900)
    e.event("raise", -1, v, "decrementer", 0x900)


def kvm_interrupt(e: Edit, v: int) -> None:
    """Userspace's ``KVM_INTERRUPT`` ioctl: queue an external interrupt, kick the vcpu."""
    u = e.vcpus[v]
    e.vcpu(v, pending_exceptions=u.pending_exceptions | _EXT, raised=u.raised | _EXT)
    e.event("KVM_INTERRUPT", -1, v, "device interrupt: queue EXTERNAL", 0x500)
    e.event("raise", -1, v, "external", 0x500)
    vcpu_kick(e, v, "KVM_INTERRUPT")


def remote_prod(e: Edit, v: int) -> None:
    """A vcpu on another core calls H_PROD on ``v``: ``prodded = 1`` (this store may sit
    in the prodder's store buffer), then ``smp_mb`` and the test of ``ceded``."""
    e.store(PRODDER, "prodded", v, 1, buffered=True)
    e.prodder = ("smp_mb", v)
    e.event("H_PROD", -1, v, "H_PROD from another core: prodded = 1")


def remote_prod_mb(e: Edit, v: int) -> None:
    """The remote H_PROD after ``smp_mb``: if the target is ceded, kick it (bug
    ``hprod_wakes_caller``: the caller, on another core, is not ceded: nobody is)."""
    ceded = e.load(PRODDER, "ceded", v)
    e.prodder = ("", -1)
    if "hprod_wakes_caller" in e.m.config.bugs:
        e.event("H_PROD", -1, v, "smp_mb; tests the caller's ceded, not the target's: "
                "no kick (hprod_wakes_caller)")
    elif ceded:
        e.event("H_PROD", -1, v, "smp_mb; target ceded: kick it")
        vcpu_kick(e, v, "H_PROD")
    else:
        e.event("H_PROD", -1, v, "smp_mb; target not ceded: nothing more to do")


def host_tick(e: Edit, v: int) -> None:
    """The host's timer tick is due: HDEC (loaded from the host DEC at entry) expires
    and every thread in the guest takes an HDEC interrupt."""
    e.vc(hdec_expired=True)
    e.event("hdec", -1, -1, "host tick: HDEC expires")


def signal(e: Edit, v: int) -> None:
    """A signal for vcpu ``v``'s task (it leaves KVM_RUN with KVM_EXIT_INTR).

    A sleeping task is woken.  The runner task is *running* (on thread 0, inside
    ``__kvmppc_vcore_entry``), so ``signal_wake_up`` -> ``kick_process`` sends its cpu a
    reschedule IPI, which takes the whole core out of the guest (**inferred** from the
    generic signal code; the reference does not discuss it).  Other tasks' vcpus keep
    running until the vcore exits for another reason."""
    t = e.tasks[v]
    asleep = t.loc in ("kvmppc_wait_for_exec", "kvmppc_vcore_blocked.schedule")
    e.task(v, signal=True, woken=t.woken or asleep)
    e.event("signal", -1, v, "signal pending for the vcpu's task")
    if t.loc == "kvmppc_run_core" and e.threads[0].loc != "host":
        e.thread(0, ipi=True)
        e.event("ipi", -1, v, "host reschedule IPI to thread 0 (signal)", 0)


def drain(e: Edit, writer: int) -> None:
    """The oldest buffered store of ``writer`` becomes visible to everyone."""
    for k, st in enumerate(e.stores):
        if st.writer == writer:
            e.stores = e.stores[:k] + e.stores[k + 1:]
            e.visible(st)
            who = "remote H_PROD" if writer == PRODDER else f"thread {writer}"
            what = (f"{st.field} = {st.value}" if st.vcpu >= 0 else
                    f"vcore {st.field} = {st.value:#06x}")
            e.event("store visible", writer if writer != PRODDER else -1, st.vcpu,
                    f"{who}'s store {what} drains from its store buffer")
            return


#: name -> (function, budget index or None)
WORLD_STEPS = {
    "decrementer": (decrementer, B_DEC),
    "KVM_INTERRUPT": (kvm_interrupt, B_IRQ),
    "H_PROD (remote)": (remote_prod, B_PROD),
    "hdec": (host_tick, B_HDEC),
    "signal": (signal, B_SIGNAL),
}


def world_steps(s: Machine) -> list[tuple[str, int]]:
    """Environment steps enabled in ``s`` under the explorer's budgets."""
    out: list[tuple[str, int]] = []
    b = s.budget
    for v, u in enumerate(s.vcpus):
        if b[B_DEC] > 0 and u.dec == DEC_ARMED:
            out.append(("decrementer", v))
        if b[B_IRQ] > 0 and u.state != KVMPPC_VCPU_STOPPED and not u.pending_exceptions & _EXT:
            out.append(("KVM_INTERRUPT", v))
        if b[B_PROD] > 0 and s.prodder[0] == "" and u.state != KVMPPC_VCPU_STOPPED:
            out.append(("H_PROD (remote)", v))
        if b[B_SIGNAL] > 0 and not s.tasks[v].signal:
            out.append(("signal", v))
    if b[B_HDEC] > 0 and s.vcore.in_guest and not s.vcore.hdec_expired:
        out.append(("hdec", 0))
    return out
