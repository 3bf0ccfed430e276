"""The POWER9 path (kvmcede.p9): each vcpu enters and leaves the guest alone.

Reference section 7, "Modern P9 path": kvmhv_run_single_vcpu, kvmhv_p9_guest_entry,
kvmppc_cede, kvmppc_vcpu_check_block, kvmppc_set_timer, the rcuwait loop, H_PROD and
kvmppc_fast_vcpu_kick_hv.
"""

from __future__ import annotations

import pytest

from kvmcede import (
    INVARIANTS,
    Busy,
    Config,
    Idle,
    Interrupt,
    Mmio,
    Prod,
    RemoteProd,
    Signal,
    Trace,
    Workload,
    random_workload,
    simulate,
)
from kvmcede.explorer import explore
from kvmcede.invariants import NOT_ON_POWER9

P9 = Config(cpu="POWER9")
BUSY = Busy(400)


def run(*programs, events=(), until=200.0, config: Config | None = None) -> Trace:
    """Simulate ``programs`` on POWER9 (by default SMT1, 2 or 4 to fit them)."""
    if config is None:
        n = len(programs)
        config = P9.replace(threads_per_core=next(t for t in (1, 2, 4) if t >= n), vcpus=n)
    return simulate(config, Workload(tuple(programs), tuple(events)), until=until,
                    check_invariants=True)


def kinds(tr: Trace, vcpu: int, wanted: set[str]) -> list[str]:
    """The kernel events of ``vcpu`` whose kind is in ``wanted``, in order."""
    return [ev.kind for ev in tr.kernel_events() if ev.vcpu == vcpu and ev.kind in wanted]


def thread_left_guest(tr: Trace) -> list[tuple[int, int]]:
    """(time, thread) of every moment a thread's activity left "guest"."""
    last: dict[int, str] = {}
    out = []
    for ev in tr.events:
        if ev.kind == "thread_state":
            if last.get(ev.thread) == "guest" and ev.detail != "guest":
                out.append((ev.time, ev.thread))
            last[ev.thread] = ev.detail
    return out


# ---- configuration ---------------------------------------------------------------------------

def test_power9_is_the_later_kernel_with_both_fixes():
    assert P9.bugs == frozenset()
    assert "POWER9 path" in P9.kernel and "95a6432c" in P9.kernel
    assert Config.linux("4.10", cpu="POWER9").bugs == frozenset()
    tr = run((Busy(10),), until=20)
    assert "POWER9" in tr.metrics.kernel


@pytest.mark.parametrize("fields, field", [
    ({"policy": "host"}, "policy"),
    ({"memory": "store_buffer"}, "memory"),
    ({"ablations": ["no_ipi_on_exit"]}, "ablations"),
])
def test_power9_rejects_what_only_power7_has(fields, field):
    with pytest.raises(ValueError, match=field):
        Config(cpu="POWER9", **fields)


def test_power7_json_has_no_power9_costs():
    assert "p9_guest_entry" not in Config().to_dict()["costs"]
    assert "p9_guest_entry" in P9.to_dict()["costs"]
    assert Config.from_dict(P9.to_dict()) == P9


def test_every_vcore_invariant_says_why_it_is_skipped_on_power9():
    p9_own = {n for n in INVARIANTS if n.startswith("p9_")}
    assert p9_own >= {"p9_ceded_vcpu_has_timer", "p9_thread_runs_own_vcpu",
                      "p9_not_ceded_in_guest", "p9_exits_are_per_thread"}
    assert set(NOT_ON_POWER9) | p9_own | {"nv_registers_preserved"} == set(INVARIANTS)


# ---- cede, timer, wake, re-entry ---------------------------------------------------------------

def test_cede_timer_wake_reentry_follow_the_kernel_order():
    tr = run((BUSY,), (Busy(5), Idle(30), Busy(100)))
    steps = [st.name for _, st in tr.steps
             if (st.index == 1 and st.actor in ("thread", "task")) or st.actor == "timer"]
    # From the H_CEDE to the guest's DEC handler, in the order of kvmhv_run_single_vcpu.
    k = steps.index("H_CEDE")
    assert steps[k:k + 8] == [
        "H_CEDE", "kvmhv_p9_guest_entry: exit", "kvmppc_cede",
        "kvmhv_run_single_vcpu: after exit",  # set_timer, prepare_to_rcuwait, schedule()
        "kvmppc_decrementer_func",  # the hrtimer: queue DEC, kick (rcuwait_wake_up)
        "kvmhv_run_single_vcpu: woken", "kvmhv_run_single_vcpu", "kvmhv_p9_guest_entry"]
    ev = kinds(tr, 1, {"kvmppc_cede", "kvmppc_set_timer", "kvmppc_fast_vcpu_kick_hv",
                       "kvmppc_core_deliver_interrupts", "deliver", "H_CEDE returns"})
    assert ev[:6] == ["kvmppc_cede", "kvmppc_set_timer", "kvmppc_fast_vcpu_kick_hv",
                  "kvmppc_core_deliver_interrupts", "deliver", "H_CEDE returns"]
    assert tr.metrics.latency["decrementer"]["count"] == 1
    assert tr.metrics.undelivered == 0


def test_ceded_vcpu_sleeps_on_its_own_rcuwait_and_frees_its_thread():
    tr = run((BUSY,), (Busy(5), Idle(None)))
    s = tr.state_at(tr.end)
    assert s.tasks[1].loc == "kvmhv_run_single_vcpu.schedule"
    assert s.vcpus[1].ceded == 1 and s.vcpus[1].timer_running
    assert s.vcpus[1].thread_cpu == -1
    assert s.threads[1].loc == "stop"  # the thread is free for the host
    assert s.threads[0].loc == "guest"
    assert tr.metrics.whole_core_exits == 0 and tr.metrics.vcpu_exits == 1


# ---- H_PROD ----------------------------------------------------------------------------------------

def test_prod_before_cede_returns_at_once():
    # A prods B while B is busy; B's next H_CEDE finds prodded in kvmppc_cede.
    tr = run((Busy(5), Prod(1), BUSY), (Busy(40), Idle(None), Busy(100)), until=120.0)
    cede = [ev for ev in tr.kernel_events() if ev.kind == "kvmppc_cede" and ev.vcpu == 1]
    assert len(cede) == 1 and "prodded was set" in cede[0].detail
    assert not any(ev.kind == "kvmppc_set_timer" and ev.vcpu == 1 for ev in tr.events)
    s = tr.state_at(tr.end)
    assert s.vcpus[1].prodded == 0 and s.vcpus[1].pc == 2  # idle period over, busy again
    assert [ev.detail for ev in tr.kernel_events()
            if ev.kind == "H_CEDE returns" and ev.vcpu == 1] == ["H_SUCCESS (prodded): idle "
                                                                  "period over"]


def test_prod_of_a_ceded_vcpu_kicks_it():
    from kvmcede.scenarios import scenario
    tr = scenario("p9-h-prod").run(check_invariants=True)
    ev = tr.kernel_events()
    hcall = next(k for k, e in enumerate(ev) if e.kind == "kvmppc_pseries_do_hcall")
    assert "target ceded: kick it" in ev[hcall].detail
    assert ev[hcall + 1].kind == "kvmppc_fast_vcpu_kick_hv" and ev[hcall + 1].vcpu == 2
    assert "rcuwait_wake_up" in ev[hcall + 1].detail
    assert tr.metrics.host_wakeups == 1
    # C comes back, cedes again and kvmppc_cede consumes the prod.
    assert "prodded was set" in [e for e in ev if e.kind == "kvmppc_cede"][-1].detail
    assert tr.state_at(tr.end).vcpus[2].pc == 1  # past its Idle: busy
    # Only A's thread (H_PROD) and C's (H_CEDE) ever left the guest.
    assert {thr for _, thr in thread_left_guest(tr)} == {0, 2}


def test_remote_prod_reaches_a_ceded_vcpu():
    tr = run((BUSY,), (Idle(None), Busy(100)), events=(RemoteProd(40.0, 1),))
    assert tr.state_at(tr.end).vcpus[1].pc == 2
    assert tr.metrics.host_wakeups == 1


# ---- interrupts and signals reach the vcpu, and only its thread ------------------------------------

def test_kvm_interrupt_ipis_only_the_target_thread():
    tr = run((BUSY,), (BUSY,), (BUSY,), (BUSY,), events=(Interrupt(50.0, 2),))
    ipis = [ev for ev in tr.kernel_events() if ev.kind == "ipi"]
    assert [(ev.vcpu, ev.arg) for ev in ipis] == [(2, 2)]
    assert thread_left_guest(tr) == [(thread_left_guest(tr)[0][0], 2)]
    assert tr.metrics.vcpu_exits_by_reason == {"external": 1}
    assert tr.metrics.latency["external"]["count"] == 1 and tr.metrics.undelivered == 0


def test_kvm_interrupt_wakes_a_ceded_vcpu():
    tr = run((BUSY,), (Idle(None), Busy(50)), events=(Interrupt(40.0, 1),))
    assert tr.metrics.latency["external"]["count"] == 1 and tr.metrics.undelivered == 0
    assert not any(ev.kind == "ipi" for ev in tr.events)  # asleep: woken, not IPI'd


def test_signal_reaches_a_ceded_vcpu():
    tr = run((BUSY,), (Idle(None),), events=(Signal(40.0, 1),))
    assert any(ev.kind == "kvmppc_vcpu_run_hv" and "KVM_EXIT_INTR" in ev.detail
               for ev in tr.events)
    # Back in KVM_RUN, the vcpu cedes again.
    assert tr.state_at(tr.end).tasks[1].loc == "kvmhv_run_single_vcpu.schedule"


def test_no_other_thread_leaves_the_guest_when_one_vcpu_exits():
    tr = run((BUSY,), (Busy(20), Mmio(), Busy(100)), (Busy(10), Idle(30), Idle(None)),
             (BUSY,), until=120.0)
    left = {thr for _, thr in thread_left_guest(tr)}
    assert left == {1, 2}  # the MMIO vcpu and the idle one, each alone
    assert tr.metrics.whole_core_exits == 0 and tr.metrics.lost_guest_us == 0.0
    assert tr.metrics.vcpu_exits_by_reason == {"H_CEDE": 2, "MMIO": 1}
    assert tr.metrics.time_split[0]["guest"] == tr.metrics.time_split[3]["guest"]


def test_host_tick_takes_each_thread_out_alone():
    tr = run((BUSY,), (BUSY,), config=P9.replace(threads_per_core=2, vcpus=2,
                                                 costs=P9.costs.replace(host_tick=51_200)))
    assert tr.metrics.vcpu_exits_by_reason == {"HDEC": 2}
    assert tr.metrics.whole_core_exits == 0


# ---- the headline workload, POWER7 against POWER9 --------------------------------------------------

@pytest.fixture(scope="module")
def headline(scenario_trace):
    return scenario_trace("headline"), scenario_trace("p9-headline")


def test_headline_runs_the_same_workload_on_both(headline):
    p7, p9 = headline
    assert p7.workload.programs == p9.workload.programs
    assert (p7.config.cpu, p9.config.cpu) == ("POWER7", "POWER9")


def test_headline_power9_exits_per_vcpu_and_loses_no_guest_time(headline):
    p7, p9 = headline
    m7, m9 = p7.metrics, p9.metrics
    assert m9.whole_core_exits == 0 and m9.naps == 0
    assert m9.lost_guest_us == 0.0
    # Every idle transition is one per-vcpu H_CEDE exit (POWER7 naps instead).
    assert m9.vcpu_exits_by_reason["H_CEDE"] >= 40
    assert m7.naps >= 40 and m7.vcpu_exits == 0
    # The busy vcpu is out of the guest less than on POWER7 (whose HDEC exit is
    # whole-core), while each idle vcpu's wake-up goes through the host scheduler.
    assert m9.time_split[0]["out"] < m7.time_split[0]["out"]
    assert m9.latency["decrementer"]["mean"] > m7.latency["decrementer"]["mean"]
    assert m9.latency["decrementer"]["count"] == m7.latency["decrementer"]["count"]


def test_random_workload_holds_the_invariants_on_power9():
    cfg = P9.replace(seed=3)
    wl = random_workload(cfg, 3000, idle_fraction=0.6, idle_us=300, interrupt_rate=3000)
    tr = simulate(cfg, wl, until=3000, check_invariants=True)
    assert tr.metrics.whole_core_exits == 0 and tr.metrics.vcpu_exits > 20
    assert tr.metrics.undelivered <= cfg.vcpus


# ---- the explorer ------------------------------------------------------------------------------------

@pytest.mark.parametrize("budget", [{}, {"prods": 1}, {"signals": 1}])
def test_explore_holds_for_two_vcpus_on_power9(budget):
    # Symmetry off: vcpu v is pinned to thread v, which the explorer's renumbering of
    # vcpus does not know.
    r = explore(Config(cpu="POWER9", threads_per_core=2, vcpus=2), progress=False,
                symmetry=False, **budget)
    assert r.ok and r.finished, r.format()


# ---- Model.enabled's cache on the P9 path -------------------------------------------------------

def test_p9_guards_read_only_what_the_cache_declares():
    """A thread's step reads only the thread and its vcpu; a task's step outside
    p9.TASK_READS_SHARED only the task and its vcpu (inside it, also its own thread)."""
    import random

    from kvmcede import Model, p9
    cfg = P9.replace(seed=5)
    wl = random_workload(cfg, 2000, idle_fraction=0.5, idle_us=150, interrupt_rate=5000)
    tr = simulate(cfg, wl, until=2000)
    states = [s for _, _, s in tr.states()]
    m = tr._model
    rng = random.Random(0)
    for s in states:
        o = rng.choice(states)
        for i in range(len(s.threads)):
            other = s._replace(vcore=o.vcore, tasks=o.tasks, threads=tuple(
                t if j == i else o.threads[j] for j, t in enumerate(s.threads)))
            assert p9.thread_step(other, i, m) == p9.thread_step(s, i, m)
        for v, k in enumerate(s.tasks):
            if k.loc not in p9.TASK_READS_SHARED:
                other = s._replace(vcore=o.vcore, threads=o.threads)
                assert p9.task_step(other, v, m) == p9.task_step(s, v, m)
    order = states[:]
    rng.shuffle(order)
    cached = Model(cfg, wl)
    for s in states + order:
        assert cached.enabled(s) == Model(cfg, wl).enabled(s)


def test_the_explorer_takes_no_vcpu_symmetry_on_power9_and_the_protocol_holds():
    # vcpu v runs on thread v on the P9 path: renumbering vcpus is not a symmetry there.
    cfg = Config(cpu="POWER9", threads_per_core=4, vcpus=3)
    wl = Workload(((Busy(1.0), Idle(5.0)), (), ()))
    r = explore(cfg, wl, progress=False, interrupts=1, dec_expiries=1)
    assert r.ok and r.finished and r.symmetry == ()
