"""The host side (book3s_hv.c) as each kernel has it: 3.4's kvmppc_run_vcpu loop order,
H_PROD and the woken test per 3.4 / 8464c884, halt polling (0cda69dd), and the costs of
waking threads.  vcpus A, B, C, D are vcpus 0, 1, 2, 3."""

from __future__ import annotations

import pytest

from kvmcede import Busy, Config, CostModel, Workload, simulate
from kvmcede.config import CHANGES
from kvmcede.host import HALT_POLL
from kvmcede.scenarios import scenario
from kvmcede.state import VCORE_POLLING
from tests.test_scenarios import Run

A, B, C, D = range(4)


# ---- 3.4's loop: count, block or run, and only then deliver -----------------------------

def test_timer_fired_while_the_vcore_was_held_is_delivered_in_real_mode(scenario_trace):
    r = Run(scenario_trace("held-timer"))
    fire = r.one("kvmppc_decrementer_func", vcpu=C)
    assert fire.before.vcore.n_busy == 1  # A is in userspace for its MMIO
    assert "nobody waiting" in r.one("kvm_vcpu_kick", vcpu=C).ev.detail
    core = r.rows("kvmppc_run_core", detail="ptids", since=fire.ev.time)[0]
    # counted before any delivery: C is still ceded, with its DEC queued, and goes last
    u = core.after.vcpus[C]
    assert u.ceded == 1 and u.pending_exceptions and u.ptid == 2
    assert "(ceded)" in core.ev.detail
    assert not r.rows("kvmppc_core_deliver_interrupts", vcpu=C)  # not injected by the host
    reentry = r.first("kvmppc_cede_reentry", vcpu=C, since=core.ev.time)
    assert reentry.ev.arg == 0x900 and reentry.ev.thread == 2
    assert reentry.after.vcpus[C].ceded == 0
    assert r.one("deliver", vcpu=C).ev.thread == 2


def test_the_loop_delivers_at_its_bottom_after_the_vcore_ran(scenario_trace):
    # S5: the runner woken from kvmppc_vcore_blocked injects B's DEC before it counts.
    r = Run(scenario_trace("S5"))
    wake = r.one("vcore_wake")
    inject = r.one("kvmppc_core_deliver_interrupts", vcpu=B)
    core = r.rows("kvmppc_run_core", detail="ptids")[-1]
    assert wake.ev.time == inject.ev.time == core.ev.time  # one vc->lock section
    kinds = [x.ev.kind for x in r.all if x.ev.time == wake.ev.time and x.ev.thread == -1]
    assert kinds.index("vcore_wake") < kinds.index("kvmppc_core_deliver_interrupts") \
        < kinds.index("kvmppc_run_core")


@pytest.mark.parametrize("name", ["signal", "mmio", "S12", "held-timer"])
def test_a_leaving_vcpu_wakes_nobody_in_3_4(name, scenario_trace):
    r = Run(scenario_trace(name))
    assert not r.rows("kvmppc_run_vcpu", detail="hand the vcore over")
    # whoever brings n_busy back to 0 runs the vcore itself
    for back in r.rows("kvmppc_run_vcpu", detail="RUNNABLE"):
        if back.before.vcore.n_busy == 1 and back.after.vcore.n_busy == 0 and \
                back.after.vcore.vcore_state == 1:
            assert back.after.vcore.runner == back.ev.vcpu


# ---- H_PROD and the woken test, per kernel ----------------------------------------------------

def test_h_prod_in_3_4_kicks_nobody_and_the_prodded_cede_naps_unflagged():
    r = Run(scenario("h-prod-3.4").run())
    assert "nobody is woken" in r.one("kvmppc_pseries_do_hcall", vcpu=A).ev.detail
    assert not r.rows("kvm_vcpu_kick")
    core = r.rows("kvmppc_run_core", detail="ptids")[-1]
    assert core.after.vcpus[C].ceded == 1 and core.after.vcpus[C].prodded == 1
    bad = r.one("kvmppc_h_cede", vcpu=C, detail="prodded_branch")
    t = bad.after.threads[bad.ev.thread]
    assert t.loc == "nap" and t.napping == 0 and not bad.after.vcore.napping_threads
    assert not r.rows("kvm_cede_prodded")


def test_h_prod_with_8464c884_uncedes_the_target_before_the_restart(scenario_trace):
    r = Run(scenario_trace("h-prod"))
    r.one("kvmppc_run_vcpu", vcpu=C, detail="prodded: ceded = 0")
    r.one("kvm_cede_prodded", vcpu=C)


# ---- halt polling ----------------------------------------------------------------------------

def test_halt_polling_is_change_0cda69dd_of_linux_4_7():
    assert CHANGES[HALT_POLL][0] == "4.7" and "halt polling" in CHANGES[HALT_POLL][1]
    assert HALT_POLL in Config.linux("4.7").changes
    assert HALT_POLL not in Config().changes and HALT_POLL not in Config.linux("4.6").changes


def test_without_the_change_nobody_polls(scenario_trace):
    m = scenario_trace("S15").metrics
    assert m.polls_succeeded == m.polls_failed == 0 and m.poll_us == 0.0
    sc = scenario("halt-poll")
    plain = simulate(sc.config.replace(changes=()), sc.workload, until=sc.until_us)
    assert not [e for e in plain.events if e.kind == "halt_poll"]


def test_halt_polling_grows_succeeds_without_a_wakeup_and_resets_after_a_long_block():
    r = Run(scenario("halt-poll").run())
    m = r.tr.metrics
    assert (m.polls_succeeded, m.polls_failed) == (2, 1) and m.poll_us > 0
    windows = [x.after.vcore.halt_poll_ns
               for x in r.rows("kvmppc_vcore_blocked", detail="vc->halt_poll_ns")]
    assert windows == [10_000, 20_000, 0]  # grow_start, *grow, then shrink (0: reset)
    for ok in r.rows("halt_poll", detail="succeeded"):
        kick = [x for x in r.rows("kvm_vcpu_kick") if x.ev.time <= ok.ev.time][-1]
        assert kick.before.vcore.vcore_state == VCORE_POLLING
        assert "no wake-up" in kick.ev.detail
        assert not r.rows("host_wakeup", since=kick.ev.time) or \
            r.rows("host_wakeup", since=kick.ev.time)[0].ev.time > ok.ev.time
    failed = r.one("halt_poll", detail="failed")
    assert failed.after.vcore.vcore_state == 3 and failed.after.vcore.wq == (A,)
    # polling answers short idle periods sooner than a sleep and a scheduler wake-up
    sc = scenario("halt-poll")
    plain = simulate(sc.config.replace(changes=()), sc.workload, until=sc.until_us)
    assert m.latency["decrementer"]["mean"] < plain.metrics.latency["decrementer"]["mean"]
    assert m.host_wakeups < plain.metrics.host_wakeups


def test_a_zero_halt_poll_ns_disables_polling():
    sc = scenario("halt-poll")
    cfg = sc.config.replace(costs=CostModel(halt_poll_ns=0))
    m = simulate(cfg, sc.workload, until=sc.until_us).metrics
    assert m.polls_succeeded == m.polls_failed == 0


# ---- the cost of waking a thread ---------------------------------------------------------------

def _start_guest_gaps(cfg: Config, wl: Workload, until: float) -> dict[str, list[int]]:
    tr = simulate(cfg, wl, until=until)
    out: dict[str, list[int]] = {"start": [], "dec": []}
    ipi_at = {}
    for ev in tr.kernel_events():
        if ev.kind == "kvmppc_start_thread" and "xics IPI" in ev.detail:
            ipi_at[ev.arg] = ev.time
        elif ev.kind == "kvm_start_guest" and "secondary started" in ev.detail:
            out["start"].append(ev.time - ipi_at.pop(ev.thread))
        elif ev.kind == "wake" and ev.detail == "decrementer":
            out["dec"].append(ev.time)
    return out


def test_starting_an_offline_thread_costs_ipi_latency_plus_thread_start():
    wl = Workload(((Busy(50),), (Busy(50),)))
    for us in (1, 4, 9):
        cfg = Config(threads_per_core=2, vcpus=2)
        cfg = cfg.replace(costs=cfg.costs.replace(thread_start=cfg.ticks(us)))
        gaps = _start_guest_gaps(cfg, wl, 40)["start"]
        assert gaps == [cfg.costs.ipi_latency + cfg.ticks(us)]


def test_a_napper_woken_by_its_decrementer_pays_nap_wakeup_and_no_ipi(scenario_trace):
    tr = scenario_trace("S3")
    dec = next(e for e in tr.kernel_events() if e.kind == "decrementer" and e.vcpu == C)
    wake = next(e for e in tr.kernel_events() if e.kind == "wake" and e.vcpu == C)
    assert wake.time - dec.time == tr.config.costs.nap_wakeup


def test_the_guest_visible_cede_latency_is_charged_to_no_step():
    sc = scenario("headline")
    other = sc.config.replace(costs=sc.config.costs.replace(cede_latency=1))
    assert simulate(other, sc.workload, until=2000).events == \
        simulate(sc.config, sc.workload, until=2000).events
