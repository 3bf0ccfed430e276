"""``book3s_hv_rmhandlers.S``: what each hardware thread does in real mode.

Guest entry (``kvm_start_guest``, ``kvmppc_hv_entry``, ``secondary_too_late``), the
real-mode H_CEDE handler (``kvmppc_h_cede``), the wake-up from nap (``kvm_end_cede``),
interrupt delivery on (re-)entry (``kvmppc_cede_reentry``) and the exit path
(``hdec_soon``, the HDEC poke and IPIs, ``secondary_nap``, the switch back to the host).

Reference: Linux 3.4 ``arch/powerpc/kvm/book3s_hv_rmhandlers.S`` (the 19ccb76a logic
essentially unchanged since 3.1), see ``reference/kernel-cede.md`` sections 2-4.

Each thread is at a location ``loc`` (a kernel label, or ``label.part`` for a point
between two shared-memory accesses inside one routine).  :func:`thread_step` says which
step the thread can take there (``None`` while it spins or naps with nothing to wake it);
the step function of that name performs it on an :class:`~kvmcede.edit.Edit`.
"""

from __future__ import annotations

from collections.abc import Callable

from .edit import Edit
from .guest import guest_step, resume_guest
from .state import (
    BOOK3S_IRQPRIO_EXTERNAL,
    BOOK3S_IRQPRIO_EXTERNAL_LEVEL,
    DEC_NEGATIVE,
    H_SUCCESS,
    REGS_LOST,
    Machine,
    entry_count,
    exit_count,
    vcore_view,
)

__all__ = ["HCALL_NAMES", "STEP_NAME", "THREAD_READS_SHARED", "THREAD_STEPS", "TRAP_NAMES",
           "exit_reason", "thread_step"]

# Trap numbers (interrupt vectors) the model uses.
TRAP_EXTERNAL = 0x500
TRAP_DECREMENTER = 0x900
TRAP_HDEC = 0x980
TRAP_SYSCALL = 0xC00  # sc 1: hypercall
TRAP_HDSI = 0xE00  # hypervisor data storage interrupt: an MMIO access
TRAP_NAMES = {0: "handled in real mode", TRAP_EXTERNAL: "external", TRAP_HDEC: "HDEC",
              TRAP_SYSCALL: "hcall", TRAP_HDSI: "HDSI (MMIO)"}

H_CEDE = 0xE0
H_CONFER = 0xE4
H_PROD = 0xE8
HCALL_NAMES = {H_CEDE: "H_CEDE", H_CONFER: "H_CONFER", H_PROD: "H_PROD"}

# LPCR wake-up enables while napping.
LPCR_PECE0 = 1  # wake on external interrupt
LPCR_PECE1 = 2  # wake on decrementer

_EXT_BITS = (1 << BOOK3S_IRQPRIO_EXTERNAL) | (1 << BOOK3S_IRQPRIO_EXTERNAL_LEVEL)

#: The barrier between each side's ``napping_threads`` / ``entry_exit_count`` update and
#: its load of the other word, as in Linux 3.4: ``kvmppc_h_cede`` has ``lwsync`` between
#: its ``stwcx.`` to napping_threads and the re-read of entry_exit_count; ``hdec_soon``
#: has ``lwsync`` between its ``stwcx.`` to entry_exit_count and the load of
#: napping_threads (after the HDEC poke).  Neither orders the store before the load (see
#: :meth:`kvmcede.edit.Edit.store`), which matters only under memory "store_buffer".
#: ``"sync"`` instead (what-if: a full barrier; ~v4.x kernels put a ``sync`` on the exit
#: side and an ``isync`` on the cede side, which orders no store before a later load
#: either) makes the load wait until the thread's stores are visible.  Not a Config field:
#: the kernels the model knows all have ``lwsync`` here; tests set it to ask the question.
BARRIERS: dict[str, str] = {"kvmppc_h_cede": "lwsync", "hdec_soon": "lwsync"}


def exit_reason(trap: int, hcall: int) -> str:
    """Why a thread exits, in the words Metrics uses ("H_CEDE", "HDEC", "MMIO" ...).

    A trap of 0 means an hcall already handled in real mode: on the exit path that is
    always H_CEDE (the last thread to cede, or a cede that met an exit in progress).
    """
    if trap == 0:
        return "H_CEDE"
    if trap == TRAP_SYSCALL:
        return HCALL_NAMES.get(hcall, f"hcall {hcall:#x}")
    if trap == TRAP_HDSI:
        return "MMIO"
    if trap == TRAP_HDEC:
        return "HDEC"
    if trap == TRAP_EXTERNAL:
        return "external"
    return f"trap {trap:#x}"


# ============================================================================================
# Which step a thread can take
# ============================================================================================

def thread_step(s: Machine, i: int, m) -> str | None:
    """Name of the step hardware thread ``i`` can take in state ``s``, or None."""
    t = s.threads[i]
    loc = t.loc
    if loc == "guest":
        # Hypervisor interrupts are taken whatever the guest's MSR[EE]: an XICS IPI
        # presented to the thread (external, 0x500) or the shared HDEC gone negative.
        if t.ipi or s.vcore.hdec_expired:
            return "kvmppc_interrupt"
        return guest_step(s, i, m)
    if loc == "host":
        return None  # thread 0 runs host code: the runner task's steps
    guard = _GUARDS.get(loc)
    if guard is not None and not guard(s, i, m):
        return None
    return STEP_NAME[loc]


def _nap_can_wake(s: Machine, i: int, m) -> bool:
    t = s.threads[i]
    if t.ipi and t.pece & LPCR_PECE0:
        return True
    return bool(t.pece & LPCR_PECE1) and t.vcpu >= 0 and s.vcpus[t.vcpu].dec == DEC_NEGATIVE


def _own_stores_drained(s: Machine, i: int, m) -> bool:
    return not any(st.writer == i for st in s.stores)


def _reservation_ok(s: Machine, i: int, field: str) -> bool:
    # lwarx/stwcx. on a vcore word: the stwcx. succeeds only on the newest value in
    # coherence order, so while another thread's update of the word sits in its store
    # buffer this thread's loop keeps retrying (see Edit.store).
    return not any(st.vcpu < 0 and st.field == field and st.writer != i for st in s.stores)


def _napping_update_ok(s: Machine, i: int, m) -> bool:
    return _own_stores_drained(s, i, m) and _reservation_ok(s, i, "napping_threads")


def _nap_wake_ok(s: Machine, i: int, m) -> bool:
    # kvm_end_cede clears the thread's napping_threads bit with lwarx/stwcx.
    return _nap_can_wake(s, i, m) and (not s.stores or _reservation_ok(s, i, "napping_threads"))


def _barrier_before_load(where: str):
    def guard(s: Machine, i: int, m) -> bool:
        return BARRIERS[where] != "sync" or _own_stores_drained(s, i, m)
    return guard


def _exit_update_ok(s: Machine, i: int, m) -> bool:
    return not s.stores or _reservation_ok(s, i, "entry_exit_count")


def _entry_ok(s: Machine, i: int, m) -> bool:
    # The entry increment is an lwarx/stwcx. too; the thread has nothing buffered here
    # (it comes from nap or from the host), so its update acts on memory at once.
    return not s.stores or _reservation_ok(s, i, "entry_exit_count")


def _primary_may_leave(s: Machine, i: int, m) -> bool:
    # Spin until exit count == entry count (as this thread loads it), then switch the
    # partition; its own exit increment must be visible before in_guest = 0 is (the
    # LPID/SDR1 switch is surrounded by syncs).
    eec = vcore_view(s, "entry_exit_count", i)
    return exit_count(eec) == entry_count(eec) and _own_stores_drained(s, i, m)


def _secondary_may_leave(s: Machine, i: int, m) -> bool:
    # Wait for in_guest == 0; secondary_nap's lwsync orders the exit increment before
    # nap_count++, and nap's ptesync drains the rest: model both as "drained first".
    return s.vcore.in_guest == 0 and _own_stores_drained(s, i, m)


def _sync_then_test_prodded(s: Machine, i: int, m) -> bool:
    # The "sync" between setting ceded and testing prodded waits for this thread's
    # stores to become visible; ablation "no_cede_sync" removes it.
    if "no_cede_sync" in m.config.ablations:
        return True
    return _own_stores_drained(s, i, m)


_GUARDS: dict[str, Callable[[Machine, int, object], bool]] = {
    # offline (host) nap: only an IPI with cpu_start == 0x80 starts the thread in KVM
    "secondary_nap": lambda s, i, m: s.threads[i].ipi and s.threads[i].cpu_start,
    # nap in H_CEDE: external (PECE0) or decrementer (PECE1)
    "nap": _nap_wake_ok,
    "kvmppc_hv_entry": _entry_ok,
    # secondaries spin until the primary has switched the partition
    "kvmppc_cede_reentry": lambda s, i, m: s.vcore.in_guest == 1,
    "secondary_too_late": _secondary_may_leave,
    "kvmppc_h_cede.sync_prodded": _sync_then_test_prodded,
    # lwarx/stwcx. on napping_threads (after the sync, nothing of this thread is
    # buffered); the nap sequence's ptesync: every earlier store is visible first
    "kvmppc_h_cede.napping_threads": _napping_update_ok,
    "kvmppc_h_cede.recheck": _barrier_before_load("kvmppc_h_cede"),
    "kvmppc_h_cede.nap": _own_stores_drained,
    "hdec_soon.poke": _barrier_before_load("hdec_soon"),
    "kvm_end_cede.clear": lambda s, i, m: not s.stores or _reservation_ok(
        s, i, "napping_threads"),
    "hdec_soon": _exit_update_ok,
    # exit: secondaries wait for the primary to leave the partition ...
    "hdec_soon.wait_in_guest": _secondary_may_leave,
    # ... and the primary waits until every entered thread has exited
    "hdec_soon.wait_exits": _primary_may_leave,
}


#: The locations where a thread's step depends on more than the thread itself and its
#: vcpu: the vcore (guest code takes the HDEC; guards on in_guest, the exit count) or the
#: store buffers (syncs and ptesync, the lwarx/stwcx. updates of napping_threads and
#: entry_exit_count, the BARRIERS what-if).  Model.enabled keeps the step of a thread
#: anywhere else while the vcore and the store buffers change.
THREAD_READS_SHARED = frozenset({
    "guest", "kvmppc_cede_reentry", "secondary_too_late", "hdec_soon.wait_in_guest",
    "hdec_soon.wait_exits", "kvmppc_h_cede.sync_prodded", "kvmppc_h_cede.napping_threads",
    "kvmppc_h_cede.nap", "nap", "kvmppc_hv_entry", "kvm_end_cede.clear", "hdec_soon",
    "kvmppc_h_cede.recheck", "hdec_soon.poke"})


# ============================================================================================
# Entry
# ============================================================================================

def kvm_start_guest(e: Edit, i: int) -> None:
    """Wake-up from nap through the system reset vector (``cpu_start == 0x80``).

    ``kvm_start_guest`` tests paca ``napping`` first: a thread napping in H_CEDE goes to
    ``kvm_end_cede``; otherwise it is a secondary the host is starting, which acks the
    IPI and enters the guest.
    """
    t = e.threads[i]
    woke_on = "external" if (t.ipi and t.pece & LPCR_PECE0) else "decrementer"
    if t.loc == "nap" and t.napping:
        _kvm_end_cede_wake(e, i, woke_on)
        return
    # A secondary being started (or, with the prodded_branch bug, a thread that napped
    # without setting paca napping: it is taken for a secondary being started).
    e.thread(i, ipi=False, cpu_start=False, pece=0, loc="kvmppc_hv_entry")
    detail = "secondary started by the host" if t.loc == "secondary_nap" else (
        f"woke ({woke_on}) with paca napping == 0: treated as a secondary being started "
        "(prodded_branch bug)")
    e.event("kvm_start_guest", i, t.vcpu, detail)


def kvmppc_hv_entry(e: Edit, i: int) -> None:
    """Guest entry: count this thread in, only while the exit count is 0.

    The entry count and the exit count share one word so that "increment entry only if
    no thread has started exiting" is a single atomic update: a thread that arrives
    after the first exit goes to ``secondary_too_late`` instead of entering a core that
    is on its way out.
    """
    t = e.threads[i]
    v = t.vcpu
    eec = e.load(i, "entry_exit_count", -1)
    if exit_count(eec) != 0:
        e.thread(i, loc="secondary_too_late")
        e.event("secondary_too_late", i, v, "exit already in progress: not entering")
        return
    e.store(i, "entry_exit_count", -1, eec + 1, buffered=False)
    # Load the guest's registers (non-volatile GPRs r14-r31 and FP state) from the vcpu.
    vcpu = e.vcpus[v]
    # Entry also loads the guest LPCR, so no LPCR_MER is left over from an earlier run.
    e.thread(i, loc="kvmppc_cede_reentry", gprs=vcpu.gpr_saved, fprs=vcpu.fpr_saved, trap=0,
             mer=False)
    if i == 0:
        # The primary switches LPID/SDR1 to the guest's partition, then lets the
        # secondaries (spinning on vcore->in_guest) go in.
        e.vc(in_guest=1)
        e.event("kvmppc_hv_entry", i, v, "primary: entry count "
                f"{entry_count(eec) + 1}, partition switched to the guest, in_guest = 1")
    else:
        e.event("kvmppc_hv_entry", i, v, f"entry count {entry_count(eec) + 1}")


def kvmppc_cede_reentry(e: Edit, i: int) -> None:
    """Last part of every guest entry: deliver at most one pending interrupt, cancel
    the cede, ``fast_guest_return``.

    External beats decrementer: a pending external interrupt sets LPCR_MER (so it fires
    when the guest enables EE) and, if EE is on, is synthesized at 0x500; only without
    one is a negative DEC synthesized at 0x900.
    """
    t = e.threads[i]
    v = t.vcpu
    vcpu = e.vcpus[v]
    vector = 0
    mer = t.mer
    # An interrupt the host already injected (vector set) left MSR[EE] off; a pending
    # external still sets LPCR_MER, or it would wait for the next exit to be delivered.
    if vcpu.pending_exceptions & _EXT_BITS:
        mer = True
        if vcpu.msr_ee and vcpu.vector == 0:
            vector = 0x500
    elif vcpu.msr_ee and vcpu.vector == 0 and vcpu.dec == DEC_NEGATIVE:
        vector = 0x900
    if vector:
        e.vcpu(v, vector=vector, msr_ee=False)
    # "cancel cede": the vcpu is running again.  (In store-buffer mode this is a
    # plain store by a thread whose earlier stores have drained: entry has a sync.)
    e.drain_all(i)
    e.vcpu(v, ceded=0)
    e.thread(i, loc="guest", mer=mer, pece=0)
    what = {0: "no interrupt to deliver", 0x500: "external interrupt synthesized at 0x500",
            0x900: "decrementer interrupt synthesized at 0x900"}[vector]
    e.event("kvmppc_cede_reentry", i, v, what + "; ceded = 0; fast_guest_return", vector)
    resume_guest(e, i, v)


def secondary_too_late(e: Edit, i: int) -> None:
    """A secondary that arrived after the exit started waits for ``in_guest == 0`` and
    goes back to ``secondary_nap``, counting itself in ``nap_count``."""
    _secondary_nap(e, i, "secondary_too_late")


# ============================================================================================
# kvmppc_h_cede (the real-mode H_CEDE handler)
# ============================================================================================

def test_prodded(e: Edit, i: int) -> None:
    """``kvmppc_h_cede`` after ``sync``: test ``prodded``, then set trap = 0, r3 =
    H_SUCCESS before deciding between nap and the host.

    ``ceded = 1; sync; if (prodded)`` is one half of a Dekker pair; H_PROD does
    ``prodded = 1; smp_mb; if (ceded) kick``.  The sync is what makes it impossible for
    both sides to miss each other's store (the lost-prod race).
    """
    t = e.threads[i]
    v = t.vcpu
    cfg = e.m.config
    prodded = e.load(i, "prodded", v)
    if prodded and "no_prodded_check" not in cfg.ablations:
        if "prodded_branch" in cfg.bugs:
            # 3.1-3.5: "beq 1f" reached the "1:" just before nap, not the prodded code:
            # nap without napping bit, paca napping or saved state (effect inferred).
            e.thread(i, loc="nap", pece=LPCR_PECE0 | LPCR_PECE1, gprs=REGS_LOST,
                     fprs=REGS_LOST, cpu_start=True)
            e.event("kvmppc_h_cede", i, v, "prodded, but the branch lands on the nap "
                    "sequence (prodded_branch bug): nap with no napping bit and no "
                    "saved registers")
            e.event("nap", i, v, "nap (unflagged)")
            return
        # kvm_cede_prodded: clear prodded, sync, clear ceded, return H_SUCCESS at once.
        e.drain_all(i)
        e.vcpu(v, prodded=0, ceded=0, r3=H_SUCCESS, trap=0)
        e.vcpu(v, cede_result="prod")
        e.thread(i, loc="guest")
        e.event("kvm_cede_prodded", i, v, "prodded was set: clear it, clear ceded, "
                "H_CEDE returns H_SUCCESS at once")
        resume_guest(e, i, v)
        return
    # The hcall is handled: every later path returns H_SUCCESS to the guest and the
    # host will not run exit handling for it.
    e.vcpu(v, trap=0, r3=H_SUCCESS)
    if cfg.cpu == "PPC970":
        e.thread(i, loc="hdec_soon", trap=0)
        e.event("kvmppc_h_cede", i, v, "PPC970: no nap in the guest, H_TOO_HARD -> host")
        return
    e.thread(i, loc="kvmppc_h_cede.napping_threads")
    e.event("kvmppc_h_cede", i, v, "not prodded: trap = 0, r3 = H_SUCCESS")


def napping_decision(e: Edit, i: int) -> None:
    """Set this thread's bit in ``napping_threads`` unless that would make every
    entered thread a napper: then return H_TOO_HARD and take the whole vcore to the
    host ("the last one out goes to the host")."""
    v = e.threads[i].vcpu
    ptid = e.vcpus[v].ptid
    entered = entry_count(e.load(i, "entry_exit_count", -1))
    new = e.load(i, "napping_threads", -1) | (1 << ptid)  # lwarx; or; stwcx.
    if new.bit_count() >= entered:
        e.thread(i, loc="hdec_soon", trap=0)
        e.event("kvmppc_h_cede", i, v, f"popcount({new:#06b}) = {new.bit_count()} >= "
                f"entry count {entered}: last thread awake, H_TOO_HARD -> exit to host",
                new)
        return
    # The stwcx.'s store may wait in the store buffer: nothing up to the nap's ptesync
    # orders it before the re-read of entry_exit_count (3.4 has lwsync, which orders no
    # store before a later load; weak_cede_barrier takes even that away).
    e.store(i, "napping_threads", -1, new, buffered=True,
            always="weak_cede_barrier" in e.m.config.ablations)
    e.thread(i, napping=1, loc="kvmppc_h_cede.recheck")
    e.event("kvmppc_h_cede", i, v, f"napping_threads |= 1 << {ptid} -> {new:#06b} "
            f"(popcount {new.bit_count()} < entry count {entered}); paca napping = 1", new)


def recheck_exit(e: Edit, i: int) -> None:
    """After setting the napping bit (and lwsync), re-read ``entry_exit_count``.

    Without this check a thread could set its bit just after the first exiter read
    ``napping_threads`` to send its IPIs: it would nap un-IPI'd while the primary waits
    for it to exit.
    """
    v = e.threads[i].vcpu
    if "no_exit_recheck" in e.m.config.ablations:
        e.thread(i, loc="kvmppc_h_cede.nap")
        return
    # (lwsync in 3.4: "order napping_threads update vs testing entry_exit_count" --
    # but lwsync does not order a store before a later load: see Edit.store.)
    if exit_count(e.load(i, "entry_exit_count", -1)) != 0:
        e.thread(i, loc="kvm_end_cede.clear")
        e.event("kvmppc_h_cede", i, v, "exit already in progress: do not nap")
        return
    e.thread(i, loc="kvmppc_h_cede.nap")
    e.event("kvmppc_h_cede", i, v, "exit count still 0: go to nap")


def nap(e: Edit, i: int) -> None:
    """Save what nap loses (NV GPRs r14-r31, FP/VMX/VSX), set PECE0|PECE1, ``nap``."""
    t = e.threads[i]
    v = t.vcpu
    if "no_nv_save" not in e.m.config.ablations:
        e.vcpu(v, gpr_saved=t.gprs, fpr_saved=t.fprs)
        saved = "NV GPRs and FPRs saved"
    else:
        saved = "NOT saving NV GPRs/FPRs (ablation no_nv_save)"
    e.thread(i, loc="nap", pece=LPCR_PECE0 | LPCR_PECE1, cpu_start=True, gprs=REGS_LOST,
             fprs=REGS_LOST)
    e.event("nap", i, v, saved + "; LPCR PECE0|PECE1; nap")


# ============================================================================================
# Wake-up: kvm_end_cede
# ============================================================================================

def _kvm_end_cede_wake(e: Edit, i: int, woke_on: str) -> None:
    t = e.threads[i]
    v = t.vcpu
    ptid = e.vcpus[v].ptid
    # Only secondaries ack the IPI here: on the primary an external interrupt may be
    # the host's, which the host must still see once the core has left the guest.
    acked = woke_on == "external" and ptid != 0
    vcpu = e.vcpus[v]
    e.thread(i, ipi=t.ipi and not acked, cpu_start=False, pece=0,
             gprs=vcpu.gpr_saved, fprs=vcpu.fpr_saved)
    e.event("kvm_start_guest", i, v, f"woke from nap ({woke_on}); paca napping != 0 -> "
            "kvm_end_cede")
    e.event("wake", i, v, woke_on)
    _clear_napping(e, i, ("IPI acked; " if acked else "") + "FPRs and NV GPRs reloaded; ")


def end_cede_clear(e: Edit, i: int) -> None:
    """The "do not nap after all" path of kvmppc_h_cede joins kvm_end_cede here."""
    _clear_napping(e, i, "")


def _clear_napping(e: Edit, i: int, before: str) -> None:
    v = e.threads[i].vcpu
    ptid = e.vcpus[v].ptid
    new = e.load(i, "napping_threads", -1) & ~(1 << ptid)  # lwarx; andc; stwcx.
    e.store(i, "napping_threads", -1, new, buffered=True)
    e.thread(i, napping=0, loc="kvm_end_cede.check")
    e.event("kvm_end_cede", i, v, before + f"clear bit {ptid} of napping_threads -> "
            f"{new:#06b}; paca napping = 0", new)


def end_cede_check(e: Edit, i: int) -> None:
    """Having cleared its bit, the woken thread looks at the exit count: back to the
    guest through ``kvmppc_cede_reentry``, or join the exit (``hcall_real_fallback``)."""
    v = e.threads[i].vcpu
    if exit_count(e.load(i, "entry_exit_count", -1)) == 0:
        e.thread(i, loc="kvmppc_cede_reentry")
        e.event("kvm_end_cede", i, v, "no exit in progress -> kvmppc_cede_reentry")
    else:
        e.thread(i, loc="hdec_soon", trap=0)
        e.event("hcall_real_fallback", i, v, "exit in progress: join it (trap stays 0)")


# ============================================================================================
# Exit
# ============================================================================================

def kvmppc_interrupt(e: Edit, i: int) -> None:
    """The guest takes a hypervisor interrupt: an IPI/external (0x500) or HDEC (0x980)."""
    t = e.threads[i]
    trap = 0x500 if t.ipi else TRAP_HDEC
    e.thread(i, loc="hdec_soon", trap=trap)
    e.event("kvmppc_interrupt", i, t.vcpu, f"guest exit: {TRAP_NAMES[trap]} ({trap:#x})",
            trap)


def hdec_soon(e: Edit, i: int) -> None:
    """Count this thread out: ``entry_exit_count += 0x100`` (atomically).  The old value
    the atomic update returns decides the path: the first exiter (old < 0x100) with
    others in the guest must then get them out too.  (The kernel keeps it in a register
    only for that test, so the model does not store it.)"""
    t = e.threads[i]
    v = t.vcpu
    # lwsync; lwarx; addi 0x100; stwcx.; lwsync.  Neither lwsync orders the stwcx.'s
    # store before the later load of napping_threads (see Edit.store).
    old = e.load(i, "entry_exit_count", -1)
    e.store(i, "entry_exit_count", -1, old + 0x100, buffered=True)
    # Save the guest state the host needs (trap, DEC as dec_expires, the NV GPRs).
    vcpu = e.vcpus[v]
    e.vcpu(v, trap=t.trap, gpr_saved=t.gprs if t.gprs != REGS_LOST else vcpu.gpr_saved,
           fpr_saved=t.fprs if t.fprs != REGS_LOST else vcpu.fpr_saved)
    first = old < 0x100
    reason = exit_reason(t.trap, vcpu.hcall)
    e.event("hdec_soon", i, v, f"exit count {exit_count(old)} -> {exit_count(old) + 1}"
            + (" (first exiter)" if first else ""), old)
    if first:
        e.event("exit", i, v, reason, t.trap)
    if first and entry_count(old) > 1:
        e.thread(i, loc="hdec_soon.poke")
    else:
        e.thread(i, loc="hdec_soon.wait_exits" if i == 0
                 else "hdec_soon.wait_in_guest")


def poke(e: Edit, i: int) -> None:
    """First exiter: write 0 to the shared HDEC (unless this exit is an HDEC), then IPI
    every thread in ``napping_threads`` but itself, because HDEC does not wake a
    napping thread."""
    t = e.threads[i]
    v = t.vcpu
    if t.trap != TRAP_HDEC:
        e.vc(hdec_expired=True)
        e.event("hdec_poke", i, v, "HDEC = 0: every thread in the guest exits")
    targets = e.load(i, "napping_threads", -1) & ~(1 << i)
    if "no_ipi_on_exit" in e.m.config.ablations:
        if targets:
            e.event("hdec_soon", i, v, f"NOT sending IPIs to napping threads {targets:#06b}"
                    " (ablation no_ipi_on_exit)", targets)
        targets = 0
    for j in range(len(e.threads)):
        if targets >> j & 1:
            e.thread(j, ipi=True)
            e.event("ipi", i, e.threads[j].vcpu, f"IPI to napping thread {j}", j)
    e.thread(i, loc="hdec_soon.wait_exits" if i == 0 else "hdec_soon.wait_in_guest")


def secondary_nap(e: Edit, i: int) -> None:
    """Secondary done: once the primary has left the partition (``in_guest == 0``), ack
    any pending IPI, ``nap_count++`` and nap offline (PECE0 only)."""
    _secondary_nap(e, i, "secondary_nap")


def _secondary_nap(e: Edit, i: int, kind: str) -> None:
    t = e.threads[i]
    e.vc(nap_count=e.vcore.nap_count + 1)
    e.thread(i, loc="secondary_nap", ipi=False, pece=LPCR_PECE0, cpu_start=False,
             napping=0, trap=0)
    e.event(kind, i, t.vcpu, f"nap_count = {e.vcore.nap_count}; thread offline (PECE0)")


def switch_to_host(e: Edit, i: int) -> None:
    """Primary: every entered thread has exited; switch LPID/SDR1 back to the host,
    ``in_guest = 0``, HDEC = 0x7fffffff, and return into ``kvmppc_run_core``."""
    t = e.threads[i]
    e.vc(in_guest=0, hdec_expired=False)
    # The host takes any interrupt pending on thread 0 (e.g. a reschedule IPI) as soon
    # as it re-enables interrupts.
    e.thread(i, loc="host", ipi=False, trap=0, mer=False)
    e.event("switch_to_host", i, t.vcpu, "all threads out: partition switched back to the "
            "host, in_guest = 0")


#: Step functions by the thread's location.
THREAD_STEPS: dict[str, Callable[[Edit, int], None]] = {
    "secondary_nap": kvm_start_guest,
    "nap": kvm_start_guest,
    "kvmppc_hv_entry": kvmppc_hv_entry,
    "kvmppc_cede_reentry": kvmppc_cede_reentry,
    "secondary_too_late": secondary_too_late,
    "kvmppc_h_cede.sync_prodded": test_prodded,
    "kvmppc_h_cede.napping_threads": napping_decision,
    "kvmppc_h_cede.recheck": recheck_exit,
    "kvmppc_h_cede.nap": nap,
    "kvm_end_cede.clear": end_cede_clear,
    "kvm_end_cede.check": end_cede_check,
    "hdec_soon": hdec_soon,
    "hdec_soon.poke": poke,
    "hdec_soon.wait_in_guest": secondary_nap,
    "hdec_soon.wait_exits": switch_to_host,
}

#: The kernel name of the step a thread takes from each location.
STEP_NAME: dict[str, str] = {
    "secondary_nap": "kvm_start_guest",
    "nap": "kvm_start_guest",
    "kvmppc_hv_entry": "kvmppc_hv_entry",
    "kvmppc_cede_reentry": "kvmppc_cede_reentry",
    "secondary_too_late": "secondary_too_late",
    "kvmppc_h_cede.sync_prodded": "kvmppc_h_cede: sync; test prodded",
    "kvmppc_h_cede.napping_threads": "kvmppc_h_cede: napping_threads",
    "kvmppc_h_cede.recheck": "kvmppc_h_cede: re-check entry_exit_count",
    "kvmppc_h_cede.nap": "kvmppc_h_cede: save state, nap",
    "kvm_end_cede.clear": "kvm_end_cede",
    "kvm_end_cede.check": "kvm_end_cede: check exit count",
    "hdec_soon": "hdec_soon",
    "hdec_soon.poke": "hdec_soon: HDEC poke, IPI nappers",
    "hdec_soon.wait_in_guest": "secondary_nap",
    "hdec_soon.wait_exits": "switch_to_host",
}
