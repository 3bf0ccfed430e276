"""Traces: lossless JSON, Perfetto / Chrome trace-event export, replay (state_at,
state_after, states, events_of_step) and the sanity of the metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

from kvmcede import Config, Trace, random_workload, simulate
from kvmcede.trace import VCPU_ACTIVITIES

TRACES = ["S4", "S22", "mmio", "signal", "mediated-external", "headline-host"]


def random_trace(policy: str, seed: int) -> Trace:
    cfg = Config(policy=policy, seed=seed)
    wl = random_workload(cfg, 1500, idle_fraction=0.6, idle_us=150, interrupt_rate=4000)
    return simulate(cfg, wl, until=1500)


@pytest.fixture(scope="module", params=[*TRACES, "random-realmode", "random-host"])
def trace(request, scenario_trace) -> Trace:
    if request.param.startswith("random-"):
        return random_trace(request.param.split("-")[1], seed=7)
    return scenario_trace(request.param)


# ---- JSON -------------------------------------------------------------------------------

def test_json_round_trip_is_exact(trace):
    text = trace.to_json()
    back = Trace.from_json(text)
    assert back == trace and back.to_json() == text
    assert back.events == trace.events and back.steps == trace.steps
    assert back.config == trace.config and back.workload == trace.workload
    assert Trace.from_json(trace.to_json(indent=2)).to_json() == text
    assert back.metrics == trace.metrics


def test_same_inputs_give_byte_identical_json(trace):
    again = simulate(trace.config, trace.workload, until=trace.us(trace.end))
    assert again.to_json() == trace.to_json()


def test_trace_bytes_do_not_depend_on_the_interpreter_hash_seed():
    code = ("import hashlib; from kvmcede import Config, random_workload, simulate; "
            "c = Config(memory='store_buffer', seed=5); "
            "w = random_workload(c, 2000, idle_fraction=0.6, idle_us=100, "
            "interrupt_rate=5000); "
            "print(hashlib.sha256(simulate(c, w, until=2000).to_json().encode()).hexdigest())")
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    digests = {subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                              text=True, cwd=root,
                              env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": path}
                              ).stdout.strip() for seed in ("1", "2")}
    assert len(digests) == 1 and len(digests.pop()) == 64


def test_json_names_a_wrong_format_or_version():
    d = json.loads(random_trace("realmode", 1).to_json())
    with pytest.raises(ValueError, match="format"):
        Trace.from_dict({**d, "format": "something-else"})
    with pytest.raises(ValueError, match="version"):
        Trace.from_dict({**d, "version": 999})


# ---- Perfetto ---------------------------------------------------------------------------

def test_perfetto_export_is_valid_chrome_trace_event_json(trace, tmp_path):
    doc = trace.to_perfetto()
    assert json.loads(json.dumps(doc)) == doc  # plain JSON
    evs = doc["traceEvents"]
    assert evs and {e["ph"] for e in evs} <= {"X", "i", "M", "s", "f"}
    end_us = trace.us(trace.end)
    for e in evs:
        assert isinstance(e["pid"], int) and isinstance(e["name"], str)
        if e["ph"] != "M":
            assert isinstance(e["tid"], int) and 0 <= e["ts"] <= end_us + 1e-9
        if e["ph"] == "X":
            assert e["dur"] > 0 and e["ts"] + e["dur"] <= end_us + 1e-6
        if e["ph"] == "i":
            assert e["s"] in ("t", "p", "g")
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "thread_name") and e["args"]["name"]
    flows = Counter((e["ph"], e["id"]) for e in evs if e["ph"] in "sf")
    starts = {i for ph, i in flows if ph == "s"}
    assert starts == {i for ph, i in flows if ph == "f"} and set(flows.values()) == {1}
    path = tmp_path / "trace.json"
    trace.write_perfetto(str(path))
    assert json.loads(path.read_text(encoding="utf-8")) == doc


def test_perfetto_has_gapless_activity_spans_for_every_hardware_thread(trace):
    doc = trace.to_perfetto()
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name"}
    end_us = trace.us(trace.end)
    for i in range(trace.config.threads_per_core):
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in doc["traceEvents"]
                       if e["ph"] == "X" and names.get((e["pid"], e["tid"]))
                       == f"hw thread {i}")
        assert spans and spans[0][0] == 0.0
        assert spans[-1][1] == pytest.approx(end_us)
        assert all(b == pytest.approx(c) for (_, b), (c, _) in pairwise(spans))
    ipis = [e for e in trace.kernel_events() if e.kind == "ipi"
            and 0 <= e.arg < trace.config.threads_per_core]
    assert sum(e["ph"] == "s" for e in doc["traceEvents"]) == len(ipis)


# ---- replay -----------------------------------------------------------------------------

def test_state_after_and_state_at_agree_with_states(trace):
    states = list(trace.states())
    assert len(states) == len(trace.steps)
    assert [(t, st) for t, st, _ in states] == trace.steps
    assert trace.state_after(0) == trace._model.initial(trace.budget)
    picks = sorted({0, 1, 63, 64, 65, len(states) // 2, len(states)} & set(
        range(len(states) + 1)), reverse=True)  # backwards: checkpoints must not matter
    for k in picks:
        assert trace.state_after(k) == (states[k - 1][2] if k else trace.state_after(0))
    for t, _, _ in states[:: max(1, len(states) // 25)]:
        last = max(j for j, (tj, _, _) in enumerate(states) if tj <= t)
        assert trace.state_at(t) == states[last][2]
    assert trace.state_at(trace.end) == states[-1][2]
    with pytest.raises(ValueError, match="k"):
        trace.state_after(len(states) + 1)


def test_events_of_each_step_are_the_kernel_events(trace):
    replayed = [ev for k in range(len(trace.steps)) for ev in trace.events_of_step(k)]
    assert replayed == trace.kernel_events()


def test_activity_events_match_the_replayed_states(trace):
    from kvmcede import thread_activity, vcpu_activity
    states = list(trace.states())
    for ev in trace.events:
        if ev.kind in ("thread_state", "vcpu_state") and ev.time > 0:
            k = trace.step_index_at(ev.time)
            s = states[k - 1][2]
            if ev.kind == "thread_state":
                assert thread_activity(s, ev.thread) == ev.detail
            else:
                assert vcpu_activity(s, ev.vcpu) == ev.detail


# ---- metrics ----------------------------------------------------------------------------

def test_time_split_covers_the_whole_duration_for_every_vcpu(trace):
    m = trace.metrics
    assert m.duration_us == pytest.approx(trace.us(trace.end))
    assert set(m.time_split) == set(range(trace.config.vcpus))
    for split in m.time_split.values():
        assert set(split) == set(VCPU_ACTIVITIES) and min(split.values()) >= 0
        assert sum(split.values()) == pytest.approx(m.duration_us)
    s = m.summary()
    n = trace.config.vcpus
    stopped = sum(d["stopped"] for d in m.time_split.values()) / (m.duration_us * n)
    fractions = sum(s[f"{a}_fraction"] for a in ("guest", "nap", "ceded", "out", "userspace"))
    assert fractions + stopped == pytest.approx(1.0, abs=1e-5)


def test_latency_counts_match_raise_deliver_pairs(trace):
    pending: Counter = Counter()
    delivered: Counter = Counter()
    for ev in trace.kernel_events():
        if ev.kind == "raise":
            pending[(ev.vcpu, ev.arg)] += 1
        elif ev.kind == "deliver":
            kind = "external" if ev.arg == 0x500 else "decrementer"
            delivered[kind] += pending.pop((ev.vcpu, ev.arg), 0)
    m = trace.metrics
    for kind in ("external", "decrementer"):
        lat = m.latency[kind]
        assert lat["count"] == delivered[kind]
        if lat["count"]:
            assert 0 <= lat["median"] <= lat["max"] and 0 <= lat["mean"] <= lat["max"]
    assert m.undelivered == sum(pending.values())


def test_counted_metrics_match_the_events(trace):
    kev = trace.kernel_events()
    m = trace.metrics
    exits = [e for e in kev if e.kind == "exit"]
    assert m.whole_core_exits == len(exits) == sum(m.exits_by_reason.values())
    switches = sum(e.kind == "switch_to_host" for e in kev)
    assert switches in (len(exits), len(exits) - 1)  # the last exit may be unfinished
    assert m.naps == sum(e.kind == "nap" for e in kev)
    assert m.ipis_to_nappers == sum(e.kind == "ipi" and e.thread >= 0 for e in kev)
    assert m.host_ipis == sum(e.kind == "ipi" and e.detail.startswith("host reschedule")
                              for e in kev)
    assert m.vcore_sleeps == sum(e.kind == "vcore_sleep" for e in kev)
    assert m.host_wakeups == sum(e.kind == "host_wakeup" for e in kev)
    out = sum(d["out"] for d in m.time_split.values())
    assert 0 <= m.lost_guest_us <= out + 1e-6
    assert m.lost_guest_us == pytest.approx(sum(m.lost_by_vcpu.values()))
    assert "whole-core exits" in m.table()


def test_simulations_leave_the_garbage_collector_as_they_found_it():
    # simulate() pauses the cyclic collector; overlapping runs in threads (a thread-pool
    # sweep) and runs inside code that switched it off must not leave it changed.
    import gc
    from concurrent.futures import ThreadPoolExecutor

    cfg = Config()
    wl = random_workload(cfg, 3000, idle_fraction=0.5, idle_us=100, seed=1)
    assert gc.isenabled()
    with ThreadPoolExecutor(4) as pool:
        traces = list(pool.map(lambda _: simulate(cfg, wl, until=3000), range(8)))
    assert gc.isenabled()
    assert len({t.to_json() for t in traces}) == 1
    gc.disable()
    try:
        simulate(cfg, wl, until=500)
        assert not gc.isenabled()
    finally:
        gc.enable()
