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

__all__ = ["IDLENESS_REASONS", "Event", "Metrics", "Trace"]

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


def _compute_metrics(tr: Trace) -> Metrics:
    us = tr.us
    exits: dict[str, int] = {}
    vcpu_exits: dict[str, int] = {}
    ipis_napper = host_ipis = naps = sleeps = wakeups = 0
    polls = {"succeeded": 0, "failed": 0}
    poll_ticks = 0
    n = tr.config.vcpus
    split = {v: dict.fromkeys(VCPU_ACTIVITIES, 0) for v in range(n)}
    act = ["stopped"] * n
    last_t = 0
    cause: tuple[str, int] | None = None  # reason and vcpu of the current core exit
    last_kick = ""
    kicked = -1  # the vcpu whose kick IPI'd thread 0: it, not thread 0's vcpu, caused the exit
    lost = {v: {} for v in range(n)}
    raised: dict[tuple[int, int], list[int]] = {}
    lat: dict[str, list[int]] = {"external": [], "decrementer": []}

    def advance(t: int) -> None:
        nonlocal last_t
        dt = t - last_t
        if dt <= 0:
            return
        for v in range(n):
            split[v][act[v]] += dt
            if act[v] == "out" and cause is not None and cause[1] != v:
                d = lost[v]
                d[cause[0]] = d.get(cause[0], 0) + dt
        last_t = t

    # Time is integrated only where a vcpu's activity or the exit cause changes: between
    # two such events every sum grows linearly (integer ticks, so the result is the same).
    for ev in tr.events:
        k = ev.kind
        if k == "vcpu_state":
            advance(ev.time)
            act[ev.vcpu] = ev.detail
        elif k == "exit":
            advance(ev.time)
            reason = ev.detail
            if reason == "external" and last_kick:
                reason = f"external ({last_kick} kick)"
            exits[reason] = exits.get(reason, 0) + 1
            cause = (reason, kicked if reason != ev.detail else ev.vcpu)
        elif k == "vcpu_exit":
            vcpu_exits[ev.detail] = vcpu_exits.get(ev.detail, 0) + 1
        elif k == "kvmppc_hv_entry" and ev.thread == 0:
            advance(ev.time)
            cause = None
        elif k == "ipi":
            if ev.thread >= 0:
                ipis_napper += 1
            elif ev.detail.startswith(("host reschedule", "host IPI")):
                host_ipis += 1
                last_kick = ev.detail.rsplit("(", 1)[-1].rstrip(")")
                kicked = ev.vcpu
        elif k == "switch_to_host":
            last_kick = ""
        elif k == "nap":
            naps += 1
        elif k == "vcore_sleep":
            sleeps += 1
        elif k == "host_wakeup":
            wakeups += 1
        elif k == "halt_poll":
            polls[ev.detail] += 1
            poll_ticks += ev.arg
        elif k == "raise":
            raised.setdefault((ev.vcpu, ev.arg), []).append(ev.time)
        elif k == "deliver":
            pend = raised.pop((ev.vcpu, ev.arg), [])
            kind = "external" if ev.arg == 0x500 else "decrementer"
            lat[kind].extend(ev.time - t for t in pend)
    advance(tr.end)
    latency = {}
    for kind, vals in lat.items():
        vals = sorted(vals)
        if vals:
            latency[kind] = {"count": float(len(vals)), "mean": us(sum(vals)) / len(vals),
                             "median": us(vals[len(vals) // 2]), "max": us(vals[-1])}
        else:
            latency[kind] = {"count": 0.0, "mean": 0.0, "median": 0.0, "max": 0.0}
    lost_by_reason: dict[str, float] = {}
    for d in lost.values():
        for r, t in d.items():
            lost_by_reason[r] = lost_by_reason.get(r, 0.0) + us(t)
    lost_by_vcpu = {v: us(sum(t for r, t in d.items() if r in IDLENESS_REASONS))
                    for v, d in lost.items()}
    return Metrics(
        duration_us=us(tr.end), whole_core_exits=sum(exits.values()),
        exits_by_reason=dict(sorted(exits.items())), ipis_to_nappers=ipis_napper,
        host_ipis=host_ipis, naps=naps, vcore_sleeps=sleeps, host_wakeups=wakeups,
        time_split={v: {a: us(t) for a, t in d.items()} for v, d in split.items()},
        latency=latency, undelivered=sum(len(p) for p in raised.values()),
        lost_guest_us=sum(lost_by_vcpu.values()),
        lost_by_reason=dict(sorted(lost_by_reason.items())), lost_by_vcpu=lost_by_vcpu,
        kernel=f"{tr.config.kernel}; policy {tr.config.policy}, {tr.config.cpu}",
        polls_succeeded=polls["succeeded"], polls_failed=polls["failed"],
        poll_us=us(poll_ticks),
        vcpu_exits=sum(vcpu_exits.values()), vcpu_exits_by_reason=dict(sorted(
            vcpu_exits.items())))


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
        m = self._model
        for j in range(base * self._EVERY, k):
            t, st = self.steps[j]
            s, _ = m.apply(s, st, self._now(t))
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
        m = self._model
        s = m.initial(self.budget)
        for t, st in self.steps:
            s, _ = m.apply(s, st, self._now(t))
            yield t, st, s

    def events_of_step(self, k: int) -> list[Event]:
        """The events emitted by step ``k`` (0-based), by replaying it."""
        s = self.state_after(k)
        t, st = self.steps[k]
        return [ev._replace(time=t) for ev in self._model.apply(s, st, self._now(t))[1]]

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
        from .config import Config
        from .edit import Step
        from .guest import Workload
        if d.get("format") != FORMAT:
            raise ValueError(f"format must be {FORMAT!r}, got {d.get('format')!r}")
        if d.get("version") != VERSION:
            raise ValueError(f"version must be {VERSION}, got {d.get('version')!r}")
        return cls(config=Config.from_dict(d["config"]),
                   workload=Workload.from_dict(d["workload"]),
                   events=[Event(*e) for e in d["events"]],
                   steps=[(t, Step(a, i, n)) for t, a, i, n in d["steps"]],
                   end=d["end"], source=d["source"], budget=tuple(d["budget"]),
                   meta=d.get("meta", {}))

    @classmethod
    def from_json(cls, text: str) -> Trace:
        return cls.from_dict(json.loads(text))

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
