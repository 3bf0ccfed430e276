"""The step semantics: which steps are enabled in a state, and what a step does.

This is the one model both schedulers drive (DESIGN.md, "one model, two schedulers"):
:mod:`kvmcede.sim` runs the earliest enabled step by cost, :mod:`kvmcede.explorer` tries
every enabled step.  A :class:`Model` binds a :class:`~kvmcede.config.Config` and a
:class:`~kvmcede.guest.Workload`; ``initial()`` gives the first state, ``enabled(s)``
the steps, ``apply(s, step)`` the next state and the events the step emitted.

``Config(cpu="POWER9")`` selects the POWER9 path (:mod:`kvmcede.p9`): the same actors,
state and guest programs, with the threads' and tasks' steps (and the reactions of the
interrupt sources that kick a vcpu) taken from that module.
"""

from __future__ import annotations

from . import p9
from .config import Config
from .edit import PRODDER, Edit, Step
from .guest import GUEST_STEPS, Workload
from .host import TASK_READS_SHARED, TASK_STEPS, task_step
from .interrupts import WORLD_STEPS, drain, kvmppc_decrementer_func, remote_prod_mb
from .interrupts import world_steps as _world_steps
from .realmode import THREAD_READS_SHARED, THREAD_STEPS, kvmppc_interrupt, thread_step
from .state import DEC_NEGATIVE, Machine, Task, Thread, Vcore, Vcpu
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
        if not isinstance(config, Config):
            raise ValueError(f"config must be a Config, got {type(config).__name__}")
        if not isinstance(workload, Workload):
            raise ValueError(f"workload must be a Workload, got {type(workload).__name__}")
        config.validate()
        workload.check(config)
        self.config = config
        self.workload = workload
        self._tb = config.timebase_hz
        n = config.threads_per_core
        self._tcache: list[tuple] = [(None,) * 5] * n
        self._kcache: list[tuple] = [(None,) * 5] * config.vcpus
        self._tsteps = [_StepTable("thread", i) for i in range(n)]
        self._ksteps = [_StepTable("task", v) for v in range(config.vcpus)]
        self._timer_steps = [Step("timer", v, "kvmppc_decrementer_func")
                             for v in range(config.vcpus)]
        # Which semantics the actors follow: the POWER7/PPC970 vcore protocol, or the
        # POWER9 path (kvmcede.p9).
        self._p9 = p9_path = config.cpu == "POWER9"
        self._thread_step = p9.thread_step if p9_path else thread_step
        self._thread_shared = frozenset() if p9_path else THREAD_READS_SHARED
        self._task_step = p9.task_step if p9_path else task_step
        self._task_shared = p9.TASK_READS_SHARED if p9_path else TASK_READS_SHARED
        self._task_steps = p9.TASK_STEPS if p9_path else TASK_STEPS
        self._timer_fn = kvmppc_decrementer_func
        self._prodder_fn = remote_prod_mb
        self._world = {**WORLD_STEPS, **{n: (f, WORLD_STEPS[n][1])
                                         for n, f in p9.WORLD_STEPS.items()}
                       } if p9_path else WORLD_STEPS

    def ticks(self, us: float) -> int:
        """Microseconds to timebase ticks."""
        return round(us * self._tb / 1_000_000)

    def initial(self, budget: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)) -> Machine:
        """All vcpus STOPPED, their tasks in userspace about to call KVM_RUN; thread 0 in
        the host, the other threads offline in nap (POWER9: thread ``v`` runs vcpu ``v``'s
        task, the others idle)."""
        cfg = self.config
        if self._p9:
            threads = p9.initial_threads(cfg.threads_per_core, cfg.vcpus)
        else:
            threads = (Thread("host"),) + tuple(
                Thread("secondary_nap", pece=1) for _ in range(cfg.threads_per_core - 1))
        vcpus = tuple(Vcpu() for _ in range(cfg.vcpus))
        tasks = tuple(Task() for _ in range(cfg.vcpus))
        return Machine(threads, Vcore(), vcpus, tasks, budget=budget)

    def enabled(self, s: Machine, environment: bool = True) -> list[Step]:
        """Steps that can run in ``s``, in a fixed order (threads, tasks, timers,
        remote prodder, store drains, then, if ``environment``, the environment's events
        allowed by ``s.budget``)."""
        return self.thread_steps(s) + self.other_steps(s, environment)

    def thread_steps(self, s: Machine) -> list[Step]:
        """The hardware threads' steps of :meth:`enabled` (its first part)."""
        out: list[Step] = []
        vc = s.vcore
        vcpus = s.vcpus
        stores = s.stores
        # Each actor's step depends only on a few parts of the state: its own, its vcpu's
        # and, at the locations in THREAD_READS_SHARED / TASK_READS_SHARED, the vcore and
        # the store buffers / thread 0.  Successive states share unchanged parts, so an
        # identity check of those parts against the last state seen (None: not read) lets
        # most actors skip recomputing their guard.
        cache = self._tcache
        thread_step_ = self._thread_step
        shared_locs = self._thread_shared
        for i, t in enumerate(s.threads):
            v = t.vcpu
            vo = vcpus[v] if v >= 0 else None
            c = cache[i]
            if c[0] is t and c[2] is vo and (c[1] is None or (c[1] is vc and c[3] is stores)):
                st = c[4]
            else:
                name = thread_step_(s, i, self)
                st = None if name is None else self._tsteps[i][name]
                shared = t.loc in shared_locs
                cache[i] = (t, vc if shared else None, vo, stores if shared else None, st)
            if st is not None:
                out.append(st)
        return out

    def other_steps(self, s: Machine, environment: bool = True) -> list[Step]:
        """The rest of :meth:`enabled`: tasks, timers, remote prodder, store drains and,
        if ``environment``, the environment's events."""
        out: list[Step] = []
        vc = s.vcore
        vcpus = s.vcpus
        stores = s.stores
        cache = self._kcache
        # The shared part a task's guard may read: thread 0 (the vcore's primary) or, on
        # the POWER9 path, its own thread (any change to the threads re-tests it).
        t0 = s.threads if self._p9 else s.threads[0]
        task_step_ = self._task_step
        shared_locs = self._task_shared
        for v, k in enumerate(s.tasks):
            vo = vcpus[v]
            c = cache[v]
            if c[0] is k and c[2] is vo and (c[1] is None or (c[1] is vc and c[3] is t0)):
                st = c[4]
            else:
                name = task_step_(s, v, self)
                st = None if name is None else self._ksteps[v][name]
                shared = k.loc in shared_locs
                cache[v] = (k, vc if shared else None, vo, t0 if shared else None, st)
            if st is not None:
                out.append(st)
        for v, u in enumerate(vcpus):
            if u.timer_running and u.dec == DEC_NEGATIVE:
                out.append(self._timer_steps[v])
        if s.prodder[0] and not any(st.writer == PRODDER for st in stores):  # smp_mb
            out.append(Step("prodder", s.prodder[1], "H_PROD: smp_mb; test ceded"))
        if stores:
            seen = []
            for st in stores:
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
            if self._p9:
                fn = p9.thread_function(loc, name)
            elif loc == "guest":
                fn = kvmppc_interrupt if name == "kvmppc_interrupt" else GUEST_STEPS[name]
            else:
                fn = THREAD_STEPS[loc]
        elif actor == "task":
            fn = self._task_steps[s.tasks[i].loc]
        elif actor == "timer":
            fn = self._timer_fn
        elif actor == "prodder":
            fn = self._prodder_fn
        elif actor == "drain":
            fn = drain
        elif actor == "world":
            fn, b = self._world[name]
            if s.budget[b] > 0:
                e.spend(b)
        else:
            raise ValueError(f"step.actor must be thread, task, timer, prodder, drain or "
                             f"world, got {actor!r}")
        fn(e, i)
        return e.freeze(), e.events


class _StepTable(dict):
    """The steps of one actor by name, each :class:`Step` made once, on first use: a lookup
    is cheaper than building a new one, and the simulator's dicts keyed by steps then hit
    on identity."""

    __slots__ = ("actor", "index")

    def __init__(self, actor: str, index: int) -> None:
        super().__init__()
        self.actor = actor
        self.index = index

    def __missing__(self, name: str) -> Step:
        st = self[name] = Step(self.actor, self.index, name)
        return st
