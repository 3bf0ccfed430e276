"""The invariants of reference section 10: every item is checked, the real protocol keeps
them, and each check catches the fault it is about (a bug, an ablation, or a mutant of
the model that breaks exactly that rule)."""

from __future__ import annotations

import pytest

from kvmcede import (
    ABLATIONS,
    BUGS,
    INVARIANTS,
    Config,
    RemoteProd,
    Workload,
    host,
    realmode,
    simulate,
)
from kvmcede.explorer import SETUPS, explore, setup
from kvmcede.guest import Busy, Idle, Interrupt, Mmio
from kvmcede.scenarios import scenario
from kvmcede.sim import InvariantViolation
from kvmcede.state import DEC_NEGATIVE, KVMPPC_VCPU_RUNNABLE, VCORE_INACTIVE

SECTION_10 = [f"10.{k}" for k in range(1, 11)]


def test_every_item_of_section_10_is_checked():
    cited = {where for where, _ in INVARIANTS.values()}
    assert set(SECTION_10) <= cited
    # The POWER9 path's own checks cite the item they stand in for, or just "POWER9".
    assert all(where.removesuffix(" (POWER9)") in SECTION_10
               or where in ("consequence", "POWER9") for where in cited)
    assert all(text for _, text in INVARIANTS.values())


def test_invariants_that_hold_only_for_some_kernels_or_policies_say_so():
    assert "policy realmode" in INVARIANTS["host_never_handles_cede"][1]
    assert "policy realmode" in INVARIANTS["cede_handled_before_nap"][1]
    assert "prodded_branch" in INVARIANTS["nap_is_flagged"][1]


# ---- the ablations and bugs break what they should -------------------------------------------

#: setup -> the invariants its counterexample breaks (liveness: tests/test_explore.py)
BROKEN_INVARIANTS = {
    "no_ipi_on_exit": {"first_exiter_ipis_nappers"},
    "no_nv_save": {"nv_registers_preserved"},
    "prodded_branch": {"nap_is_flagged", "cede_handled_before_nap", "counts_consistent"},
}
#: setups whose counterexample is a liveness property only: no invariant breaks
LIVENESS_ONLY = {"no_exit_recheck", "no_prodded_check", "no_cede_sync", "weak_cede_barrier",
                 "hprod_wakes_caller"}


def test_the_tables_name_every_ablation_and_bug():
    assert set(BROKEN_INVARIANTS) | LIVENESS_ONLY == set(ABLATIONS) | set(BUGS)
    assert set(SETUPS) == {"protocol"} | set(ABLATIONS) | set(BUGS)


@pytest.mark.parametrize("name", sorted(set(ABLATIONS) | set(BUGS)))
def test_each_ablation_and_bug_breaks_exactly_its_invariants(name):
    cfg, wl, kw = setup(name)
    r = explore(cfg, wl, progress=False, properties=list(INVARIANTS), **kw)
    assert r.finished
    assert set(r.violations) == BROKEN_INVARIANTS.get(name, set()), r.format(events=False)


def test_the_real_protocol_keeps_every_invariant():
    cfg, wl, kw = setup("protocol")
    r = explore(cfg, wl, progress=False, properties=list(INVARIANTS), **kw)
    assert r.ok and r.finished


def test_the_prodded_branch_bug_breaks_nap_is_flagged_in_the_simulator():
    # 3.4 as shipped: a vcpu prodded before it cedes naps unflagged (invariant 10.2).
    wl = Workload(((Busy(50.0),), (Idle(None),)),
                  events=(RemoteProd(2.0, 1),))
    cfg = Config(threads_per_core=2, vcpus=2, changes={"8464c884"})
    with pytest.raises(InvariantViolation, match="nap_is_flagged|cede_handled_before_nap"):
        simulate(cfg, wl, until=60.0, check_invariants=True)
    simulate(Config.linux("4.10", threads_per_core=2, vcpus=2), wl, until=60.0,
             check_invariants=True)


# ---- mutants: each check catches the rule it is about ------------------------------------------

def _mutate_thread_step(monkeypatch, loc, after):
    """Replace the step at ``loc`` by the real one followed by ``after(e, i, prev)``."""
    real = realmode.THREAD_STEPS[loc]

    def mutant(e, i):
        prev = e.freeze()
        real(e, i)
        after(e, i, prev)

    monkeypatch.setitem(realmode.THREAD_STEPS, loc, mutant)


def _broken(sc_name: str, match: str, config: Config | None = None) -> None:
    sc = scenario(sc_name)
    with pytest.raises(InvariantViolation, match=match):
        simulate(config or sc.config, sc.workload, until=sc.until_us, check_invariants=True)


def test_the_real_scenarios_keep_every_invariant():
    for name in ("S4", "S5", "S12", "S15", "S17", "S22"):
        sc = scenario(name)
        simulate(sc.config, sc.workload, until=sc.until_us, check_invariants=True)


def test_a_poke_that_leaves_hdec_alone_is_caught(monkeypatch):
    _mutate_thread_step(monkeypatch, "hdec_soon.poke",
                        lambda e, i, prev: e.vc(hdec_expired=prev.vcore.hdec_expired))
    _broken("S4", "hdec_poked_by_first_exiter")


def test_a_later_exiter_that_ipis_is_caught(monkeypatch):
    def ipi_all(e, i, prev):
        if prev.vcore.entry_exit_count >= 0x100:  # not the first exiter
            for j in range(len(e.threads)):
                if j != i:
                    e.thread(j, ipi=True)
    _mutate_thread_step(monkeypatch, "hdec_soon", ipi_all)
    _broken("S4", "hdec_poked_by_first_exiter")


def test_a_first_exiter_that_does_not_poke_is_caught(monkeypatch):
    def skip_poke(e, i, prev):
        if e.threads[i].loc == "hdec_soon.poke":
            e.thread(i, loc="hdec_soon.wait_exits" if i == 0 else "hdec_soon.wait_in_guest")
    _mutate_thread_step(monkeypatch, "hdec_soon", skip_poke)
    _broken("S4", "hdec_poked_by_first_exiter")


def test_a_poke_that_ipis_a_thread_not_napping_is_caught(monkeypatch):
    def ipi_all(e, i, prev):
        for j in range(len(e.threads)):
            if j != i:
                e.thread(j, ipi=True)
    _mutate_thread_step(monkeypatch, "hdec_soon.poke", ipi_all)
    _broken("S12", "first_exiter_ipis_nappers")


def test_a_cede_that_leaves_its_trap_for_the_host_is_caught(monkeypatch):
    # kvmppc_h_cede forgetting "trap = 0" before the nap/host decision: the last one out
    # (S4) takes its cede to the host as an hcall exit to handle.
    def keep_trap(e, i, prev):
        if e.threads[i].loc == "kvmppc_h_cede.napping_threads":
            e.vcpu(e.threads[i].vcpu, trap=0xC00)
    _mutate_thread_step(monkeypatch, "kvmppc_h_cede.sync_prodded", keep_trap)
    _broken("S4", "cede_handled_before_nap|host_never_handles_cede")


def test_the_host_handling_a_cede_is_caught_even_when_real_mode_looks_right(monkeypatch):
    # Only host_never_handles_cede: the trap is put back after the thread has left.
    real = realmode.THREAD_STEPS["hdec_soon.wait_exits"]

    def reraise(e, i):
        real(e, i)
        for w, u in enumerate(e.vcpus):
            if u.guest == "cede":
                e.vcpu(w, trap=0xC00)
    monkeypatch.setitem(realmode.THREAD_STEPS, "hdec_soon.wait_exits", reraise)
    _broken("S15", "host_never_handles_cede")


def test_a_host_injection_that_leaves_the_vcpu_ceded_is_caught(monkeypatch):
    # A lone vcpu cedes to the host (S15) and a device interrupt arrives: the host
    # injects 0x500 (dequeuing the edge EXTERNAL), and nothing else ends the cede.
    wl = Workload(((Idle(None),),), events=(Interrupt(50.0, 0),))
    cfg = Config(threads_per_core=1, vcpus=1)
    simulate(cfg, wl, until=200.0, check_invariants=True)
    monkeypatch.setattr(host, "end_cede", lambda e, v: None)
    with pytest.raises(InvariantViolation, match="host_injection_ends_cede"):
        simulate(cfg, wl, until=200.0, check_invariants=True)


def test_a_reentry_that_forgets_lpcr_mer_is_caught(monkeypatch):
    _mutate_thread_step(monkeypatch, "kvmppc_cede_reentry",
                        lambda e, i, prev: e.thread(i, mer=False))
    cfg = Config.linux("4.10", threads_per_core=2, vcpus=2)
    r = explore(cfg, Workload(((Busy(1.0), Idle(5.0)), ())), interrupts=1, progress=False,
                properties=["mer_set_for_external"])
    assert "mer_set_for_external" in r.violations


def test_a_reentry_that_synthesizes_the_decrementer_over_an_external_is_caught(monkeypatch):
    def dec_first(e, i, prev):
        v = prev.threads[i].vcpu
        if e.vcpus[v].vector == 0x500 and prev.vcpus[v].dec == DEC_NEGATIVE:
            e.vcpu(v, vector=0x900)
    _mutate_thread_step(monkeypatch, "kvmppc_cede_reentry", dec_first)
    cfg = Config.linux("4.10", threads_per_core=2, vcpus=2)
    r = explore(cfg, Workload(((Busy(1.0), Idle(5.0)), ())), interrupts=1, progress=False,
                properties=["one_interrupt_per_entry"])
    assert "one_interrupt_per_entry" in r.violations


def test_a_runner_that_starts_an_all_ceded_vcore_is_caught(monkeypatch):
    # kvmppc_run_vcpu's loop calling kvmppc_run_core instead of kvmppc_vcore_blocked.
    real = host.run_vcpu_loop

    def loop(e, v):
        vc = e.vcore
        if (vc.runnable and not vc.n_busy and vc.vcore_state == VCORE_INACTIVE
                and e.vcpus[v].state == KVMPPC_VCPU_RUNNABLE and not e.tasks[v].signal
                and all(e.vcpus[w].ceded and not e.vcpus[w].pending_exceptions
                        for w in vc.runnable)):
            e.vc(runner=v)
            host.run_core(e, v)
            return
        real(e, v)
    monkeypatch.setattr(host, "run_vcpu_loop", loop)
    _broken("S4", "vcore_sleeps_iff_all_ceded",
            config=scenario("S4").config.replace(policy="realmode"))


def test_a_runner_asleep_off_the_wait_queue_is_caught(monkeypatch):
    real = host.TASK_STEPS["kvmppc_vcore_blocked"]

    def off_queue(e, v):
        real(e, v)
        if e.tasks[v].loc == "kvmppc_vcore_blocked.schedule":
            e.vc(wq=tuple(w for w in e.vcore.wq if w != v))
    monkeypatch.setitem(host.TASK_STEPS, "kvmppc_vcore_blocked", off_queue)
    _broken("S4", "vcore_sleeps_iff_all_ceded")


def test_mmio_exits_with_nappers_keep_every_invariant_on_every_core_size():
    for smt in (1, 2, 4):
        for n in range(1, smt + 1):
            cfg = Config.linux("4.10", threads_per_core=smt, vcpus=n)
            wl = Workload(((Busy(3.0), Mmio(), Idle(20.0)),) + ((Idle(None),),) * (n - 1),
                          events=(Interrupt(30.0, n - 1),))
            simulate(cfg, wl, until=200.0, check_invariants=True)
