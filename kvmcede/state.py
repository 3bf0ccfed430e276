"""The immutable machine state: one POWER7 core, one vcore, its vcpus and host tasks.

Every field that exists in the kernel keeps the kernel's name (``napping_threads``,
``entry_exit_count``, ``nap_count``, ``n_woken``, ``in_guest``, ``vcore_state``,
``ceded``, ``prodded``, ``ptid``, ``pending_exceptions`` ...).  The states are
``NamedTuple`` instances: immutable, hashable and cheap to copy, so the interleaving
explorer can keep a visited set of them and the timed simulator can keep every one it
passes through.

Where the model abstracts (a program counter instead of instruction addresses, a tag
instead of 18 register values) the docstring of the field says so.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

__all__ = [
    "BOOK3S_IRQPRIO_DECREMENTER",
    "BOOK3S_IRQPRIO_EXTERNAL",
    "BOOK3S_IRQPRIO_EXTERNAL_LEVEL",
    "DEC_ARMED",
    "DEC_NEGATIVE",
    "DEC_OFF",
    "H_SUCCESS",
    "H_TOO_HARD",
    "KVMPPC_VCPU_BUSY_IN_HOST",
    "KVMPPC_VCPU_RUNNABLE",
    "KVMPPC_VCPU_STOPPED",
    "REGS_LOST",
    "RESUME_GUEST",
    "RESUME_HOST",
    "VCORE_EXITING",
    "VCORE_INACTIVE",
    "VCORE_POLLING",
    "VCORE_RUNNING",
    "VCORE_SLEEPING",
    "Dec",
    "Machine",
    "Store",
    "Task",
    "Thread",
    "Vcore",
    "Vcpu",
    "entry_count",
    "exit_count",
]

# --- struct kvmppc_vcore.vcore_state (Linux 3.4, asm/kvm_host.h) -------------------------
VCORE_INACTIVE = 0
VCORE_RUNNING = 1
VCORE_EXITING = 2
VCORE_SLEEPING = 3
#: The runner polls ``kvmppc_vcore_check_block()`` before sleeping (halt polling, change
#: 0cda69dd, Linux 4.7).  Not a 3.4 state: the kernels with halt polling also have
#: PREEMPT (and, for a while, PIGGYBACK) and number their states differently; the model
#: keeps 3.4's numbers and adds this one after them.
VCORE_POLLING = 4
VCORE_STATE_NAMES = {0: "VCORE_INACTIVE", 1: "VCORE_RUNNING", 2: "VCORE_EXITING",
                     3: "VCORE_SLEEPING", 4: "VCORE_POLLING"}

# --- vcpu->arch.state (Linux 3.4) ----------------------------------------------------------
KVMPPC_VCPU_STOPPED = 0
KVMPPC_VCPU_BUSY_IN_HOST = 1
KVMPPC_VCPU_RUNNABLE = 2
VCPU_STATE_NAMES = {0: "KVMPPC_VCPU_STOPPED", 1: "KVMPPC_VCPU_BUSY_IN_HOST",
                    2: "KVMPPC_VCPU_RUNNABLE"}

# --- BOOK3S_IRQPRIO_* bit numbers in pending_exceptions (Linux 3.6, asm/kvm_asm.h) ---------
BOOK3S_IRQPRIO_EXTERNAL = 13
BOOK3S_IRQPRIO_DECREMENTER = 14
BOOK3S_IRQPRIO_EXTERNAL_LEVEL = 16

# --- hcall return codes and host resume codes ----------------------------------------------
H_SUCCESS = 0
H_TOO_HARD = 9999  # kvm_book3s_64 private value: "do it in the host"
RESUME_GUEST = 0
RESUME_HOST = 2  # RESUME_FLAG_HOST (kvm_ppc.h)

#: Register tag of a hardware thread whose GPRs/FPRs were lost in nap.
REGS_LOST = -1


class Dec(IntEnum):
    """The guest decrementer of a vcpu, abstracted to what the protocol tests.

    ``OFF``: the guest has no timer event programmed (DEC far in the future).
    ``ARMED``: DEC is counting down to ``dec_expires``. ``NEGATIVE``: DEC has passed zero,
    a decrementer exception is due (the hardware condition LPCR_PECE1 wakes a nap on, the
    condition ``kvmppc_cede_reentry`` tests with "DEC < 0").
    """

    OFF = 0
    ARMED = 1
    NEGATIVE = 2


# The members again as module constants, for the code that runs on every step: in Python
# 3.11 each ``Dec.X`` goes through ``EnumType.__getattr__``, several times slower.
DEC_OFF, DEC_ARMED, DEC_NEGATIVE = Dec.OFF, Dec.ARMED, Dec.NEGATIVE


def entry_count(eec: int) -> int:
    """``VCORE_ENTRY_COUNT(vc)``: the low byte of ``entry_exit_count``."""
    return eec & 0xFF


def exit_count(eec: int) -> int:
    """``VCORE_EXIT_COUNT(vc)``: ``entry_exit_count >> 8``."""
    return eec >> 8


class Thread(NamedTuple):
    """One hardware thread of the POWER7 core and its paca ``kvm_hstate``.

    ``loc`` is where the thread is: a kernel label from ``book3s_hv_rmhandlers.S`` (see
    :mod:`kvmcede.realmode`), ``"guest"`` while it runs guest code, or ``"host"`` for
    thread 0 while it runs host kernel code (the vcore runner).
    """

    loc: str
    #: paca ``kvm_hstate.napping``: 1 from kvmppc_h_cede's nap decision to kvm_end_cede.
    napping: int = 0
    #: paca ``kvm_hstate.kvm_vcpu`` (vcpu id, -1 for none).
    vcpu: int = -1
    #: XICS MFRR of this thread holds an IPI (an interrupt is presented to the thread).
    ipi: bool = False
    #: paca ``cpu_start`` (PACAPROCSTART) == 0x80: route a nap wake-up to KVM.
    cpu_start: bool = False
    #: LPCR wake-up enables while napping: 0, ``PECE0`` (1) or ``PECE0|PECE1`` (3).
    pece: int = 0
    #: ``LPCR_MER`` set by kvmppc_cede_reentry for a pending external interrupt.
    mer: bool = False
    #: Contents of the guest's non-volatile GPRs r14-r31 in the thread's registers (a
    #: tag standing for 18 values), or :data:`REGS_LOST` after nap.
    gprs: int = 0
    #: The same for the FP/VMX/VSX registers.
    fprs: int = 0
    #: Trap number of the exit this thread is taking (0 for a handled hcall).
    trap: int = 0
    #: POWER9 path only: this thread's own HDEC has expired (the host's next timer event;
    #: HDEC is per thread on POWER9, so the tick takes each thread out on its own).
    hdec_expired: bool = False


class Vcore(NamedTuple):
    """``struct kvmppc_vcore`` (Linux 3.4) plus the wait queue ``wq``."""

    vcore_state: int = VCORE_INACTIVE
    #: Entry count in bits 0-7, exit count from bit 8: incremented by 1 on entry (only
    #: while the exit count is 0) and by 0x100 on exit.
    entry_exit_count: int = 0
    #: Bit ``ptid`` set while that thread is (about to be) napping in H_CEDE.
    napping_threads: int = 0
    #: Secondaries that went back to ``secondary_nap`` after this run.
    nap_count: int = 0
    #: Secondaries the host IPI'd to start this run.
    n_woken: int = 0
    #: 1 while the core's partition registers hold the guest's LPID/SDR1.  (POWER9 path:
    #: the number of threads in the guest, each with the guest's LPID on its own.)
    in_guest: int = 0
    #: ``runnable_threads``: vcpu ids in list order (``n_runnable`` is its length).
    runnable: tuple[int, ...] = ()
    #: vcpus in KVMPPC_VCPU_BUSY_IN_HOST: while non-zero nobody runs the vcore.
    n_busy: int = 0
    #: Physical cpu (thread 0 of the core) the vcore runs on.
    pcpu: int = 0
    #: Tasks (vcpu ids) waiting on ``vc->wq`` (after ``prepare_to_wait``).
    wq: tuple[int, ...] = ()
    #: The shared hypervisor decrementer has gone negative (HDEC poke or host tick):
    #: every thread in the guest takes an HDEC interrupt (trap 0x980).
    hdec_expired: bool = False
    #: Task (vcpu id) currently acting as the vcore's runner, -1 if none.
    runner: int = -1
    # ---- halt polling (change 0cda69dd, Linux 4.7; unused without it) ----
    #: ``vc->halt_poll_ns``: this vcore's current polling window, in nanoseconds; grown
    #: and shrunk after every block (see :func:`kvmcede.host.adjust_halt_poll`).
    halt_poll_ns: int = 0
    #: ``start_poll``: time (timebase ticks) the runner entered kvmppc_vcore_blocked,
    #: from which ``block_ns`` is measured (0 in the explorer, which has no time).
    block_start: int = 0
    #: Model-only: a kick found the runner polling, so its next
    #: ``kvmppc_vcore_check_block()`` sees a vcpu with work.  The kernel's poller reads
    #: the vcpus directly; keeping the fact on the vcore lets the polling task's step
    #: depend on the vcore alone (what :meth:`kvmcede.model.Model.enabled` caches on).
    poll_woken: bool = False

    @property
    def n_runnable(self) -> int:
        """``vc->n_runnable``: number of vcpus on ``runnable_threads``."""
        return len(self.runnable)


class Vcpu(NamedTuple):
    """The ``vcpu->arch`` fields the protocol uses, plus the guest program's position."""

    #: KVMPPC_VCPU_STOPPED / BUSY_IN_HOST / RUNNABLE.
    state: int = KVMPPC_VCPU_STOPPED
    ceded: int = 0
    prodded: int = 0
    ptid: int = 0
    #: Bitmap of ``1 << BOOK3S_IRQPRIO_*``.
    pending_exceptions: int = 0
    #: MSR[EE] of the guest.
    msr_ee: bool = True
    #: The guest decrementer (see :class:`Dec`).
    dec: Dec = Dec.OFF
    #: Timebase value at which DEC goes negative (simulator time; 0 in the explorer).
    dec_expires: int = 0
    #: ``timer_running``: the host's ``dec_timer`` hrtimer is armed.
    timer_running: bool = False
    #: Trap number of the last exit (0 = nothing for the host to handle).
    trap: int = 0
    #: ``vcpu->arch.ret``: RESUME_GUEST, RESUME_HOST or a negative errno.
    ret: int = RESUME_GUEST
    #: ``vcpu->cpu``: the cpu to IPI on a kick (``vc->pcpu`` while the vcore runs), -1.
    cpu: int = -1
    #: Saved NV GPRs r14-r31 in ``vcpu->arch.gpr[]`` (tag) and saved FP state (tag).
    gpr_saved: int = 0
    fpr_saved: int = 0
    #: Guest r3 (hcall return value).
    r3: int = 0
    #: Hypercall the guest made that the host must handle (0xE4 H_CONFER, 0xE8 H_PROD,
    #: 0xE0 H_CEDE under policy "host"), with its target vcpu.
    hcall: int = 0
    hcall_arg: int = -1
    #: ``kvm_run->exit_reason`` for userspace: "", "KVM_EXIT_MMIO", "KVM_EXIT_INTR" ...
    exit_reason: str = ""
    # ---- the guest program (abstract guest code, see kvmcede.guest) ----
    #: Index of the current op in this vcpu's program.
    pc: int = 0
    #: Where the guest is inside the op: "" (starting it), "cede" (inside H_CEDE),
    #: "hcall" (inside another hcall), "mmio" (waiting for an MMIO load).
    guest: str = ""
    #: Vector the guest will execute first when it next runs (0x500, 0x900; 0 = none).
    vector: int = 0
    #: The interrupt at ``vector`` has been delivered: the guest's PC is at the vector,
    #: its handler has not run yet (an exit now re-enters at the vector, not again).
    at_vector: bool = False
    #: How the last H_CEDE returned: "" (nothing yet), "irq", "prod", "plain".
    cede_result: str = ""
    #: What the guest believes its NV GPRs / FPRs hold (the tag it last wrote).
    gpr_expect: int = 0
    fpr_expect: int = 0
    #: Interrupts raised for this vcpu and not yet delivered at their vector (bitmap of
    #: ``1 << BOOK3S_IRQPRIO_*``; used for the delivery property and latency metric).
    raised: int = 0
    #: ``vcpu->arch.thread_cpu`` (POWER9 path): the hardware thread the vcpu runs on while
    #: in ``kvmhv_run_single_vcpu``'s guest entry, -1 outside; the thread a kick IPIs.
    thread_cpu: int = -1


class Task(NamedTuple):
    """The host task that runs one vcpu's ``KVM_RUN`` ioctl (QEMU's vcpu thread)."""

    #: Where the task is: a function of ``book3s_hv.c`` (see :mod:`kvmcede.host`).
    loc: str = "userspace"
    #: A wake-up (``wake_up(&vcpu->arch.cpu_run)`` or on ``vc->wq``) has arrived.
    woken: bool = False
    #: A signal is pending for the task.
    signal: bool = False


class Store(NamedTuple):
    """One store sitting in a store buffer (memory mode ``"store_buffer"`` only)."""

    writer: int  # hardware thread index, or PRODDER for the remote H_PROD actor
    field: str  # "ceded" or "prodded"
    vcpu: int
    value: int


class Machine(NamedTuple):
    """The whole machine state: what the explorer hashes and the simulator steps."""

    threads: tuple[Thread, ...]
    vcore: Vcore
    vcpus: tuple[Vcpu, ...]
    tasks: tuple[Task, ...]
    #: Store buffers, oldest first (empty under sequential consistency).
    stores: tuple[Store, ...] = ()
    #: Remote H_PROD actor (a vcpu of another core doing H_PROD): its location
    #: ("" idle, "smp_mb" after storing prodded) and target.
    prodder: tuple[str, int] = ("", -1)
    #: Remaining environment events (explorer budgets): device interrupts, DEC expiries,
    #: remote H_PRODs, host ticks (HDEC), signals.  The simulator does not use these.
    budget: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
