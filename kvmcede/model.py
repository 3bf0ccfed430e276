"""The step semantics: which steps are enabled in a state, and what a step does.

This is the one model both schedulers drive (DESIGN.md, "one model, two schedulers"):
:mod:`kvmcede.sim` runs the earliest enabled step by cost, :mod:`kvmcede.explore` tries
every enabled step.  A :class:`Model` binds a :class:`~kvmcede.config.Config` and a
:class:`~kvmcede.guest.Workload`; ``initial()`` gives the first state, ``enabled(s)``
the steps, ``apply(s, step)`` the next state and the events the step emitted.
"""

from __future__ import annotations

from .config import Config
from .edit import PRODDER, Edit, Step
from .guest import GUEST_STEPS, Workload
from .host import TASK_STEPS, task_step
from .interrupts import WORLD_STEPS, drain, kvmppc_decrementer_func, remote_prod_mb, timer_fires
from .interrupts import world_steps as _world_steps
from .realmode import THREAD_STEPS, kvmppc_interrupt, thread_step
from .state import Machine, Task, Thread, Vcore, Vcpu
from .trace import Event

__all__ = ["Model", "Step"]


class Model:
    """The machine's step semantics for one configuration and workload.

    >>> from kvmcede import Config, Model, Workload, Busy
    >>> m = Model(Config(vcpus=1, threads_per_core=1), Workload(((Busy(5.0),),)))
    >>> s = m.initial()
    >>> [st.name for st in m.enabled(s)]
    ['KVM_RUN']
    """

    def __init__(self, config: Config, workload: Workload) -> None:
        config.validate()
        workload.check(config)
        self.config = config
        self.workload = workload
        self._tb = config.timebase_hz

    def ticks(self, us: float) -> int:
        """Microseconds to timebase ticks."""
        return round(us * self._tb / 1_000_000)

    def initial(self, budget: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)) -> Machine:
        """All vcpus STOPPED, their tasks in userspace about to call KVM_RUN; thread 0 in
        the host, the other threads offline in nap."""
        cfg = self.config
        threads = (Thread("host"),) + tuple(
            Thread("secondary_nap", pece=1) for _ in range(cfg.threads_per_core - 1))
        vcpus = tuple(Vcpu() for _ in range(cfg.vcpus))
        tasks = tuple(Task() for _ in range(cfg.vcpus))
        return Machine(threads, Vcore(), vcpus, tasks, budget=budget)

    def enabled(self, s: Machine, environment: bool = True) -> list[Step]:
        """Steps that can run in ``s``, in a fixed order (threads, tasks, timers,
        remote prodder, store drains, then, if ``environment``, the environment's events
        allowed by ``s.budget``)."""
        out: list[Step] = []
        for i in range(len(s.threads)):
            name = thread_step(s, i, self)
            if name is not None:
                out.append(Step("thread", i, name))
        for v in range(len(s.tasks)):
            name = task_step(s, v, self)
            if name is not None:
                out.append(Step("task", v, name))
        for v in range(len(s.vcpus)):
            if timer_fires(s, v):
                out.append(Step("timer", v, "kvmppc_decrementer_func"))
        if s.prodder[0]:
            if not any(st.writer == PRODDER for st in s.stores):  # smp_mb
                out.append(Step("prodder", s.prodder[1], "H_PROD: smp_mb; test ceded"))
        if s.stores:
            seen = []
            for st in s.stores:
                if st.writer not in seen:
                    seen.append(st.writer)
                    out.append(Step("drain", st.writer, "store visible"))
        if environment:
            for name, v in _world_steps(s):
                out.append(Step("world", v, name))
        return out

    def apply(self, s: Machine, step: Step, now: int = 0) -> tuple[Machine, list[Event]]:
        """Perform ``step`` in state ``s`` at time ``now`` (ticks; 0 in the explorer).

        Returns the new state and the events the step emitted.  ``step`` must be one of
        ``enabled(s)`` (or a world step the simulator schedules)."""
        e = Edit(self, s, now)
        actor, i, name = step
        if actor == "thread":
            loc = s.threads[i].loc
            if loc == "guest":
                fn = kvmppc_interrupt if name == "kvmppc_interrupt" else GUEST_STEPS[name]
            else:
                fn = THREAD_STEPS[loc]
        elif actor == "task":
            fn = TASK_STEPS[s.tasks[i].loc]
        elif actor == "timer":
            fn = kvmppc_decrementer_func
        elif actor == "prodder":
            fn = remote_prod_mb
        elif actor == "drain":
            fn = drain
        elif actor == "world":
            fn, b = WORLD_STEPS[name]
            if s.budget[b] > 0:
                e.spend(b)
        else:
            raise ValueError(f"step.actor must be thread, task, timer, prodder, drain or "
                             f"world, got {actor!r}")
        fn(e, i)
        return e.freeze(), e.events
