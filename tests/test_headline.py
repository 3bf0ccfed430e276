"""The commit's headline effect: one busy vcpu and three idle ones.

Before 19ccb76a (policy "host") every idle transition of any vcpu takes the whole core,
and with it the busy vcpu, out of the guest: the H_CEDE itself, and later the wake-up of
the vcpu ceded in the host.  After it (policy "realmode") the idle vcpus nap and wake
inside the guest partition and the busy vcpu keeps running.
"""

from __future__ import annotations

import pytest

from kvmcede import Trace

BUSY = 0
IDLE = (1, 2, 3)


def idle_periods_started(tr: Trace) -> set[tuple[int, int]]:
    """(vcpu, program counter) of every Idle op that made at least one H_CEDE."""
    return {(s.threads[st.index].vcpu, s.vcpus[s.threads[st.index].vcpu].pc)
            for _, st, s in tr.states() if st.actor == "thread" and st.name == "H_CEDE"}


def dec_periods(tr: Trace) -> list[tuple[int, int, int]]:
    """(vcpu, raised, delivered) for every guest decrementer that was delivered."""
    raised: dict[int, int] = {}
    out = []
    for ev in tr.kernel_events():
        if ev.kind == "raise" and ev.arg == 0x900:
            raised[ev.vcpu] = ev.time
        elif ev.kind == "deliver" and ev.arg == 0x900 and ev.vcpu in raised:
            out.append((ev.vcpu, raised.pop(ev.vcpu), ev.time))
    return out


def core_left_between(tr: Trace, t0: int, t1: int) -> bool:
    return any(ev.kind == "switch_to_host" and t0 <= ev.time <= t1 for ev in tr.events)


def vcore_started_between(tr: Trace, t0: int, t1: int) -> bool:
    return any(ev.kind == "kvmppc_run_core" and "ptids" in ev.detail and t0 <= ev.time <= t1
               for ev in tr.events)


@pytest.fixture(scope="module")
def host(scenario_trace) -> Trace:
    return scenario_trace("headline-host")


@pytest.fixture(scope="module")
def realmode(scenario_trace) -> Trace:
    return scenario_trace("headline")


def test_both_policies_run_the_same_workload(host, realmode):
    assert host.workload.programs == realmode.workload.programs
    assert (host.config.policy, realmode.config.policy) == ("host", "realmode")
    assert host.config.replace(policy="realmode") == realmode.config
    assert len(idle_periods_started(host)) >= 30  # enough idle transitions to count


def test_host_policy_exits_the_whole_core_on_every_cede(host):
    started = idle_periods_started(host)
    cedes = [ev for ev in host.kernel_events() if ev.kind == "H_CEDE"]
    cede_exits = [ev for ev in host.kernel_events()
                  if ev.kind == "exit" and ev.detail == "H_CEDE"]
    # one H_CEDE per idle period, and each one is the first exiter of a whole-core exit
    assert len(cedes) == len(started) == len(cede_exits)
    assert sorted((e.vcpu, e.time) for e in cede_exits) == sorted(
        (e.vcpu, e.time) for e in host.kernel_events()
        if e.kind == "hdec_soon" and e.arg < 0x100 and e.vcpu in IDLE
        and any(c.vcpu == e.vcpu and 0 <= e.time - c.time <= host.config.ticks(1)
                for c in cedes))


def test_host_policy_exits_the_whole_core_again_to_wake_an_idle_vcpu(host):
    periods = dec_periods(host)
    assert len(periods) >= 30
    # a vcpu ceded in the host comes back only through a new run of the vcore (its DEC
    # may also expire while the core is already out for another reason)
    assert all(vcore_started_between(host, t0, t1) for _, t0, t1 in periods)
    assert sum(core_left_between(host, t0, t1) for _, t0, t1 in periods) >= 0.9 * len(periods)
    kicks = host.metrics.exits_by_reason.get("external (decrementer kick)", 0)
    assert kicks >= 0.8 * len(periods)
    assert host.metrics.whole_core_exits >= 2 * len(periods)


def test_realmode_idle_transitions_never_take_the_core_out(realmode):
    m = realmode.metrics
    assert m.exits_by_reason.get("H_CEDE", 0) == 0
    assert not [r for r in m.exits_by_reason if "kick" in r]
    assert set(m.exits_by_reason) <= {"HDEC"}  # only the host's timer tick
    started = idle_periods_started(realmode)
    assert m.naps >= len(started) >= 30
    periods = dec_periods(realmode)
    inside = [p for p in periods if not core_left_between(realmode, p[1], p[2])]
    # every wake-up happens inside the guest partition, except for the idle vcpus that
    # were napping when the host tick's HDEC exit took the core out
    assert len(periods) - len(inside) <= len(IDLE) * m.exits_by_reason.get("HDEC", 0)


def test_busy_vcpu_loses_much_less_guest_time_with_realmode_cede(host, realmode):
    lost_host = host.metrics.lost_by_vcpu[BUSY]
    lost_real = realmode.metrics.lost_by_vcpu[BUSY]
    assert lost_host > 100.0  # microseconds out of the guest for others' idleness
    assert lost_real <= 0.1 * lost_host
    guest_host = host.metrics.time_split[BUSY]["guest"]
    guest_real = realmode.metrics.time_split[BUSY]["guest"]
    assert guest_real - guest_host >= 0.9 * (lost_host - lost_real)
    assert realmode.metrics.lost_guest_us <= 0.1 * host.metrics.lost_guest_us
