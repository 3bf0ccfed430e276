"""Events, traces and metrics; JSON and Perfetto (Chrome trace-event) export.

A :class:`Trace` is what both schedulers return: the simulator's run, or the explorer's
shortest counterexample.  It keeps the configuration, the workload and the exact list
of steps taken, so any intermediate machine state can be rebuilt by replaying the steps
(:meth:`Trace.state_at`, :meth:`Trace.states`) — the basis of step-through players.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .config import Config
    from .edit import Step
    from .guest import Workload
    from .state import Machine

__all__ = ["IDLENESS_REASONS", "Event", "Metrics", "MetricsAccumulator", "Trace"]

FORMAT = "kvmcede-trace"
VERSION = 1


class Event(NamedTuple):
    """One thing that happened: at ``time`` (timebase ticks in a simulation, step index in
    an explorer counterexample), on hardware ``thread`` (-1: host side / outside), for
    ``vcpu`` (-1: none); ``kind`` is the kernel function or label, ``detail`` says what
    happened in words and ``arg`` carries a number (a target thread, a trap, a vector)."""

    time: int
    thread: int
    vcpu: int
    kind: str
    detail: str = ""
    arg: int = -1


#: Whole-core exit reasons that are caused by a vcpu being idle: its H_CEDE taking the
#: core out, or the wake-up of a vcpu ceded in the host (its DEC hrtimer kicking thread 0).
IDLENESS_REASONS = ("H_CEDE", "external (decrementer kick)")

VCPU_ACTIVITIES = ("guest", "nap", "ceded", "out", "userspace", "stopped")


@dataclass(frozen=True)
class Metrics:
    """What a trace measured.  Times are in microseconds.

    * ``whole_core_exits`` / ``exits_by_reason``: times the core left the guest, by the
      first exiter's reason ("H_CEDE", "H_PROD", "MMIO", "HDEC", "external (... kick)").
    * ``ipis_to_nappers``: IPIs the first exiter sent to napping threads;
      ``host_ipis``: reschedule IPIs the host sent to thread 0 to kick a vcpu.
    * ``naps``: naps in H_CEDE; ``vcore_sleeps``: times the runner slept on ``vc->wq``;
      ``host_wakeups``: wake-ups of a sleeping vcore.
    * ``time_split``: per vcpu, time running guest code ("guest"), napping in the guest
      partition ("nap"), ceded out of the guest ("ceded"), out of the guest although it
      had work ("out"), in the host for its own exit — MMIO emulation, an hcall the host
      handles, a signal ("userspace") — and before its first KVM_RUN ("stopped").
    * ``latency``: interrupt delivery latency (raised -> executing at its vector), per
      kind: count, mean, median, max; ``undelivered``: raised but not delivered by the
      end of the trace.
    * ``lost_guest_us`` (the commit's headline inefficiency): time vcpus with work spent
      out of the guest in whole-core exits caused by *another* vcpu's idleness
      (:data:`IDLENESS_REASONS`); ``lost_by_reason``: the same for every reason.
    * ``vcpu_exits`` / ``vcpu_exits_by_reason`` (POWER9 path): exits that took one vcpu's
      thread, and only it, out of the guest.  They are never whole-core exits, so on
      POWER9 ``whole_core_exits`` and the lost guest time stay 0: no vcpu is pulled out
      by another's exit.  ``host_ipis`` there counts the kicks' IPIs to a vcpu's thread.
    """

    duration_us: float
    whole_core_exits: int
    exits_by_reason: dict[str, int]
    ipis_to_nappers: int
    host_ipis: int
    naps: int
    vcore_sleeps: int
    host_wakeups: int
    time_split: dict[int, dict[str, float]]
    latency: dict[str, dict[str, float]]
    undelivered: int
    lost_guest_us: float
    lost_by_reason: dict[str, float]
    lost_by_vcpu: dict[int, float] = field(default_factory=dict)
    #: Which kernel and policy produced the trace (``Config.kernel``, policy, cpu).
    kernel: str = ""
    #: Halt polling (change 0cda69dd): polls of the vcore runner that saw a wake inside
    #: the window, polls whose window ran out (the runner then slept), and host time
    #: spent polling (microseconds).  All 0 without the change.
    polls_succeeded: int = 0
    polls_failed: int = 0
    poll_us: float = 0.0
    vcpu_exits: int = 0
    vcpu_exits_by_reason: dict[str, int] = field(default_factory=dict)
    #: Model steps the run took.
    steps: int = 0

    def summary(self) -> dict[str, float]:
        """The headline numbers as one flat dict (what sweeps put in a table row)."""
        n = max(1, len(self.time_split))
        dur = self.duration_us or 1.0
        out = {
            "whole_core_exits": self.whole_core_exits,
            "cede_exits": self.exits_by_reason.get("H_CEDE", 0),
            "ipis_to_nappers": self.ipis_to_nappers,
            "host_ipis": self.host_ipis,
            "naps": self.naps,
            "vcore_sleeps": self.vcore_sleeps,
            "host_wakeups": self.host_wakeups,
            "lost_guest_us": round(self.lost_guest_us, 3),
            "lost_guest_fraction": round(self.lost_guest_us / (dur * n), 6),
        }
        for act in ("guest", "nap", "ceded", "out", "userspace"):
            tot = sum(d.get(act, 0.0) for d in self.time_split.values())
            out[f"{act}_fraction"] = round(tot / (dur * n), 6)
        lat = [v for v in self.latency.values() if v["count"]]
        cnt = sum(v["count"] for v in lat)
        out["latency_mean_us"] = round(sum(v["mean"] * v["count"] for v in lat) / cnt, 3) \
            if cnt else 0.0
        out["latency_max_us"] = round(max((v["max"] for v in lat), default=0.0), 3)
        out["vcpu_exits"] = self.vcpu_exits
        return out

    def table(self) -> str:
        """A plain-text table of the metrics (what the CLI prints)."""
        rows = [("kernel", self.kernel)] if self.kernel else []
        rows += [("duration", f"{self.duration_us:,.1f} us"),
                ("whole-core exits", str(self.whole_core_exits))]
        for r, c in sorted(self.exits_by_reason.items()):
            rows.append((f"  exits: {r}", str(c)))
        if self.vcpu_exits:
            rows.append(("per-vcpu exits (POWER9)", str(self.vcpu_exits)))
            for r, c in sorted(self.vcpu_exits_by_reason.items()):
                rows.append((f"  vcpu exits: {r}", str(c)))
        rows += [("IPIs to napping threads", str(self.ipis_to_nappers)),
                 ("host IPIs to thread 0 (kicks)", str(self.host_ipis)),
                 ("naps in H_CEDE", str(self.naps)),
                 ("vcore sleeps", str(self.vcore_sleeps)),
                 ("host wake-ups", str(self.host_wakeups))]
        if self.polls_succeeded or self.polls_failed:
            rows.append(("halt polls (ok / failed)", f"{self.polls_succeeded} / "
                         f"{self.polls_failed}, {self.poll_us:,.1f} us polling"))
        rows.append(("guest time lost to idleness", f"{self.lost_guest_us:,.1f} us"))
        for kind, d in sorted(self.latency.items()):
            if d["count"]:
                rows.append((f"latency {kind}", f"n={d['count']:.0f} mean {d['mean']:.1f} "
                             f"us, median {d['median']:.1f} us, max {d['max']:.1f} us"))
        if self.undelivered:
            rows.append(("interrupts not yet delivered", str(self.undelivered)))
        for v, d in sorted(self.time_split.items()):
            rows.append((f"vcpu {v} time", ", ".join(
                f"{a} {d.get(a, 0.0):,.1f}" for a in VCPU_ACTIVITIES if d.get(a))))
        w = max(len(a) for a, _ in rows)
        return "\n".join(f"{a:<{w}}  {b}" for a, b in rows)


class MetricsAccumulator:
    """Metrics computed from events fed in time order, a batch at a time: the one piece
    of code behind both :attr:`Trace.metrics` (all of a stored trace's events at once)
    and ``simulate(..., record="metrics")`` (each step's events as the run goes, none
    kept).  Its memory does not grow with the number of events, only with the
    interrupts raised and not yet delivered.

    >>> from kvmcede import Config, Workload, Busy, Idle, simulate
    >>> cfg, wl = Config(), Workload(((Busy(50),), (Idle(20),), (), ()))
    >>> tr = simulate(cfg, wl, until=100)
    >>> acc = MetricsAccumulator(cfg)
    >>> acc.add(tr.events)
    >>> acc.finish(tr.end, len(tr.steps)) == tr.metrics
    True
    """

    __slots__ = ("_act", "_cause", "_config", "_exits", "_explore", "_host_ipis",
                 "_ipis_napper", "_kicked", "_last_kick", "_last_t", "_lat", "_lost", "_naps",
                 "_poll_ticks", "_polls", "_raised", "_sleeps", "_split", "_vcpu_exits",
                 "_wakeups")

    def __init__(self, config: Config, *, explore: bool = False) -> None:
        n = config.vcpus
        self._config = config
        self._explore = explore  # explorer traces: times are step numbers (1 us each)
        self._exits: dict[str, int] = {}
        self._vcpu_exits: dict[str, int] = {}
        self._polls = {"succeeded": 0, "failed": 0}
        self._poll_ticks = 0
        self._ipis_napper = self._host_ipis = self._naps = 0
        self._sleeps = self._wakeups = 0
        self._split = {v: dict.fromkeys(VCPU_ACTIVITIES, 0) for v in range(n)}
        self._act = ["stopped"] * n
        self._last_t = 0
        self._cause: tuple[str, int] | None = None  # reason and vcpu of the current exit
        self._last_kick = ""
        # the vcpu whose kick IPI'd thread 0: it, not thread 0's vcpu, caused the exit
        self._kicked = -1
        self._lost: dict[int, dict[str, int]] = {v: {} for v in range(n)}
        self._raised: dict[tuple[int, int], list[int]] = {}
        # Latencies as {ticks: count}: the costs are fixed, so few distinct values occur
        # and the memory stays flat however long the run (mean and median stay exact).
        self._lat: dict[str, dict[int, int]] = {"external": {}, "decrementer": {}}

    def _advance(self, t: int) -> None:
        """Integrate every vcpu's activity (and the lost time) up to ``t``."""
        dt = t - self._last_t
        if dt <= 0:
            return
        cause = self._cause
        split, lost = self._split, self._lost
        for v, a in enumerate(self._act):
            split[v][a] += dt
            if a == "out" and cause is not None and cause[1] != v:
                d = lost[v]
                d[cause[0]] = d.get(cause[0], 0) + dt
        self._last_t = t

    def add(self, events: Iterable[Event]) -> None:
        """Feed ``events`` (in time order, after every event fed before)."""
        # Time is integrated only where a vcpu's activity or the exit cause changes:
        # between two such events every sum grows linearly (integer ticks, so the result
        # is the same).
        advance = self._advance
        act = self._act
        exits = self._exits
        raised = self._raised
        lat = self._lat
        for ev in events:
            k = ev.kind
            if k == "thread_state":
                continue
            if k == "vcpu_state":
                advance(ev.time)
                act[ev.vcpu] = ev.detail
            elif k == "exit":
                advance(ev.time)
                reason = ev.detail
                if reason == "external" and self._last_kick:
                    reason = f"external ({self._last_kick} kick)"
                exits[reason] = exits.get(reason, 0) + 1
                self._cause = (reason, self._kicked if reason != ev.detail else ev.vcpu)
            elif k == "vcpu_exit":
                vex = self._vcpu_exits
                vex[ev.detail] = vex.get(ev.detail, 0) + 1
            elif k == "kvmppc_hv_entry" and ev.thread == 0:
                advance(ev.time)
                self._cause = None
            elif k == "ipi":
                if ev.thread >= 0:
                    self._ipis_napper += 1
                elif ev.detail.startswith(("host reschedule", "host IPI")):
                    self._host_ipis += 1
                    self._last_kick = ev.detail.rsplit("(", 1)[-1].rstrip(")")
                    self._kicked = ev.vcpu
            elif k == "switch_to_host":
                self._last_kick = ""
            elif k == "nap":
                self._naps += 1
            elif k == "vcore_sleep":
                self._sleeps += 1
            elif k == "host_wakeup":
                self._wakeups += 1
            elif k == "halt_poll":
                self._polls[ev.detail] += 1
                self._poll_ticks += ev.arg
            elif k == "raise":
                raised.setdefault((ev.vcpu, ev.arg), []).append(ev.time)
            elif k == "deliver":
                pend = raised.pop((ev.vcpu, ev.arg), ())
                hist = lat["external" if ev.arg == 0x500 else "decrementer"]
                for t in pend:
                    d = ev.time - t
                    hist[d] = hist.get(d, 0) + 1

    def us(self, ticks: int) -> float:
        """Ticks to microseconds (explorer traces: steps count as 1 us each)."""
        if self._explore:
            return float(ticks)
        return ticks * 1_000_000 / self._config.timebase_hz

    def finish(self, end: int, steps: int = 0) -> Metrics:
        """The metrics of a run that ended at ``end`` after ``steps`` model steps."""
        self._advance(end)
        us = self.us
        cfg = self._config
        latency = {}
        for kind, hist in self._lat.items():
            n = sum(hist.values())
            if n:
                vals = sorted(hist)
                # the median is the value at sorted position n // 2 (the upper median)
                seen, median = 0, vals[-1]
                for d in vals:
                    seen += hist[d]
                    if seen > n // 2:
                        median = d
                        break
                latency[kind] = {"count": float(n),
                                 "mean": us(sum(d * c for d, c in hist.items())) / n,
                                 "median": us(median), "max": us(vals[-1])}
            else:
                latency[kind] = {"count": 0.0, "mean": 0.0, "median": 0.0, "max": 0.0}
        lost_by_reason: dict[str, float] = {}
        for d in self._lost.values():
            for r, t in d.items():
                lost_by_reason[r] = lost_by_reason.get(r, 0.0) + us(t)
        lost_by_vcpu = {v: us(sum(t for r, t in d.items() if r in IDLENESS_REASONS))
                        for v, d in self._lost.items()}
        exits = self._exits
        return Metrics(
            duration_us=us(end), whole_core_exits=sum(exits.values()),
            exits_by_reason=dict(sorted(exits.items())),
            ipis_to_nappers=self._ipis_napper, host_ipis=self._host_ipis, naps=self._naps,
            vcore_sleeps=self._sleeps, host_wakeups=self._wakeups,
            time_split={v: {a: us(t) for a, t in d.items()} for v, d in self._split.items()},
            latency=latency, undelivered=sum(len(p) for p in self._raised.values()),
            lost_guest_us=sum(lost_by_vcpu.values()),
            lost_by_reason=dict(sorted(lost_by_reason.items())), lost_by_vcpu=lost_by_vcpu,
            kernel=f"{cfg.kernel}; policy {cfg.policy}, {cfg.cpu}",
            polls_succeeded=self._polls["succeeded"], polls_failed=self._polls["failed"],
            poll_us=us(self._poll_ticks), vcpu_exits=sum(self._vcpu_exits.values()),
            vcpu_exits_by_reason=dict(sorted(self._vcpu_exits.items())), steps=steps)


def _compute_metrics(tr: Trace) -> Metrics:
    acc = MetricsAccumulator(tr.config, explore=tr.source == "explore")
    acc.add(tr.events)
    return acc.finish(tr.end, len(tr.steps))


#: The actors of a step and the range of their index ("threads": a hardware thread,
#: "vcpus": a vcpu, "any": a vcpu, a thread or the remote prodder).
_ACTOR_INDEX = {"thread": "threads", "task": "vcpus", "timer": "vcpus",
                "prodder": "any", "drain": "any", "world": "any"}
_MAX_ACTOR_INDEX = 99  # edit.PRODDER, the remote prodder's writer id


def _json_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _json_list(where: str, x: object) -> list:
    if not isinstance(x, list):
        raise ValueError(f"{where}: got {x!r:.80}; allowed: a list")
    return x


def _check_time(where: str, t: object, last: int, end: int) -> None:
    if not _json_int(t) or not last <= t <= end:
        raise ValueError(f"{where}: got {t!r}; allowed: an integer time from {last} (the "
                         f"time before it) to end ({end})")


@dataclass
class Trace:
    """A run of the model: events in time order, the steps taken, and what produced it.

    ``source`` is "simulate" (times in timebase ticks) or "explore" (times are step
    numbers); ``budget`` is the explorer's initial environment budget (replay needs it);
    ``meta`` holds JSON-ready extras (e.g. the violated property of a counterexample).
    """

    config: Config
    workload: Workload
    events: list[Event]
    steps: list[tuple[int, Step]]
    end: int
    source: str = "simulate"
    budget: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    meta: dict[str, Any] = field(default_factory=dict)

    # ---- time ------------------------------------------------------------------------------
    def us(self, ticks: int) -> float:
        """Ticks to microseconds (explorer traces: steps count as 1 us each)."""
        if self.source == "explore":
            return float(ticks)
        return ticks * 1_000_000 / self.config.timebase_hz

    @cached_property
    def metrics(self) -> Metrics:
        """Metrics computed from the events (cached)."""
        return _compute_metrics(self)

    # ---- replay ----------------------------------------------------------------------------
    @cached_property
    def _model(self):
        from .model import Model
        return Model(self.config, self.workload)

    @cached_property
    def _checkpoints(self) -> list[Machine]:
        return [self._model.initial(self.budget)]

    _EVERY = 64

    def state_after(self, k: int) -> Machine:
        """The machine state after the first ``k`` steps (``k = 0``: the initial state)."""
        if not 0 <= k <= len(self.steps):
            raise ValueError(f"k must be a step count from 0 to {len(self.steps)}, got {k!r}")
        cps = self._checkpoints
        base = min(k // self._EVERY, len(cps) - 1)
        s = cps[base]
        for j in range(base * self._EVERY, k):
            s, _ = self._apply(s, j)
            if (j + 1) % self._EVERY == 0 and (j + 1) // self._EVERY == len(cps):
                cps.append(s)
        return s

    def step_index_at(self, time: int) -> int:
        """Number of steps taken at or before ``time``."""
        return bisect.bisect_right([t for t, _ in self.steps], time)

    def state_at(self, time: int) -> Machine:
        """The machine state at ``time`` (after every step taken at or before it)."""
        return self.state_after(self.step_index_at(time))

    def states(self):
        """Yield ``(time, step, state_after_step)`` for every step, replaying once."""
        s = self._model.initial(self.budget)
        for j, (t, st) in enumerate(self.steps):
            s, _ = self._apply(s, j)
            yield t, st, s

    def events_of_step(self, k: int) -> list[Event]:
        """The events emitted by step ``k`` (0-based), by replaying it."""
        if not 0 <= k < len(self.steps):
            raise ValueError(f"k: got {k!r}; allowed: a step index from 0 to "
                             f"{len(self.steps) - 1}")
        t = self.steps[k][0]
        return [ev._replace(time=t) for ev in self._apply(self.state_after(k), k)[1]]

    def _apply(self, s: Machine, j: int) -> tuple[Machine, list[Event]]:
        """Replay step ``j`` in ``s``; a step the model cannot take there (a trace read
        from a file that was edited) is a ValueError naming it, not a KeyError."""
        t, st = self.steps[j]
        m = self._model
        if self.__dict__.get("_from_json") and st.actor != "world" and \
                st not in m.enabled(s, False):
            # Read from a file: each step must be one the model can take (the simulator
            # and the explorer only ever take such steps, so their traces skip this).
            raise ValueError(f"steps[{j}]: got {list(st)}; allowed: a step the model can "
                             f"take in the state after step {j}: "
                             f"{[list(e) for e in m.enabled(s, False)]}")
        try:
            return m.apply(s, st, self._now(t))
        except (KeyError, IndexError, AttributeError, TypeError) as exc:
            raise ValueError(f"steps[{j}]: got {list(st)}; allowed: a step the model can "
                             f"take in the state after step {j} (replay failed: "
                             f"{type(exc).__name__} {exc})") from None

    def _now(self, t: int) -> int:
        """The model time to replay a step taken at trace time ``t``: the explorer runs
        every step at time 0 (its trace times are step numbers, and a DEC programmed at
        step k must not expire at k + its delay, or replay would not reach the explored
        states)."""
        return 0 if self.source == "explore" else t

    # ---- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "source": self.source,
            "config": self.config.to_dict(), "workload": self.workload.to_dict(),
            "end": self.end, "budget": list(self.budget), "meta": self.meta,
            "steps": [[t, st.actor, st.index, st.name] for t, st in self.steps],
            "events": [list(ev) for ev in self.events],
        }

    def to_json(self, indent: int | None = None) -> str:
        """Lossless JSON: ``Trace.from_json(tr.to_json())`` equals ``tr``; the same trace
        always gives the same bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent,
                          separators=(",", ":") if indent is None else None)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trace:
        """The trace :meth:`to_dict` wrote.  Everything is checked before the trace is
        built: a key missing or unknown, a wrong type, an index out of range (a thread,
        vcpu or actor), times out of order, an invalid op or event in the workload —
        each raises ValueError naming its path (``events[3][1]: got 7; allowed: ...``)."""
        from .config import Config
        from .edit import Step
        from .guest import Workload
        if not isinstance(d, dict):
            raise ValueError(f"trace: got {type(d).__name__} {d!r:.80}; allowed: a JSON "
                             f"object as written by Trace.to_json()")
        if d.get("format") != FORMAT:
            raise ValueError(f"format: got {d.get('format')!r}; allowed: {FORMAT!r}")
        if d.get("version") != VERSION:
            raise ValueError(f"version: got {d.get('version')!r}; allowed: {VERSION}")
        keys = ("format", "version", "source", "config", "workload", "end", "budget",
                "meta", "steps", "events")
        missing = [k for k in keys if k not in d and k != "meta"]
        if missing:
            raise ValueError(f"{missing[0]}: missing; allowed: a trace has the keys "
                             f"{list(keys)}")
        bad = sorted(map(repr, set(d) - set(keys)))
        if bad:
            raise ValueError(f"trace: got unknown key(s) {', '.join(bad)}; allowed: "
                             f"{list(keys)}")
        source = d["source"]
        if source not in ("simulate", "explore"):
            raise ValueError(f"source: got {source!r}; allowed: 'simulate' or 'explore'")
        config = Config.from_dict(d["config"])
        workload = Workload.from_dict(d["workload"])
        workload.check(config)
        end = d["end"]
        if not _json_int(end) or end < 0:
            raise ValueError(f"end: got {end!r}; allowed: an integer >= 0")
        budget = d["budget"]
        if (not isinstance(budget, list) or len(budget) != 5
                or not all(_json_int(b) and b >= 0 for b in budget)):
            raise ValueError(f"budget: got {budget!r:.80}; allowed: a list of 5 integers "
                             f">= 0")
        meta = d.get("meta", {})
        if not isinstance(meta, dict):
            raise ValueError(f"meta: got {meta!r:.80}; allowed: a JSON object")
        n_thr, n_vcpu = config.threads_per_core, config.vcpus
        steps = []
        last = 0
        for j, row in enumerate(_json_list("steps", d["steps"])):
            where = f"steps[{j}]"
            if not isinstance(row, list) or len(row) != 4:
                raise ValueError(f"{where}: got {row!r:.80}; allowed: [time, actor, "
                                 f"index, name]")
            t, actor, i, name = row
            _check_time(f"{where}[0]", t, last, end)
            last = t
            hi = _ACTOR_INDEX.get(actor) if isinstance(actor, str) else None
            if hi is None:
                raise ValueError(f"{where}[1]: got {actor!r}; allowed: one of "
                                 f"{sorted(_ACTOR_INDEX)}")
            top = n_thr if hi == "threads" else n_vcpu if hi == "vcpus" else None
            if not _json_int(i) or (top is not None and not 0 <= i < top) or (
                    top is None and not -1 <= i <= _MAX_ACTOR_INDEX):
                allowed = f"0 to {top - 1}" if top is not None else \
                    f"-1 to {_MAX_ACTOR_INDEX}"
                raise ValueError(f"{where}[2]: got {i!r}; allowed: an index of a {actor} "
                                 f"from {allowed}")
            if not isinstance(name, str) or not name:
                raise ValueError(f"{where}[3]: got {name!r}; allowed: a step name")
            steps.append((t, Step(actor, i, name)))
        events = []
        last = 0
        for j, row in enumerate(_json_list("events", d["events"])):
            where = f"events[{j}]"
            if not isinstance(row, list) or len(row) != len(Event._fields):
                raise ValueError(f"{where}: got {row!r:.80}; allowed: "
                                 f"[{', '.join(Event._fields)}]")
            t, thr, v, kind, detail, arg = row
            _check_time(f"{where}[0]", t, last, end)
            last = t
            if not _json_int(thr) or not -1 <= thr < n_thr:
                raise ValueError(f"{where}[1]: got {thr!r}; allowed: a thread from -1 to "
                                 f"{n_thr - 1}")
            if not _json_int(v) or not -1 <= v < n_vcpu:
                raise ValueError(f"{where}[2]: got {v!r}; allowed: a vcpu from -1 to "
                                 f"{n_vcpu - 1}")
            for k, x in ((3, kind), (4, detail)):
                if not isinstance(x, str):
                    raise ValueError(f"{where}[{k}]: got {x!r:.80}; allowed: a string")
            if not _json_int(arg):
                raise ValueError(f"{where}[5]: got {arg!r}; allowed: an integer")
            events.append(Event(t, thr, v, kind, detail, arg))
        tr = cls(config=config, workload=workload, events=events, steps=steps, end=end,
                 source=source, budget=tuple(budget), meta=meta)
        tr._from_json = True  # replay checks each step (Trace._apply)
        return tr

    @classmethod
    def from_json(cls, text: str | bytes) -> Trace:
        """The trace :meth:`to_json` wrote (checked as :meth:`from_dict` says)."""
        if not isinstance(text, str | bytes | bytearray):
            raise ValueError(f"text: got {type(text).__name__}; allowed: a JSON string")
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"text: not valid JSON ({exc}); allowed: the JSON that "
                             f"Trace.to_json() writes") from None
        return cls.from_dict(d)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    # ---- Perfetto / Chrome trace events --------------------------------------------------------
    def to_perfetto(self) -> dict[str, Any]:
        """The trace in Chrome trace-event JSON (open it in ui.perfetto.dev).

        One track per hardware thread with spans of its activity, one per vcpu with its
        time split, one for the host side; kernel events as instants with their details;
        IPIs as flow arrows from sender to receiver."""
        us = self.us
        pid = 1
        out: list[dict[str, Any]] = [
            {"ph": "M", "pid": pid, "name": "process_name", "args": {"name": "POWER7 core"}}]
        n_thr = self.config.threads_per_core
        host_tid = 100
        for i in range(n_thr):
            out.append({"ph": "M", "pid": pid, "tid": i, "name": "thread_name",
                        "args": {"name": f"hw thread {i}"}})
        out.append({"ph": "M", "pid": pid, "tid": host_tid, "name": "thread_name",
                    "args": {"name": "host (book3s_hv.c)"}})
        for v in range(self.config.vcpus):
            out.append({"ph": "M", "pid": 2, "tid": v, "name": "thread_name",
                        "args": {"name": f"vcpu {v}"}})
        out.append({"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "vcpus"}})
        open_t: dict[tuple[int, int], tuple[int, str]] = {}
        flow = 0

        def close(key: tuple[int, int], t: int) -> None:
            if key in open_t:
                t0, name = open_t.pop(key)
                if t > t0:
                    out.append({"ph": "X", "pid": key[0], "tid": key[1], "name": name,
                                "ts": us(t0), "dur": us(t) - us(t0)})

        for ev in self.events:
            if ev.kind == "thread_state":
                key = (pid, ev.thread)
                close(key, ev.time)
                name = ev.detail + (f" vcpu {ev.vcpu}" if ev.detail == "guest" else "")
                open_t[key] = (ev.time, name)
            elif ev.kind == "vcpu_state":
                key = (2, ev.vcpu)
                close(key, ev.time)
                open_t[key] = (ev.time, ev.detail)
            else:
                tid = ev.thread if ev.thread >= 0 else host_tid
                out.append({"ph": "i", "s": "t", "pid": pid, "tid": tid, "name": ev.kind,
                            "ts": us(ev.time), "args": {"vcpu": ev.vcpu,
                                                          "detail": ev.detail}})
                if ev.kind == "ipi" and 0 <= ev.arg < n_thr:
                    flow += 1
                    out.append({"ph": "s", "id": flow, "pid": pid, "tid": tid, "name": "IPI",
                                "cat": "ipi", "ts": us(ev.time)})
                    out.append({"ph": "f", "bp": "e", "id": flow, "pid": pid, "tid": ev.arg,
                                "name": "IPI", "cat": "ipi", "ts": us(ev.time)})
        for key in list(open_t):
            close(key, self.end)
        return {"traceEvents": out, "displayTimeUnit": "ns",
                "otherData": {"source": self.source, "config": self.config.to_dict()}}

    def write_perfetto(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_perfetto(), f)

    # ---- convenience ---------------------------------------------------------------------------
    def kernel_events(self) -> list[Event]:
        """Events other than the activity changes (what a reader follows step by step)."""
        return [e for e in self.events if e.kind not in ("thread_state", "vcpu_state")]

    def format_events(self, kinds: Iterable[str] | None = None, start_us: float = 0.0,
                      end_us: float | None = None, vcpu: int | None = None) -> str:
        """The kernel events as a table, one per line: time (us; step number for an
        explorer trace), thread, vcpu, kernel name, detail.  ``kinds`` keeps only those
        event kinds; ``start_us``/``end_us`` a window; ``vcpu`` one vcpu's events."""
        keep = None if kinds is None else set(kinds)
        unit = "step" if self.source == "explore" else "time (us)"
        lines = [f"{unit:>10}  {'thr':>3}  {'vcpu':>4}  {'event':<30} detail"]
        for ev in self.kernel_events():
            t = self.us(ev.time)
            if (keep is not None and ev.kind not in keep) or t < start_us or (
                    end_us is not None and t > end_us) or (vcpu is not None
                                                            and ev.vcpu != vcpu):
                continue
            thr = str(ev.thread) if ev.thread >= 0 else "-"
            who = str(ev.vcpu) if ev.vcpu >= 0 else "-"
            detail = ev.detail
            if ev.arg != -1 and ev.kind in ("raise", "deliver", "exit"):
                detail = f"{detail} [{ev.arg:#x}]"
            when = f"{ev.time:>10d}" if self.source == "explore" else f"{t:10.3f}"
            lines.append(f"{when}  {thr:>3}  {who:>4}  {ev.kind:<30} {detail}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Trace(source={self.source!r}, steps={len(self.steps)}, "
                f"events={len(self.events)}, end={self.end})")
