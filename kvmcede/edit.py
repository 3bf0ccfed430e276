"""Steps, and the scratch copy of a state that one step edits.

A :class:`Step` names one atomic action of one actor at the grain of the kernel code.
:class:`Edit` is the mutable working copy that a step function changes; ``freeze()``
turns it back into an immutable :class:`~kvmcede.state.Machine`.  Keeping all mutation
inside one ``Edit`` is what lets the step functions read like the kernel code they model
while the states stay immutable and hashable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from .state import Machine, Store, Task, Thread, Vcore, Vcpu
from .trace import Event

if TYPE_CHECKING:
    from .model import Model

__all__ = ["PRODDER", "Edit", "Step"]

#: Writer id of the remote H_PROD actor in store buffers.
PRODDER = 99


class Step(NamedTuple):
    """One atomic step: ``actor`` kind ("thread", "task", "timer", "world", "prodder",
    "drain"), the actor's index (thread, vcpu or writer id) and the step's kernel name."""

    actor: str
    index: int
    name: str

    def label(self) -> str:
        """Human-readable: ``thread 2: kvmppc_h_cede``."""
        return f"{self.actor} {self.index}: {self.name}"


class Edit:
    """Mutable working copy of a :class:`Machine` for the duration of one step."""

    __slots__ = ("budget", "events", "m", "now", "prodder", "stores", "tasks", "threads",
                 "vcore", "vcpus")

    def __init__(self, m: Model, s: Machine, now: int) -> None:
        self.m = m
        self.now = now
        # Copy on write: a part stays the old state's tuple until the step writes to it,
        # so the new state shares every part the step did not touch.
        self.threads: tuple[Thread, ...] | list[Thread] = s.threads
        self.vcore: Vcore = s.vcore
        self.vcpus: tuple[Vcpu, ...] | list[Vcpu] = s.vcpus
        self.tasks: tuple[Task, ...] | list[Task] = s.tasks
        self.stores: tuple[Store, ...] = s.stores
        self.prodder = s.prodder
        self.budget = s.budget
        self.events: list[Event] = []

    # ---- edits -------------------------------------------------------------------------
    # (``_with`` does what NamedTuple._replace does, about twice as fast: the simulator
    # calls it a few times per step.  A part still the old state's tuple is copied to a
    # list on its first write, inline: a helper call would cost more than the test.)
    def thread(self, i: int, **kw: object) -> None:
        threads = self.threads
        if threads.__class__ is tuple:
            threads = self.threads = list(threads)
        threads[i] = _with(threads[i], kw, _THREAD)

    def vcpu(self, v: int, **kw: object) -> None:
        vcpus = self.vcpus
        if vcpus.__class__ is tuple:
            vcpus = self.vcpus = list(vcpus)
        vcpus[v] = _with(vcpus[v], kw, _VCPU)

    def task(self, v: int, **kw: object) -> None:
        tasks = self.tasks
        if tasks.__class__ is tuple:
            tasks = self.tasks = list(tasks)
        tasks[v] = _with(tasks[v], kw, _TASK)

    def vc(self, **kw: object) -> None:
        self.vcore = _with(self.vcore, kw, _VCORE)

    def event(self, kind: str, thread: int = -1, vcpu: int = -1, detail: str = "",
              arg: int = -1) -> None:
        self.events.append(_new(Event, (self.now, thread, vcpu, kind, detail, arg)))

    def spend(self, which: int) -> None:
        """Use one unit of environment budget ``which`` (explorer only)."""
        b = list(self.budget)
        b[which] -= 1
        self.budget = tuple(b)

    # ---- memory with optional store buffers (memory mode "store_buffer") ---------------
    def store(self, writer: int, field: str, v: int, value: int, buffered: bool,
              always: bool = False) -> None:
        """Store ``value`` to ``vcpu[v].field`` (``v`` >= 0) or to the vcore's ``field``
        (``v`` == -1).

        The memory model (memory mode ``"store_buffer"``).  Each hardware thread (and the
        remote prodder) has a FIFO of plain stores not yet visible to the others; a
        ``drain`` step (:func:`kvmcede.interrupts.drain`) makes the oldest one visible.
        A thread's loads see its own newest buffered store to the location (forwarding),
        else memory; loads are performed in program order.  The barriers, after the
        Power ISA 2.06 Book II §1.7.3 (atomic update: ``lwarx``/``stwcx.``) and §4.4.3
        (memory barrier instructions):

        * ``sync`` (and the ``ptesync`` of the nap sequence) waits until all of the
          thread's earlier stores are visible: the step after it is enabled only when
          the thread's buffer is empty;
        * ``lwsync`` orders load/load, load/store and store/store, but *not* a store
          before a later load.  A FIFO buffer and in-order loads already keep the first
          three, so ``lwsync`` is no step at all here;
        * ``lwarx``/``stwcx.`` on ``napping_threads`` or ``entry_exit_count`` is an
          atomic update of the coherent location: it reads the newest value in
          coherence order and its store comes right after that value.  Modelled as: the
          update is enabled only when no *other* thread has a store to that location in
          its buffer (until then the ``stwcx.`` fails and the loop retries), it reads the
          location as the thread sees it (then the coherent value), and its new value
          goes into the thread's buffer like a plain store.  So a *plain* store earlier
          in program order may still be buffered before it (FIFO: it stays ahead), and a
          later load may be satisfied before the ``stwcx.`` is visible to the other
          threads: the ISA gives ``stwcx.`` no store/load ordering of its own.

        ``buffered``: this store is one the kernel makes without a ``sync`` right after
        it; it is buffered only in memory mode ``"store_buffer"``, or whatever the mode
        with ``always`` (an ablation that removes a barrier), or when the writer has older
        stores still buffered (FIFO).  Other stores act on memory at once.

        The model is stronger than POWER in two ways, so a protocol it passes may still
        fail on POWER, while each counterexample it finds is a POWER execution: a store
        becomes visible to all other threads at once (POWER is not multi-copy atomic),
        and loads are never reordered (the protocol has ``lwsync`` or an address or
        control dependency with ``isync`` where that would matter).
        """
        stores = self.stores
        if (always or (buffered and self.m.config.memory == "store_buffer")
                or (stores and any(st.writer == writer for st in stores))):
            self.stores = (*stores, Store(writer, field, v, value))
        elif v < 0:
            self.vc(**{field: value})
        else:
            self.vcpu(v, **{field: value})

    def load(self, reader: int, field: str, v: int) -> int:
        """Load ``vcpu[v].field`` (``v`` == -1: the vcore's ``field``) as ``reader`` sees
        it: its own newest buffered store to that location if any (store forwarding),
        else memory."""
        for st in reversed(self.stores):
            if st.writer == reader and st.field == field and st.vcpu == v:
                return st.value
        return getattr(self.vcore if v < 0 else self.vcpus[v], field)

    def visible(self, st: Store) -> None:
        """Write buffered store ``st`` to memory."""
        if st.vcpu < 0:
            self.vc(**{st.field: st.value})
        else:
            self.vcpu(st.vcpu, **{st.field: st.value})

    def drain_all(self, writer: int) -> None:
        """Make all of ``writer``'s buffered stores visible, oldest first (what ``sync``
        or a lock does before the writer goes on)."""
        if not self.stores:  # always so under sequential consistency
            return
        keep = []
        for st in self.stores:
            if st.writer == writer:
                self.visible(st)
            else:
                keep.append(st)
        self.stores = tuple(keep)

    def freeze(self) -> Machine:
        """The new immutable state (unchanged parts are shared with the old one: ``tuple``
        of a tuple is that tuple)."""
        return _new(Machine, (tuple(self.threads), self.vcore, tuple(self.vcpus),
                              tuple(self.tasks), self.stores, self.prodder, self.budget))


def _index(cls: type) -> dict[str, int]:
    return {f: k for k, f in enumerate(cls._fields)}


_THREAD, _VCPU, _TASK, _VCORE = (_index(c) for c in (Thread, Vcpu, Task, Vcore))

#: ``tuple.__new__(cls, values)`` builds a NamedTuple from its field values without the
#: Python-level ``cls.__new__`` that ``cls(...)`` goes through (half the cost).
_new = tuple.__new__


def _with(obj: tuple, changes: dict[str, object], index: dict[str, int]):
    """A copy of NamedTuple ``obj`` with ``changes`` applied (unknown fields: KeyError)."""
    values = [*obj]  # (cheaper than list(obj) for a tuple subclass)
    for k, v in changes.items():
        values[index[k]] = v
    return _new(obj.__class__, values)
