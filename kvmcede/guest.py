"""Guest programs: what each vcpu's guest code does, and the workloads built from them.

A guest program is a tuple of ops, run in order; after the last op the vcpu idles
forever (H_CEDE with no timer).  The ops are the guest behaviour the protocol reacts to:

* :class:`Busy` — run guest code for a while (it also rewrites the NV GPRs/FPRs, so a
  lost register shows up as a wrong value later);
* :class:`Idle` — the Linux idle loop: program the decrementer for the next timer event
  (or none), hard-disable interrupts and call H_CEDE, again and again until H_CEDE
  returns because of an interrupt (delivered at its vector) or a prod;
* :class:`Prod`, :class:`Confer` — the H_PROD / H_CONFER hypercalls (always handled in
  the host in 3.x: their slots in ``hcall_real_table`` are 0);
* :class:`Mmio` — a load from an emulated device: an HDSI exit to the host and a round
  trip through userspace (QEMU).

External events happen at given times: device interrupts (``KVM_INTERRUPT`` from
userspace), H_PRODs from a vcpu of another core, and signals to a vcpu's task.

Simplification (said in the book too): the guest's XICS accept/EOI of an external
interrupt (H_XIRR/H_EOI, handled by QEMU in 3.1) is not modelled; the guest's 0x500
handler simply consumes the interrupt.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from .config import Config
from .state import (
    BOOK3S_IRQPRIO_DECREMENTER,
    BOOK3S_IRQPRIO_EXTERNAL,
    BOOK3S_IRQPRIO_EXTERNAL_LEVEL,
    DEC_ARMED,
    DEC_NEGATIVE,
    DEC_OFF,
    Machine,
)

if TYPE_CHECKING:
    from .edit import Edit

__all__ = [
    "GUEST_STEPS",
    "Busy",
    "Confer",
    "Idle",
    "Interrupt",
    "Mmio",
    "Op",
    "Prod",
    "RemoteProd",
    "Signal",
    "Workload",
    "guest_step",
    "random_workload",
    "resume_guest",
]

_DEC = 1 << BOOK3S_IRQPRIO_DECREMENTER
_EXT = (1 << BOOK3S_IRQPRIO_EXTERNAL) | (1 << BOOK3S_IRQPRIO_EXTERNAL_LEVEL)


def _check_us(where: str, us: object, allow_none: bool) -> None:
    if us is None and allow_none:
        return
    if (not isinstance(us, int | float) or isinstance(us, bool) or not us > 0
            or us != us or us == float("inf")):
        extra = " or None" if allow_none else ""
        raise ValueError(f"{where} must be a positive finite number of microseconds"
                         f"{extra}, got {us!r}")


@dataclass(frozen=True, slots=True)
class Busy:
    """Run guest code for ``us`` microseconds."""

    us: float

    def check(self, where: str, n_vcpus: int) -> None:
        _check_us(f"{where}.us", self.us, False)


@dataclass(frozen=True, slots=True)
class Idle:
    """Idle: program DEC ``us`` microseconds ahead (None: no timer) and H_CEDE until an
    interrupt or a prod arrives."""

    us: float | None = None

    def check(self, where: str, n_vcpus: int) -> None:
        _check_us(f"{where}.us", self.us, True)


@dataclass(frozen=True, slots=True)
class Prod:
    """H_PROD the vcpu ``target``."""

    target: int

    def check(self, where: str, n_vcpus: int) -> None:
        _check_vcpu(f"{where}.target", self.target, n_vcpus)


@dataclass(frozen=True, slots=True)
class Confer:
    """H_CONFER (a no-op returning H_SUCCESS in 3.x); ``target`` -1 means all."""

    target: int = -1

    def check(self, where: str, n_vcpus: int) -> None:
        if self.target != -1:
            _check_vcpu(f"{where}.target", self.target, n_vcpus)


@dataclass(frozen=True, slots=True)
class Mmio:
    """Access an emulated device: exit to the host, emulate in userspace for ``us``
    microseconds (None: the cost model's ``mmio_emulation``)."""

    us: float | None = None

    def check(self, where: str, n_vcpus: int) -> None:
        _check_us(f"{where}.us", self.us, True)


Op = Union[Busy, Idle, Prod, Confer, Mmio]  # noqa: UP007 (a readable alias)
IDLE_FOREVER = Idle(None)


def _as_tuple(where: str, x: object) -> tuple:
    if isinstance(x, str | bytes) or not isinstance(x, Iterable):
        raise ValueError(f"{where} must be a sequence (tuple or list), got {x!r}")
    return tuple(x)


def _check_vcpu(where: str, v: object, n: int) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < n:
        raise ValueError(f"{where} must be a vcpu id from 0 to {n - 1}, got {v!r}")


@dataclass(frozen=True, slots=True)
class Interrupt:
    """A device interrupt for ``vcpu`` at ``at_us``: userspace's ``KVM_INTERRUPT``."""

    at_us: float
    vcpu: int


@dataclass(frozen=True, slots=True)
class RemoteProd:
    """An H_PROD of ``vcpu`` made at ``at_us`` by a vcpu running on another core."""

    at_us: float
    vcpu: int


@dataclass(frozen=True, slots=True)
class Signal:
    """A signal to the task of ``vcpu`` at ``at_us`` (it leaves KVM_RUN and re-enters)."""

    at_us: float
    vcpu: int


ExternalEvent = Union[Interrupt, RemoteProd, Signal]  # noqa: UP007


@dataclass(frozen=True, slots=True)
class Workload:
    """Per-vcpu guest programs, external events, and when each vcpu's task first calls
    KVM_RUN (``start_us``; all at 0 by default)."""

    programs: tuple[tuple[Op, ...], ...]
    events: tuple[ExternalEvent, ...] = ()
    start_us: tuple[float, ...] | None = None
    name: str = ""
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # Shapes are checked here (a ValueError naming the field, not a TypeError from
        # deep inside); values are checked against a Config by check().
        programs = _as_tuple("workload.programs", self.programs)
        object.__setattr__(self, "programs", tuple(
            _as_tuple(f"workload.programs[{v}]", p) for v, p in enumerate(programs)))
        events = _as_tuple("workload.events", self.events)
        with contextlib.suppress(AttributeError, TypeError):  # malformed: check() names it
            events = tuple(sorted(events, key=lambda ev: (ev.at_us, type(ev).__name__,
                                                          ev.vcpu)))
        object.__setattr__(self, "events", events)
        if self.start_us is not None:
            object.__setattr__(self, "start_us", _as_tuple("workload.start_us",
                                                           self.start_us))

    def check(self, config: Config) -> None:
        """Raise ValueError naming the first field that does not fit ``config``."""
        n = config.vcpus
        if len(self.programs) != n:
            raise ValueError(f"workload.programs must have one program per vcpu "
                             f"(config.vcpus = {n}), got {len(self.programs)}")
        for v, prog in enumerate(self.programs):
            for k, op in enumerate(prog):
                if not isinstance(op, Busy | Idle | Prod | Confer | Mmio):
                    raise ValueError(f"workload.programs[{v}][{k}] must be Busy, Idle, "
                                     f"Prod, Confer or Mmio, got {op!r}")
                op.check(f"workload.programs[{v}][{k}]", n)
        for k, ev in enumerate(self.events):
            if not isinstance(ev, Interrupt | RemoteProd | Signal):
                raise ValueError(f"workload.events[{k}] must be Interrupt, RemoteProd or "
                                 f"Signal, got {ev!r}")
            if (not isinstance(ev.at_us, int | float) or isinstance(ev.at_us, bool)
                    or not 0 <= ev.at_us < float("inf")):
                raise ValueError(f"workload.events[{k}].at_us must be a finite time >= 0 "
                                 f"microseconds, got {ev.at_us!r}")
            _check_vcpu(f"workload.events[{k}].vcpu", ev.vcpu, n)
        if self.start_us is not None:
            if len(self.start_us) != n:
                raise ValueError(f"workload.start_us must have one time per vcpu "
                                 f"({n}), got {len(self.start_us)}")
            for v, t in enumerate(self.start_us):
                if (not isinstance(t, int | float) or isinstance(t, bool)
                        or not 0 <= t < float("inf")):
                    raise ValueError(f"workload.start_us[{v}] must be a finite time >= 0 "
                                     f"microseconds, got {t!r}")

    def op(self, v: int, pc: int) -> Op:
        """The op at ``pc`` of vcpu ``v`` (idle forever past the end)."""
        prog = self.programs[v]
        return prog[pc] if pc < len(prog) else IDLE_FOREVER

    def to_dict(self) -> dict:
        """JSON-ready form; :meth:`from_dict` reverses it exactly."""
        def op_d(op: Op) -> dict:
            d = {"op": type(op).__name__}
            for f in op.__slots__:
                d[f] = getattr(op, f)
            return d
        return {
            "programs": [[op_d(op) for op in p] for p in self.programs],
            "events": [{"event": type(ev).__name__, "at_us": ev.at_us, "vcpu": ev.vcpu}
                       for ev in self.events],
            "start_us": None if self.start_us is None else list(self.start_us),
            "name": self.name, "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Workload:
        ops = {"Busy": Busy, "Idle": Idle, "Prod": Prod, "Confer": Confer, "Mmio": Mmio}
        evs = {"Interrupt": Interrupt, "RemoteProd": RemoteProd, "Signal": Signal}
        programs = tuple(tuple(ops[o.pop("op")](**o) for o in map(dict, p))
                         for p in d["programs"])
        events = tuple(evs[e["event"]](e["at_us"], e["vcpu"]) for e in d["events"])
        start = d.get("start_us")
        return cls(programs, events, None if start is None else tuple(start),
                   d.get("name", ""), d.get("notes", ""))


def random_workload(config: Config, duration_us: float = 1000.0, *,
                    idle_fraction: float = 0.5, idle_us: float = 1000.0,
                    interrupt_rate: float = 0.0, idle_vcpus: tuple[int, ...] | None = None,
                    seed: int | None = None) -> Workload:
    """A random workload for ``duration_us`` microseconds.

    Each vcpu in ``idle_vcpus`` (default: all) alternates busy bursts and idle periods
    with exponentially distributed lengths: idle periods average ``idle_us`` and the
    busy bursts are sized so that the vcpu is idle ``idle_fraction`` of the time; the
    other vcpus are busy throughout.  Device interrupts arrive as a Poisson process of
    ``interrupt_rate`` per second per vcpu.  ``seed`` (default ``config.seed``) makes
    the workload reproducible.
    """
    if not isinstance(config, Config):
        raise ValueError(f"config must be a Config, got {type(config).__name__}")
    for name, val in (("duration_us", duration_us), ("idle_us", idle_us)):
        _check_us(name, val, False)
    if (not isinstance(idle_fraction, int | float) or isinstance(idle_fraction, bool)
            or not 0.0 <= idle_fraction <= 1.0):
        raise ValueError(f"idle_fraction must be between 0 and 1, got {idle_fraction!r}")
    if (not isinstance(interrupt_rate, int | float) or isinstance(interrupt_rate, bool)
            or not 0.0 <= interrupt_rate < float("inf")):
        raise ValueError(f"interrupt_rate must be >= 0 interrupts per second per vcpu, "
                         f"got {interrupt_rate!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")
    n = config.vcpus
    if idle_vcpus is None:
        idle_vcpus = tuple(range(n))
    for k, v in enumerate(_as_tuple("idle_vcpus", idle_vcpus)):
        _check_vcpu(f"idle_vcpus[{k}]", v, n)
    rng = random.Random(config.seed if seed is None else seed)
    programs = []
    for v in range(n):
        ops: list[Op] = []
        if v not in idle_vcpus or idle_fraction == 0.0:
            ops.append(Busy(float(duration_us)))
        elif idle_fraction == 1.0:
            ops.append(Idle(None))
        else:
            # No period is longer than the whole workload (it would end after it
            # anyway): extreme parameters must not overflow the tick arithmetic.
            busy_mean = min(idle_us * (1.0 - idle_fraction) / idle_fraction,
                            1e6 * duration_us)
            t = 0.0
            # Start at a random phase so that the vcpus do not move in lockstep.
            if rng.random() < idle_fraction:
                d = min(rng.expovariate(1.0 / idle_us), duration_us)
                ops.append(Idle(max(d, 1.0)))
                t += d
            while t < duration_us:
                b = max(min(rng.expovariate(1.0 / busy_mean), duration_us), 1.0)
                ops.append(Busy(round(b, 3)))
                d = max(min(rng.expovariate(1.0 / idle_us), duration_us), 1.0)
                ops.append(Idle(round(d, 3)))
                t += b + d
        programs.append(tuple(ops))
    events: list[ExternalEvent] = []
    if interrupt_rate > 0:
        for v in range(n):
            t = rng.expovariate(interrupt_rate) * 1e6
            while t < duration_us:
                events.append(Interrupt(round(t, 3), v))
                t += rng.expovariate(interrupt_rate) * 1e6
    return Workload(tuple(programs), tuple(events), name="random",
                    notes=f"idle_fraction={idle_fraction}, idle_us={idle_us}, "
                          f"interrupt_rate={interrupt_rate}, seed={seed}")


# ============================================================================================
# The guest's steps (a thread at location "guest")
# ============================================================================================

def guest_step(s: Machine, i: int, m) -> str:
    """The next thing the guest code on thread ``i`` does."""
    v = s.threads[i].vcpu
    vcpu = s.vcpus[v]
    if vcpu.vector:
        return "guest_interrupt"
    if vcpu.dec == DEC_NEGATIVE and vcpu.msr_ee:
        return "guest_dec"
    op = m.workload.op(v, vcpu.pc)
    return _OP_STEP[type(op)]


_OP_STEP = {Busy: "guest_run", Idle: "H_CEDE", Prod: "H_PROD", Confer: "H_CONFER",
            Mmio: "mmio_access"}


def guest_run(e: Edit, i: int) -> None:
    """A busy burst: the guest computes and rewrites its NV registers."""
    v = e.threads[i].vcpu
    vcpu = e.vcpus[v]
    g, f = vcpu.gpr_expect + 1, vcpu.fpr_expect + 1
    e.vcpu(v, gpr_expect=g, fpr_expect=f, pc=vcpu.pc + 1, cede_result="")
    e.thread(i, gprs=g, fprs=f)
    e.event("guest_run", i, v, f"busy burst done (op {vcpu.pc})")


def guest_interrupt(e: Edit, i: int) -> None:
    """The guest's handler for the interrupt it was sent to (0x500 or 0x900)."""
    v = e.threads[i].vcpu
    vcpu = e.vcpus[v]
    if vcpu.vector == 0x900:
        # The guest's timer code reprograms DEC for its next event.
        e.vcpu(v, dec=DEC_OFF, raised=vcpu.raised & ~_DEC)
    else:
        # The guest accepts the interrupt at its (emulated) XICS; see module docstring.
        e.vcpu(v, pending_exceptions=vcpu.pending_exceptions & ~_EXT,
               raised=vcpu.raised & ~_EXT)
        e.thread(i, mer=False)
    e.vcpu(v, vector=0, at_vector=False, msr_ee=True)
    e.event("guest_interrupt", i, v, f"guest handled the interrupt at {vcpu.vector:#x}",
            vcpu.vector)
    if e.threads[i].mer and e.vcpus[v].pending_exceptions & _EXT:
        # The handler's return turns MSR[EE] back on while LPCR_MER is set (by
        # kvmppc_cede_reentry): the mediated external interrupt is taken at once.
        e.vcpu(v, vector=0x500, at_vector=True, msr_ee=False)
        e.event("deliver", i, v, "mediated external interrupt (LPCR_MER) at 0x500", 0x500)


def guest_dec(e: Edit, i: int) -> None:
    """The decrementer interrupt taken directly by running guest code (no hypervisor
    involvement).  If the guest was about to idle, its timer event has come."""
    v = e.threads[i].vcpu
    vcpu = e.vcpus[v]
    e.vcpu(v, dec=DEC_OFF, raised=vcpu.raised & ~_DEC)
    e.event("deliver", i, v, "decrementer taken in the guest at 0x900", 0x900)
    if isinstance(e.m.workload.op(v, vcpu.pc), Idle):
        e.vcpu(v, pc=vcpu.pc + 1, cede_result="")


def h_cede(e: Edit, i: int) -> None:
    """The idle loop's H_CEDE: program DEC, hard-disable, ``sc 1``.

    Policy "realmode": ``kvmppc_h_cede`` starts: MSR[EE] is set in the saved MSR (PAPR:
    "as if it was on at the time of the call") and ``ceded = 1`` is stored.  Policy
    "host": the hcall exits the whole core (trap 0xc00).
    """
    v = e.threads[i].vcpu
    vcpu = e.vcpus[v]
    op = e.m.workload.op(v, vcpu.pc)
    if vcpu.cede_result == "":  # first H_CEDE of this idle period: program the timer
        if op.us is None:
            e.vcpu(v, dec=DEC_OFF)
        else:
            e.vcpu(v, dec=DEC_ARMED, dec_expires=e.now + e.m.ticks(op.us))
    # r3 carries the hcall number into the hypervisor; H_SUCCESS replaces it on return.
    e.vcpu(v, guest="cede", msr_ee=True, r3=0xE0)
    if e.m.config.policy == "host":
        e.vcpu(v, hcall=0xE0, hcall_arg=-1)
        e.thread(i, loc="hdec_soon", trap=0xC00)
        e.event("H_CEDE", i, v, "sc 1: H_CEDE is not in hcall_real_table: exit to host")
        return
    # kvmppc_interrupt saved the trap (0xc00) in the vcpu before hcall_try_real_mode.
    e.vcpu(v, trap=0xC00)
    e.store(i, "ceded", v, 1, buffered=True)
    e.thread(i, loc="kvmppc_h_cede.sync_prodded")
    e.event("H_CEDE", i, v, "sc 1 -> kvmppc_h_cede: MSR[EE] = 1, ceded = 1")


def _hcall_exit(e: Edit, i: int, hcall: int, arg: int, name: str) -> None:
    v = e.threads[i].vcpu
    e.vcpu(v, guest="hcall", hcall=hcall, hcall_arg=arg, r3=hcall)
    e.thread(i, loc="hdec_soon", trap=0xC00)
    e.event(name, i, v, f"sc 1: {name} is handled in the host: exit", arg)


def h_prod(e: Edit, i: int) -> None:
    v = e.threads[i].vcpu
    _hcall_exit(e, i, 0xE8, e.m.workload.op(v, e.vcpus[v].pc).target, "H_PROD")


def h_confer(e: Edit, i: int) -> None:
    v = e.threads[i].vcpu
    _hcall_exit(e, i, 0xE4, e.m.workload.op(v, e.vcpus[v].pc).target, "H_CONFER")


def mmio_access(e: Edit, i: int) -> None:
    v = e.threads[i].vcpu
    e.vcpu(v, guest="mmio")
    e.thread(i, loc="hdec_soon", trap=0xE00)
    e.event("mmio_access", i, v, "load from an emulated device: HDSI, exit to host")


def resume_guest(e: Edit, i: int, v: int) -> None:
    """The vcpu resumes guest code on thread ``i``: finish the op it was in.

    An H_CEDE returns; the idle period is over if the return brings an interrupt (at its
    vector) or a prod, otherwise the idle loop cedes again.  Another hcall or an MMIO
    load completes.
    """
    vcpu = e.vcpus[v]
    if vcpu.vector and not vcpu.at_vector:
        e.vcpu(v, at_vector=True)
        e.event("deliver", i, v, f"interrupt delivered at {vcpu.vector:#x}", vcpu.vector)
    if vcpu.guest == "cede":
        if vcpu.cede_result == "prod" or vcpu.vector:
            why = "prodded" if vcpu.cede_result == "prod" else f"interrupt {vcpu.vector:#x}"
            e.vcpu(v, guest="", pc=vcpu.pc + 1, cede_result="")
            e.event("H_CEDE returns", i, v, f"H_SUCCESS ({why}): idle period over")
        else:
            e.vcpu(v, guest="", cede_result="plain")
            e.event("H_CEDE returns", i, v, "H_SUCCESS with nothing to do: cede again")
    elif vcpu.guest in ("hcall", "mmio"):
        e.vcpu(v, guest="", pc=vcpu.pc + 1, hcall=0, hcall_arg=-1)
        e.event("hcall returns" if vcpu.guest == "hcall" else "mmio returns", i, v,
                "back in the guest")


#: Step functions of the guest, by step name.
GUEST_STEPS = {
    "guest_run": guest_run,
    "guest_interrupt": guest_interrupt,
    "guest_dec": guest_dec,
    "H_CEDE": h_cede,
    "H_PROD": h_prod,
    "H_CONFER": h_confer,
    "mmio_access": mmio_access,
}

__all__ += ["IDLE_FOREVER", "ExternalEvent"]
