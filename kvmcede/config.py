"""Configuration: the machine, the policy, the bugs and ablations, the cost model.

Everything that changes the behaviour of the model is a field of :class:`Config`; the
variants of the protocol are parameters of one semantics, never copies of it.
Invalid values raise :class:`ValueError` naming the field and what it allows.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields, replace

__all__ = ["ABLATIONS", "BASE_KERNEL", "BUGS", "CHANGES", "MAX_EXPECTED_EVENTS", "MAX_STEPS",
           "MAX_TIME_US", "MAX_UNTIL_US", "TIMEBASE_HZ", "TIMEBASE_RANGE", "Config",
           "CostModel"]

#: POWER7 timebase frequency (Hz).  The timebase ticks at 512 MHz on POWER7 systems
#: (Linux reads it from the device tree's ``timebase-frequency``; 512000000 on POWER7).
TIMEBASE_HZ = 512_000_000

#: The later kernel changes the model knows, by abbreviated commit id.  The default
#: configuration is **Linux 3.4 as shipped** (no change applied, the bugs that shipped
#: included); each change is switched on by naming it in ``Config.changes`` (or all
#: changes up to a kernel version at once with :meth:`Config.linux`).
#: id -> (first kernel version with it, title, what it changes in the model)
CHANGES: dict[str, tuple[str, str, str]] = {
    "04f995a5": (
        "3.6", "KVM: PPC: Book3S HV: Fix incorrect branch in H_CEDE code",
        "a prodded vcpu's H_CEDE returns at once (kvm_cede_prodded) instead of napping "
        "unflagged; removes bug 'prodded_branch'"),
    "8464c884": (
        "4.10", "KVM: PPC: Book3S HV: Fix H_PROD to actually wake the target vcpu",
        "H_PROD tests and kicks the target (not the caller), and a prodded vcpu counts as "
        "woken; removes bug 'hprod_wakes_caller'"),
    # The upstream id of the halt-polling commit could not be verified from the sources
    # at hand: the title and the 2016 date are from an IBM PowerKVM changelog (where a
    # backport, 6aa4dfea, sits next to "Change vcore element runnable_threads from
    # linked-list to array"); 0cda69dd and Linux 4.7 are what the project believes the
    # upstream commit to be.  The code modelled was read in a ~4.10-era book3s_hv.c.
    "0cda69dd": (
        "4.7", "KVM: PPC: Book3S HV: Implement halt polling in the kvm_hv kernel module",
        "when every vcpu of the vcore is ceded, the runner polls kvmppc_vcore_check_block() "
        "for vc->halt_poll_ns in VCORE_POLLING before sleeping; the window grows and "
        "shrinks per vcore (costs.halt_poll_ns, _grow, _grow_start, _shrink)"),
}

#: The bugs that shipped in 3.4, each with the change that fixed it.  A bug is present
#: in a configuration exactly when its fix is not in ``Config.changes``.
#: name -> (fixing change, description)
BUGS: dict[str, tuple[str, str]] = {
    "prodded_branch": ("04f995a5", (
        "3.1-3.5: the branch to the prodded case of kvmppc_h_cede used local label '1f' "
        "and landed on the nap sequence instead (fixed by 04f995a5, Linux 3.6)")),
    "hprod_wakes_caller": ("8464c884", (
        "3.2-4.9: H_PROD set the target's prodded flag but tested and woke the calling "
        "vcpu, so a sleeping target stayed asleep (fixed by 8464c884, Linux 4.10)")),
}

#: The kernel the default configuration models.
BASE_KERNEL = "3.4"


# ============================================================================================
# Limits: every accepted input finishes in bounded time and memory
# ============================================================================================

#: Longest simulation, in microseconds of machine time: 10 s (``simulate(until=...)``,
#: ``random_workload(duration_us=...)``, sweeps).  The chapters run at most 20 ms and the
#: benchmarks 1 s; a 10 s run takes a few seconds to a minute of wall time, and with
#: ``simulate(..., record="metrics")`` its memory does not grow with the simulated time.
MAX_UNTIL_US = 10_000_000

#: Longest time in a workload (a busy burst, an idle timer, an MMIO emulation, the time
#: of an external event or of a first KVM_RUN), in microseconds: 1000 s, a hundred times
#: the longest simulation (a longer one could never end inside a run; use ``Idle(None)``
#: for "no timer").  Keeps every time-to-ticks conversion finite.
MAX_TIME_US = 1e9

#: Most events a random workload may expect to generate (interrupts, and idle periods
#: plus busy bursts): a million, so that building and simulating it stays bounded.
MAX_EXPECTED_EVENTS = 1_000_000

#: Default bound on the model steps of one simulation (``simulate(max_steps=...)``): a
#: 10 s run of the default random workload takes about 600,000 steps, one with a million
#: interrupts some tens of millions.  A run that would take more stops with a ValueError.
MAX_STEPS = 50_000_000

#: Allowed timebase frequencies (Hz): 1 MHz to 100 GHz (POWER7: 512 MHz).
TIMEBASE_RANGE = (1_000_000, 100_000_000_000)

#: Largest cost of one step, in ticks (2**62: far beyond any run, and every conversion to
#: microseconds stays a finite float).
MAX_COST_TICKS = 2**62


def _is_int(v: object) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_number(v: object) -> bool:
    """A real number (int or float, Python or numpy), not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def show(v: object, limit: int = 60) -> str:
    """``repr(v)`` for an error message, cut short if it is long (a 400-digit int)."""
    r = repr(v)
    return r if len(r) <= limit else f"{r[:limit - 15]}...({len(r)} chars)"


def is_finite(v: object) -> bool:
    """A finite real number (ints of any size are finite; no float conversion)."""
    if not is_number(v):
        return False
    return True if isinstance(v, numbers.Integral) else math.isfinite(v)


def check_time_us(where: str, v: object, *, positive: bool = True, allow_none: bool = False,
                  maximum: float = MAX_TIME_US) -> None:
    """Raise ``ValueError("where: got V; allowed: ...")`` unless ``v`` is a finite number of
    microseconds in (0, maximum] (``positive``) or [0, maximum], or None if allowed."""
    if v is None and allow_none:
        return
    ok = is_finite(v) and (v > 0 if positive else v >= 0) and v <= maximum
    if not ok:
        lo = "0 < t" if positive else "0 <= t"
        extra = ", or None" if allow_none else ""
        raise ValueError(f"{where}: got {show(v)}; allowed: a finite number of microseconds "
                         f"{lo} <= {maximum:g}{extra}")


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


#: Teaching ablations: each removes one line's worth of the protocol.
ABLATIONS: dict[str, str] = {
    "no_ipi_on_exit": "the first exiter does not IPI the threads in napping_threads",
    "no_exit_recheck": "kvmppc_h_cede does not re-read entry_exit_count after setting its "
                       "napping bit",
    "no_prodded_check": "kvmppc_h_cede does not test vcpu->arch.prodded",
    "no_nv_save": "kvmppc_h_cede naps without saving the NV GPRs and FPRs",
    "no_cede_sync": "no sync between setting ceded and reading prodded (only visible in "
                    "memory mode 'store_buffer')",
    "weak_cede_barrier": "no barrier between kvmppc_h_cede's napping_threads stwcx. and its "
                         "re-read of entry_exit_count: the store may still be buffered",
}

POLICIES = ("realmode", "host")
CPUS = ("POWER7", "PPC970", "POWER9")

#: The commit that introduced the POWER9 path ``cpu="POWER9"`` models, and its kernel.
P9_PATH = ("95a6432c", "4.20")
#: The ablations that remove a line the POWER9 path still has (kvmppc_cede's prodded test);
#: the others remove lines of the POWER7 real-mode code, which the P9 path does not run.
P9_ABLATIONS = frozenset({"no_prodded_check"})
#: Cost fields only the POWER9 path uses (left out of ``to_dict`` of other cpus while at
#: their defaults, so that POWER7 traces keep their bytes).
_P9_COSTS = ("p9_guest_entry", "p9_guest_exit")
MEMORY_MODES = ("sc", "store_buffer")


def _us(x: float) -> int:
    return round(x * TIMEBASE_HZ / 1_000_000)


def _known_fields(cls):
    """Make an unknown keyword argument of the dataclass ``cls`` a ValueError naming it and
    the allowed fields (the generated ``__init__`` raises a bare TypeError)."""
    init = cls.__init__
    names = [f.name for f in fields(cls) if f.init]
    prefix = "costs." if cls.__name__ == "CostModel" else ""

    def __init__(self, *args, **kwargs):
        bad = sorted(set(kwargs) - set(names))
        if bad:
            raise ValueError(f"{prefix}{bad[0]}: unknown field of {cls.__name__}; allowed: "
                             f"{names}")
        if len(args) > len(names):
            raise ValueError(f"{cls.__name__}: got {len(args)} positional arguments; "
                             f"allowed: at most {len(names)} ({names})")
        init(self, *args, **kwargs)

    __init__.__doc__ = init.__doc__
    __init__.__wrapped__ = init
    cls.__init__ = __init__
    return cls


@_known_fields
@dataclass(frozen=True, slots=True)
class CostModel:
    """Cost of each step, in timebase ticks: the time from the moment a step can run to
    the moment its effect happens (the simulator runs a step ``cost`` ticks after it
    became enabled).

    Sources, where there is one: ``hdec_poke`` — the code comment in
    book3s_hv_rmhandlers.S says every thread takes the HDEC interrupt "within ~2ns" of
    the poke; ``nap_wakeup`` and ``thread_start`` — the POWER7 nap exit latency firmware
    advertises to Linux (skiboot ``hw/slw.c``, ``power7_cpu_idle_states``: nap
    ``latency_ns = 4000``; an upper bound for the idle governor, not a measurement).
    ``cede_latency`` is not a cost: it is the exit latency the *guest's* cpuidle driver
    assumes for its CEDE state (pseries cpuidle: 10 us), i.e. the whole wake-up path as
    a guest sees it, which the model should *produce* (``benchmarks/bench_costs.py``
    compares the two); no step is charged it.  All other defaults are **illustrative**
    (assumptions): orders of magnitude for a 2011 POWER7 host, chosen so that a
    partition switch costs a few microseconds and a host scheduler wake-up tens of
    microseconds.  Change them to see which conclusions depend on them
    (``benchmarks/bench_costs.py`` does it for the headline figures): times (lost guest
    time, latencies) scale with them; the counts of exits, IPIs and naps depend on them
    only through which of two nearly simultaneous events comes first.

    The four ``halt_poll*`` fields are not costs but the halt-polling module parameters (used only
    with change ``0cda69dd``), kept here with the host's other tunables: nanoseconds and
    factors, as the kernel's parameters are.
    """

    #: A few dozen real-mode instructions between two shared accesses (illustrative).
    realmode_step: int = _us(0.1)
    #: Guest exit: save guest state, switch partition, restore host state (illustrative).
    partition_switch: int = _us(1.5)
    #: Guest entry: load guest state and switch the partition (illustrative).
    guest_entry: int = _us(1.5)
    #: HDEC poke reaching every thread ("within ~2ns", rmhandlers comment).
    hdec_poke: int = 1
    #: XICS IPI from store to MFRR until the target thread takes it (illustrative).
    ipi_latency: int = _us(0.5)
    #: A thread napping in H_CEDE waking through the system reset vector to
    #: kvm_start_guest: POWER7 nap exit (skiboot hw/slw.c, nap latency_ns = 4000).
    #: Charged on top of ``ipi_latency`` when an IPI wakes it, alone for its DEC.
    nap_wakeup: int = _us(4)
    #: An offline secondary (napping in secondary_nap, PECE0) started by the host's
    #: XICS IPI, from the IPI's arrival to kvm_start_guest: the same POWER7 nap exit
    #: (skiboot hw/slw.c, nap latency_ns = 4000); charged on top of ``ipi_latency``.
    thread_start: int = _us(4)
    #: Not charged to any step: the CEDE exit latency a Linux guest's cpuidle driver
    #: assumes (drivers/cpuidle/cpuidle-pseries.c: 10 us), the figure the modelled
    #: wake-up path (IPI or DEC -> nap exit -> kvm_end_cede -> vector) is checked against.
    cede_latency: int = _us(10)
    #: Saving NV GPRs and FP/VMX/VSX state before nap (illustrative).
    nap_save: int = _us(0.3)
    #: One host-side step under vc->lock (illustrative).
    host_step: int = _us(1)
    #: Host exit handling for the whole vcore after __kvmppc_vcore_entry (illustrative).
    host_exit_handling: int = _us(3)
    #: Host scheduler wake-up of a sleeping task (illustrative).
    host_wakeup: int = _us(20)
    #: hrtimer expiry to the tasklet running kvmppc_decrementer_func (illustrative).
    hrtimer_latency: int = _us(5)
    #: Round trip through userspace (QEMU) for an MMIO emulation (illustrative).
    mmio_emulation: int = _us(20)
    #: Host handling of an hcall in kvmppc_pseries_do_hcall (illustrative).
    hcall_in_host: int = _us(2)
    #: Draining one store from a store buffer (store-buffer memory mode; illustrative).
    store_drain: int = 10
    #: Period of the host's timer tick, which the host loads into HDEC at guest entry;
    #: HZ=100 as in the ppc64 defconfigs of the time (illustrative).
    host_tick: int = _us(10_000)
    #: Halt polling (change 0cda69dd), nanoseconds: the most a vcore polls; 0 disables
    #: polling.  The powerpc default KVM_HALT_POLL_NS_DEFAULT, 10 us (believed, not
    #: verified in the sources at hand).
    halt_poll_ns: int = 10_000
    #: Factor by which a vcore's window grows after a short block (kernel default 2).
    halt_poll_ns_grow: int = 2
    #: Nanoseconds a window grows to from 0 (generic kvm default 10000; 4.7 hard-coded
    #: the same 10 us).
    halt_poll_ns_grow_start: int = 10_000
    #: Divisor by which a window shrinks after a long block; 0 resets it to 0 (the
    #: kvm_hv default).
    halt_poll_ns_shrink: int = 0
    #: POWER9 path: one thread enters the guest alone (kvmhv_p9_guest_entry loads this
    #: vcpu's state and LPIDR/PIDR on its own thread; no whole-core partition switch, no
    #: waiting for other threads) (illustrative: a third of ``guest_entry``).
    p9_guest_entry: int = _us(0.5)
    #: POWER9 path: one thread leaves the guest alone (save this vcpu's state, restore
    #: the host's on this thread) (illustrative: a third of ``partition_switch``).
    p9_guest_exit: int = _us(0.5)

    def __post_init__(self) -> None:
        for f in fields(self):  # numpy integers (from a sweep grid) become plain ints
            v = getattr(self, f.name)
            if _is_int(v) and type(v) is not int:
                object.__setattr__(self, f.name, int(v))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming any cost that is not an integer number of timebase
        ticks from 0 to 2**62 (``host_tick`` from 1)."""
        for f in fields(self):
            v = getattr(self, f.name)
            lo = 1 if f.name == "host_tick" else 0
            if not _is_int(v) or not lo <= v <= MAX_COST_TICKS:
                raise ValueError(f"costs.{f.name}: got {show(v)}; allowed: a non-negative "
                                 f"integer number of timebase ticks from {lo} to 2**62")

    def replace(self, **changes: int) -> CostModel:
        """A copy with some costs changed (validated like a new CostModel)."""
        return replace(self, **changes)


@_known_fields
@dataclass(frozen=True, slots=True)
class Config:
    """One machine and one variant of the protocol.

    ``threads_per_core``: SMT mode of the core, 1, 2 or 4 (POWER7 SMT4 by default).
    ``vcpus``: vcpus of the single vcore, 1..threads_per_core.
    ``policy``: ``"realmode"`` (commit 19ccb76a: H_CEDE handled in real mode, nap) or
    ``"host"`` (before it: every H_CEDE exits the whole core to the host; the details of
    the pre-commit host handler are **inferred**, see :mod:`kvmcede.host`).
    ``cpu``: ``"POWER7"``, ``"PPC970"`` (no nap in the guest: kvmppc_h_cede always
    returns H_TOO_HARD; SMT1 only) or ``"POWER9"``: the P9 path of Linux 4.20+ (95a6432c,
    :mod:`kvmcede.p9`): each vcpu enters and leaves the guest alone on its own thread,
    H_CEDE is handled in the host right after the exit (``kvmppc_cede``).  It is a later
    kernel than every entry of :data:`CHANGES`, so both shipped bugs are fixed whatever
    ``changes`` says (:attr:`bugs` is empty), and ``changes`` does not act on it (halt
    polling, 0cda69dd, is the vcore runner's, which the P9 path has not); it takes policy ``"realmode"`` (the field's
    default: the policy choice is about the POWER7 protocol), memory ``"sc"`` and only
    the ablations of :data:`P9_ABLATIONS`.
    ``changes``: the later kernel changes switched on, by commit id (names from
    :data:`CHANGES`); none by default, i.e. **Linux 3.4 as shipped**, with the bugs that
    shipped (:data:`BUGS`).  :meth:`linux` builds the configuration of a later kernel
    version; :attr:`kernel` says in words which kernel a configuration runs, and
    :attr:`bugs` which shipped bugs it still has.
    ``ablations``: names from :data:`ABLATIONS` (teaching: one line of the protocol
    removed).
    ``memory``: ``"sc"`` (sequentially consistent) or ``"store_buffer"``.
    ``seed``: seed of random workloads built from this configuration.
    """

    threads_per_core: int = 4
    vcpus: int = 4
    policy: str = "realmode"
    cpu: str = "POWER7"
    changes: frozenset[str] = frozenset()
    ablations: frozenset[str] = frozenset()
    memory: str = "sc"
    costs: CostModel = field(default_factory=CostModel)
    timebase_hz: int = TIMEBASE_HZ
    seed: int = 0
    #: :attr:`bugs`, derived once (the model asks for it on every cede and prod).
    _bugs: frozenset[str] = field(init=False, repr=False, compare=False,
                                  default=frozenset())

    def __post_init__(self) -> None:
        # Accept any iterable of names for changes/ablations (lists from a widget or JSON).
        for name in ("changes", "ablations"):
            v = getattr(self, name)
            if isinstance(v, str | bytes):
                raise ValueError(f"{name}: got the string {v!r}; allowed: a collection of "
                                 f"names, e.g. {name}=[{v!r}]")
            if not isinstance(v, frozenset):
                try:
                    object.__setattr__(self, name, frozenset(v))
                except TypeError:
                    raise ValueError(f"{name}: got {show(v)}; allowed: a collection of "
                                     f"names") from None
        for name in ("threads_per_core", "vcpus", "timebase_hz", "seed"):
            v = getattr(self, name)  # numpy integers (a sweep grid) become plain ints
            if _is_int(v) and type(v) is not int:
                object.__setattr__(self, name, int(v))
        if (isinstance(self.costs, CostModel) and self.timebase_hz != TIMEBASE_HZ
                and _is_int(self.timebase_hz)
                and TIMEBASE_RANGE[0] <= self.timebase_hz <= TIMEBASE_RANGE[1]
                and self.costs == CostModel()):
            # The default costs are durations (microseconds) written in 512 MHz ticks:
            # at another timebase they are the same durations in its ticks, so guest
            # time stays right.  Costs given explicitly are taken as they are.
            object.__setattr__(self, "costs", _costs_at(self.timebase_hz))
        self.validate()
        object.__setattr__(self, "_bugs", frozenset() if self.cpu == "POWER9" else frozenset(
            b for b, (fix, _) in BUGS.items() if fix not in self.changes))

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field, the value and what is allowed
        (``field: got VALUE; allowed: ...``); a combination of fields that would have no
        effect names both fields."""
        tpc = self.threads_per_core
        if not _is_int(tpc) or tpc not in (1, 2, 4):
            raise ValueError(f"threads_per_core: got {show(tpc)}; allowed: the integer 1, 2 "
                             f"or 4")
        if not _is_int(self.vcpus) or not 1 <= self.vcpus <= tpc:
            raise ValueError(f"vcpus: got {show(self.vcpus)}; allowed: an integer from 1 to "
                             f"threads_per_core ({tpc}) (vcpus must be at most the threads "
                             f"of the core)")
        if not isinstance(self.policy, str) or self.policy not in POLICIES:
            raise ValueError(f"policy: got {show(self.policy)}; allowed: one of {POLICIES}")
        if not isinstance(self.cpu, str) or self.cpu not in CPUS:
            raise ValueError(f"cpu: got {show(self.cpu)}; allowed: one of {CPUS}")
        if self.cpu == "PPC970" and tpc != 1:
            raise ValueError(f"threads_per_core: got {tpc} with cpu 'PPC970'; allowed: 1 "
                             f"(no SMT in HV KVM on PPC970)")
        bad = sorted(map(repr, set(self.changes) - set(CHANGES)))
        if bad:
            raise ValueError(f"changes: got unknown change(s) {', '.join(bad)}; allowed "
                             f"(commit ids): {sorted(CHANGES)}")
        bad = sorted(map(repr, set(self.ablations) - set(ABLATIONS)))
        if bad:
            raise ValueError(f"ablations: got unknown name(s) {', '.join(bad)}; allowed: "
                             f"{sorted(ABLATIONS)}")
        if not isinstance(self.memory, str) or self.memory not in MEMORY_MODES:
            raise ValueError(f"memory: got {show(self.memory)}; allowed: one of {MEMORY_MODES}")
        if self.cpu == "POWER9":
            if self.policy != "realmode":
                raise ValueError(f"policy: got {show(self.policy)} with cpu 'POWER9'; allowed: "
                                 f"'realmode' (the default; the P9 path handles H_CEDE its "
                                 f"own way)")
            if self.memory != "sc":
                raise ValueError(f"memory: got {show(self.memory)} with cpu 'POWER9'; allowed: "
                                 f"'sc' (store buffers are modelled for the POWER7 protocol)")
            bad = sorted(set(self.ablations) - P9_ABLATIONS)
            if bad:
                raise ValueError(f"ablations: got {bad} with cpu 'POWER9'; allowed: "
                                 f"{sorted(P9_ABLATIONS)} (the others remove POWER7 "
                                 f"real-mode code, which the POWER9 path does not run)")
        if not isinstance(self.costs, CostModel):
            raise ValueError(f"costs: got {type(self.costs).__name__} {self.costs!r}; "
                             f"allowed: a CostModel")
        self.costs.validate()
        lo, hi = TIMEBASE_RANGE
        if not _is_int(self.timebase_hz) or not lo <= self.timebase_hz <= hi:
            raise ValueError(f"timebase_hz: got {show(self.timebase_hz)}; allowed: an integer "
                             f"number of Hz from {lo:,} to {hi:,} (POWER7: {TIMEBASE_HZ:,})")
        if not _is_int(self.seed):
            raise ValueError(f"seed: got {show(self.seed)}; allowed: an integer")
        # Combinations that would silently have no effect.
        if self.ablations and self.policy == "host":
            raise ValueError(f"ablations: got {sorted(self.ablations)} with policy 'host'; "
                             f"allowed: no ablation with policy 'host' (every ablation "
                             f"removes a line of the real-mode H_CEDE protocol, which "
                             f"policy 'host' does not run); use policy 'realmode'")
        if self.ablations and self.cpu == "PPC970":
            raise ValueError(f"ablations: got {sorted(self.ablations)} with cpu 'PPC970'; "
                             f"allowed: no ablation with cpu 'PPC970' (its kvmppc_h_cede "
                             f"always returns H_TOO_HARD: the real-mode protocol never runs)")
        if "no_cede_sync" in self.ablations and self.memory == "sc":
            raise ValueError("ablations: got 'no_cede_sync' with memory 'sc'; allowed: "
                             "'no_cede_sync' only with memory 'store_buffer' (a missing "
                             "sync changes nothing when memory is sequentially consistent)")

    def replace(self, **fields_: object) -> Config:
        """A copy with some fields changed (validated like a new Config)."""
        return replace(self, **fields_)

    @classmethod
    def linux(cls, version: str, **fields_: object) -> Config:
        """The configuration of Linux ``version``: every change of :data:`CHANGES` that
        went into that version or an earlier one is switched on (``Config.linux("3.4")``
        is the default configuration; ``Config.linux("4.10")`` has both bug fixes).
        Other fields as keyword arguments."""
        if not isinstance(version, str) or not all(p.isdigit() for p in version.split(".")):
            raise ValueError(f"version must be a kernel version such as '3.4' or '4.10', "
                             f"got {show(version)}")
        if _version(version) < _version(BASE_KERNEL):
            raise ValueError(f"version must be {BASE_KERNEL} or later (the model starts "
                             f"from Linux {BASE_KERNEL}), got {show(version)}")
        if "changes" in fields_:
            raise ValueError("changes: give either a kernel version or changes, not both")
        wanted = frozenset(c for c, (v, _, _) in CHANGES.items()
                           if _version(v) <= _version(version))
        return cls(changes=wanted, **fields_)

    @property
    def bugs(self) -> frozenset[str]:
        """The shipped bugs (:data:`BUGS`) this configuration still has: those whose fix
        is not in :attr:`changes`.  Always empty on ``cpu="POWER9"``: the P9 path (4.20)
        came after both fixes."""
        return self._bugs

    @property
    def kernel(self) -> str:
        """Which kernel this configuration runs, in words: ``"Linux 3.4 as shipped"`` or
        ``"Linux 3.4 + 04f995a5 (3.6)"``, or the POWER9 path's; recorded in every trace
        and metrics table."""
        if self.cpu == "POWER9":
            return (f"Linux 5.x POWER9 path ({P9_PATH[0]}, {P9_PATH[1]}; H_CEDE by "
                    "kvmppc_cede after the guest exit, as since 2021)")
        if not self.changes:
            return f"Linux {BASE_KERNEL} as shipped"
        added = sorted(self.changes, key=lambda c: (_version(CHANGES[c][0]), c))
        return f"Linux {BASE_KERNEL} + " + " + ".join(
            f"{c} ({CHANGES[c][0]})" for c in added)

    def ticks(self, us: float) -> int:
        """Microseconds to timebase ticks at this configuration's timebase."""
        return round(us * self.timebase_hz / 1_000_000)

    def us(self, ticks: int) -> float:
        """Timebase ticks to microseconds."""
        return ticks * 1_000_000 / self.timebase_hz

    def to_dict(self) -> dict:
        """A JSON-ready dict (sorted names) that :meth:`from_dict` reverses exactly."""
        return {
            "threads_per_core": self.threads_per_core, "vcpus": self.vcpus,
            "policy": self.policy, "cpu": self.cpu, "changes": sorted(self.changes),
            "ablations": sorted(self.ablations), "memory": self.memory,
            "costs": {f.name: getattr(self.costs, f.name) for f in fields(self.costs)
                      if f.name not in _P9_COSTS or self.cpu == "POWER9"
                      or getattr(self.costs, f.name) != f.default},
            "timebase_hz": self.timebase_hz, "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        """The configuration :meth:`to_dict` wrote (every key checked: an unknown key, a
        missing cost or a wrong type raises ValueError naming it)."""
        if not isinstance(d, dict):
            raise ValueError(f"config: got {type(d).__name__} {d!r:.80}; allowed: a dict "
                             f"as written by Config.to_dict()")
        d = dict(d)
        if "bugs" in d:
            raise ValueError("bugs: no longer a field; the bugs that shipped are on by "
                             "default and a fix is switched on by naming its commit in "
                             f"'changes' (allowed: {sorted(CHANGES)})")
        names = [f.name for f in fields(cls) if f.init]
        bad = sorted(map(repr, set(d) - set(names)))
        if bad:
            raise ValueError(f"config: got unknown key(s) {', '.join(bad)}; allowed: "
                             f"{names}")
        costs = d.get("costs", {})
        if not isinstance(costs, dict):
            raise ValueError(f"costs: got {type(costs).__name__} {costs!r:.80}; allowed: a "
                             f"dict of cost name -> ticks")
        cnames = [f.name for f in fields(CostModel)]
        bad = sorted(map(repr, set(costs) - set(cnames)))
        if bad:
            raise ValueError(f"costs: got unknown key(s) {', '.join(bad)}; allowed: "
                             f"{cnames}")
        d["costs"] = CostModel(**costs)
        return cls(**d)


def _costs_at(hz: int) -> CostModel:
    """The default costs (durations written in 512 MHz ticks) in ticks of ``hz``."""
    base = CostModel()
    scaled = {}
    for f in fields(base):
        v = getattr(base, f.name)
        if f.name.startswith("halt_poll"):
            scaled[f.name] = v  # module parameters in nanoseconds and factors, not ticks
            continue
        # A cost never rounds away to 0 (a free step would change which step runs first).
        scaled[f.name] = max(1, round(v * hz / TIMEBASE_HZ)) if v else 0
    return CostModel(**scaled)
