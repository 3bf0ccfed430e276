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

from .config import (
    MAX_EXPECTED_EVENTS,
    MAX_UNTIL_US,
    Config,
    _is_int,
    check_time_us,
    is_number,
    show,
)
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
    """A duration of an op: a finite number of microseconds in (0, MAX_TIME_US]."""
    check_time_us(where, us, allow_none=allow_none)


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
        if not (_is_int(self.target) and self.target == -1):
            _check_vcpu(f"{where}.target", self.target, n_vcpus, all_=True)


@dataclass(frozen=True, slots=True)
class Mmio:
    """Access an emulated device: exit to the host, emulate in userspace for ``us``
    microseconds (None: the cost model's ``mmio_emulation``)."""

    us: float | None = None

    def check(self, where: str, n_vcpus: int) -> None:
        _check_us(f"{where}.us", self.us, True)


Op = Union[Busy, Idle, Prod, Confer, Mmio]  # noqa: UP007 (a readable alias)
IDLE_FOREVER = Idle(None)


#: The ops, by name (exact types: a subclass of an op is not an op — the simulator picks
#: a step by the op's type, and JSON names the op by its class).
OPS: dict[str, type] = {"Busy": Busy, "Idle": Idle, "Prod": Prod, "Confer": Confer,
                        "Mmio": Mmio}


def _as_tuple(where: str, x: object) -> tuple:
    if isinstance(x, str | bytes | dict) or not isinstance(x, Iterable):
        raise ValueError(f"{where}: got {x!r:.80}; allowed: a sequence (tuple or list)")
    return tuple(x)


def _check_vcpu(where: str, v: object, n: int, all_: bool = False) -> None:
    if not _is_int(v) or not 0 <= v < n:
        extra = ", or -1 (all)" if all_ else ""
        raise ValueError(f"{where}: got {show(v)}; allowed: a vcpu id (integer) from 0 to "
                         f"{n - 1}{extra}")


def _exact(where: str, x: object, kinds: dict[str, type]) -> None:
    """``x`` must be an instance of exactly one of ``kinds`` (not of a subclass)."""
    if type(x) in kinds.values():
        return
    names = ", ".join(kinds)
    sub = [k for k, t in kinds.items() if isinstance(x, t)]
    why = f" (a subclass of {sub[0]}: give a {sub[0]} itself)" if sub else ""
    raise ValueError(f"{where}: got {x!r:.80}{why}; allowed: exactly one of {names}")


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
#: The external events, by name (exact types, like :data:`OPS`).
EVENTS: dict[str, type] = {"Interrupt": Interrupt, "RemoteProd": RemoteProd,
                           "Signal": Signal}


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
        """Raise ValueError naming the first field that does not fit ``config``
        (``workload.programs[v][k].us: got VALUE; allowed: ...``).  Times are finite,
        from 0 to :data:`~kvmcede.config.MAX_TIME_US` microseconds."""
        n = config.vcpus
        if len(self.programs) != n:
            raise ValueError(f"workload.programs: got {len(self.programs)} program(s); "
                             f"allowed: one program per vcpu (config.vcpus = {n})")
        for v, prog in enumerate(self.programs):
            for k, op in enumerate(prog):
                where = f"workload.programs[{v}][{k}]"
                _exact(where, op, OPS)
                op.check(where, n)
        for k, ev in enumerate(self.events):
            where = f"workload.events[{k}]"
            _exact(where, ev, EVENTS)
            check_time_us(f"{where}.at_us", ev.at_us, positive=False)
            _check_vcpu(f"{where}.vcpu", ev.vcpu, n)
        if self.start_us is not None:
            if len(self.start_us) != n:
                raise ValueError(f"workload.start_us: got {len(self.start_us)} time(s); "
                                 f"allowed: one time per vcpu ({n}) or None")
            for v, t in enumerate(self.start_us):
                check_time_us(f"workload.start_us[{v}]", t, positive=False)
        for name in ("name", "notes"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"workload.{name}: got {getattr(self, name)!r:.80}; "
                                 f"allowed: a string")

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
        """The workload :meth:`to_dict` wrote.  Its shape is checked here (ValueError
        naming the path, e.g. ``workload.programs[0][2].op``); its values against a
        configuration by :meth:`check`."""
        if not isinstance(d, dict):
            raise ValueError(f"workload: got {type(d).__name__} {d!r:.80}; allowed: a dict "
                             f"as written by Workload.to_dict()")
        keys = ("programs", "events", "start_us", "name", "notes")
        bad = sorted(map(repr, set(d) - set(keys)))
        if bad:
            raise ValueError(f"workload: got unknown key(s) {', '.join(bad)}; allowed: "
                             f"{list(keys)}")
        for key in ("programs", "events"):
            if key not in d:
                raise ValueError(f"workload.{key}: missing; allowed: a list")
        programs = []
        for v, p in enumerate(_as_tuple("workload.programs", d["programs"])):
            prog = []
            for k, o in enumerate(_as_tuple(f"workload.programs[{v}]", p)):
                prog.append(_from_fields(f"workload.programs[{v}][{k}]", o, "op", OPS))
            programs.append(tuple(prog))
        events = tuple(_from_fields(f"workload.events[{k}]", e, "event", EVENTS)
                       for k, e in enumerate(_as_tuple("workload.events", d["events"])))
        start = d.get("start_us")
        return cls(tuple(programs), events,
                   None if start is None else _as_tuple("workload.start_us", start),
                   d.get("name", ""), d.get("notes", ""))


def _from_fields(where: str, o: object, tag: str, kinds: dict[str, type]):
    """An op or event from its JSON dict ``{tag: class name, field: value, ...}``."""
    if not isinstance(o, dict):
        raise ValueError(f"{where}: got {o!r:.80}; allowed: a dict with key {tag!r}")
    o = dict(o)
    name = o.pop(tag, None)
    if not isinstance(name, str) or name not in kinds:
        raise ValueError(f"{where}.{tag}: got {show(name)}; allowed: one of {list(kinds)}")
    cls = kinds[name]
    allowed = list(cls.__slots__)
    bad = sorted(map(repr, set(o) - set(allowed)))
    if bad:
        raise ValueError(f"{where}: got unknown key(s) {', '.join(bad)} for {name}; "
                         f"allowed: {allowed}")
    try:
        return cls(**o)
    except TypeError:
        raise ValueError(f"{where}: got {o!r:.80} for {name}; allowed: the fields "
                         f"{allowed}") from None


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
    _check_random(config, duration_us, idle_fraction=idle_fraction, idle_us=idle_us,
                  interrupt_rate=interrupt_rate, idle_vcpus=idle_vcpus, seed=seed)
    n = config.vcpus
    if idle_vcpus is None:
        idle_vcpus = tuple(range(n))
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


def _check_random(config: Config, duration_us: float, *, idle_fraction: float,
                  idle_us: float, interrupt_rate: float,
                  idle_vcpus: tuple[int, ...] | None, seed: int | None) -> None:
    """The checks of :func:`random_workload`, without building anything (a widget uses
    them to check the extremes its sliders can reach)."""
    if not isinstance(config, Config):
        raise ValueError(f"config: got {type(config).__name__}; allowed: a Config")
    check_time_us("duration_us", duration_us, maximum=MAX_UNTIL_US)
    check_time_us("idle_us", idle_us)
    f = idle_fraction
    if not is_number(f) or not 0.0 <= f <= 1.0:
        raise ValueError(f"idle_fraction: got {show(f)}; allowed: a number from 0 to 1")
    r = interrupt_rate
    if not is_number(r) or not 0.0 <= r <= 1e9:
        raise ValueError(f"interrupt_rate: got {show(r)}; allowed: a number of interrupts "
                         f"per second per vcpu from 0 to 1e9 (and at most "
                         f"{MAX_EXPECTED_EVENTS:,} expected in the whole workload)")
    if seed is not None and not _is_int(seed):
        raise ValueError(f"seed: got {show(seed)}; allowed: an integer or None")
    n = config.vcpus
    idle = set(range(n)) if idle_vcpus is None else None
    if idle is None:
        vs = _as_tuple("idle_vcpus", idle_vcpus)
        for k, v in enumerate(vs):
            _check_vcpu(f"idle_vcpus[{k}]", v, n)
        idle = set(vs)
    # Bounded work: the expected number of interrupts, idle periods and busy bursts.
    interrupts = r * duration_us / 1e6 * n
    if interrupts > MAX_EXPECTED_EVENTS:
        raise ValueError(
            f"interrupt_rate: got {show(r)} with duration_us={duration_us!r} and {n} vcpus, "
            f"about {interrupts:.3g} interrupts; allowed: at most {MAX_EXPECTED_EVENTS:,} "
            f"expected interrupts (rate <= {MAX_EXPECTED_EVENTS / (duration_us / 1e6 * n):.4g}"
            f" per second per vcpu for this duration)")
    periods = 0.0
    if idle and 0.0 < f < 1.0:
        busy_mean = idle_us * (1.0 - f) / f
        cycle = (max(1.0, min(idle_us, duration_us))
                 + max(1.0, min(busy_mean, duration_us)))
        periods = 2 * len(idle) * duration_us / cycle
    if interrupts + periods > MAX_EXPECTED_EVENTS:
        raise ValueError(
            f"idle_us: got {show(idle_us)} with duration_us={duration_us!r}, "
            f"idle_fraction={f!r} and {len(idle)} idle vcpu(s), about "
            f"{interrupts + periods:.3g} idle periods, busy bursts and interrupts; allowed: "
            f"at most {MAX_EXPECTED_EVENTS:,} (longer idle periods or a shorter duration)")


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

__all__ += ["EVENTS", "IDLE_FOREVER", "OPS", "ExternalEvent"]
