"""kvmcede: an executable model of KVM on POWER7 ceding a hardware thread in real mode.

Linux commit 19ccb76a1938 ("KVM: PPC: Implement H_CEDE for book3s_hv in real-mode
code", 2011) lets an idle guest vcpu nap in the guest partition instead of pulling the
whole SMT4 core out of the guest.  This package models that protocol step by step and
drives the one model with two schedulers: a timed simulator (:func:`simulate`) and an
interleaving explorer (:func:`explore`), called alike::

    trace = kvmcede.simulate(config, workload, until=500.0)   # -> Trace
    result = kvmcede.explore(config, workload)                # -> ExploreResult

``kvmcede.explore`` is the function; the module that holds the explorer (its setups,
property tables and command line) is :mod:`kvmcede.explorer`.
"""

from .config import ABLATIONS, BASE_KERNEL, BUGS, CHANGES, TIMEBASE_HZ, Config, CostModel
from .explorer import LIVENESS, PROPERTIES, SETUPS, ExploreResult, Violation, explore, setup
from .guest import (
    Busy,
    Confer,
    Idle,
    Interrupt,
    Mmio,
    Prod,
    RemoteProd,
    Signal,
    Workload,
    random_workload,
)
from .invariants import INVARIANTS, check_state, check_step
from .model import Model, Step
from .sim import InvariantViolation, simulate, thread_activity, vcpu_activity
from .state import Machine
from .sweep import SerialExecutor, SweepError, SweepResult, sweep
from .trace import Event, Metrics, Trace

__version__ = "0.1.0"

__all__ = [
    "ABLATIONS",
    "BASE_KERNEL",
    "BUGS",
    "CHANGES",
    "INVARIANTS",
    "LIVENESS",
    "PROPERTIES",
    "SETUPS",
    "TIMEBASE_HZ",
    "Busy",
    "Confer",
    "Config",
    "CostModel",
    "Event",
    "Idle",
    "Interrupt",
    "ExploreResult",
    "InvariantViolation",
    "Machine",
    "Metrics",
    "Mmio",
    "Model",
    "Prod",
    "SerialExecutor",
    "RemoteProd",
    "Signal",
    "Step",
    "SweepError",
    "SweepResult",
    "Trace",
    "Violation",
    "Workload",
    "check_state",
    "check_step",
    "explore",
    "random_workload",
    "setup",
    "simulate",
    "sweep",
    "thread_activity",
    "vcpu_activity",
]
