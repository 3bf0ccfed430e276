"""The worked scenarios of reference section 9 (and the named extras), step by step.

Each test replays a scenario's trace and checks what the reference says happens: the
ptids, who naps, who is IPI'd, which vector is delivered, whether the core exits, when
the vcore sleeps, r3/trap, nap_count/n_woken, ceded flags and armed timers.  vcpus A, B,
C, D are vcpus 0, 1, 2, 3.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import pytest

from kvmcede import (
    Config,
    Event,
    Idle,
    Machine,
    RemoteProd,
    Signal,
    Step,
    Trace,
    Workload,
)
from kvmcede import simulate as _simulate
from kvmcede.realmode import LPCR_PECE0, LPCR_PECE1
from kvmcede.scenarios import SCENARIOS, Scenario, scenario
from kvmcede.state import (
    H_SUCCESS,
    KVMPPC_VCPU_BUSY_IN_HOST,
    KVMPPC_VCPU_RUNNABLE,
    REGS_LOST,
    VCORE_RUNNING,
    VCORE_SLEEPING,
    entry_count,
    exit_count,
)

A, B, C, D = range(4)


# ---- replaying a trace with the state before and after every event --------------------------

class Row(NamedTuple):
    ev: Event
    before: Machine
    after: Machine
    step: Step


class Run:
    """A trace replayed step by step, so each kernel event comes with the machine state
    before and after the step that emitted it."""

    def __init__(self, tr: Trace) -> None:
        self.tr = tr
        self.all: list[Row] = []
        s = tr.state_after(0)
        for k, (_, st, after) in enumerate(tr.states()):
            self.all.extend(Row(ev, s, after, st) for ev in tr.events_of_step(k))
            s = after
        self.final = s

    def rows(self, kind: str, *, thread: int | None = None, vcpu: int | None = None,
             detail: str | None = None, since: int = 0) -> list[Row]:
        return [r for r in self.all if r.ev.kind == kind and r.ev.time >= since
                and (thread is None or r.ev.thread == thread)
                and (vcpu is None or r.ev.vcpu == vcpu)
                and (detail is None or detail in r.ev.detail)]

    def one(self, kind: str, **kw) -> Row:
        found = self.rows(kind, **kw)
        assert len(found) == 1, (kind, kw, [r.ev for r in found])
        return found[0]

    def first(self, kind: str, **kw) -> Row:
        found = self.rows(kind, **kw)
        assert found, (kind, kw)
        return found[0]


@pytest.fixture
def run(scenario_trace):
    return lambda name: Run(scenario_trace(name))


def ptids(s: Machine, vcpus) -> list[int]:
    return [s.vcpus[v].ptid for v in vcpus]


# ---- the scenario table ---------------------------------------------------------------------

REFERENCE_SCENARIOS = ("S1", "S2", "S3", "S4", "S5", "S12", "S15", "S17", "S22")
NAMED = ("headline", "headline-host", "late-join", "mmio", "h-prod", "remote-prod",
         "signal", "ppc970")


def test_every_worked_scenario_and_named_extra_is_defined():
    for name in REFERENCE_SCENARIOS + NAMED:
        sc = scenario(name)
        assert isinstance(sc, Scenario) and sc.name == name and SCENARIOS[name] is sc
        assert sc.until_us > 0 and sc.title and sc.workload.name == name


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_description_cites_the_reference_in_two_to_four_sentences(name):
    text = SCENARIOS[name].description
    assert re.search(r"reference|commit message", text)
    sentences = [s for s in re.split(r"(?<=\.)\s+|(?<=\.\))\s+", text.strip()) if s]
    assert 2 <= len(sentences) <= 4, sentences


def test_unknown_scenario_names_every_allowed_one():
    with pytest.raises(ValueError, match="scenario") as err:
        scenario("S99")
    for name in SCENARIOS:
        assert name in str(err.value)
    assert scenario("s4") is SCENARIOS["S4"]


#: Scenarios whose traces break an invariant check, and why.  "h-prod-3.4" shows a
#: shipped bug, which breaks the protocol's invariants by design.
INVARIANTS_BROKEN = {
    "h-prod-3.4": "the prodded_branch bug naps unflagged (cede_handled_before_nap, "
                  "nap_is_flagged): what the scenario shows",
}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=INVARIANTS_BROKEN[n], strict=True,
                                            raises=AssertionError))
    if n in INVARIANTS_BROKEN else n for n in sorted(SCENARIOS)])
def test_scenario_runs_with_every_invariant_holding(name, scenario_trace):
    tr = scenario_trace(name)  # simulated with check_invariants=True
    assert tr.steps and tr.end == tr.config.ticks(SCENARIOS[name].until_us)
    assert tr == SCENARIOS[name].run()  # deterministic


# ---- S1 ---------------------------------------------------------------------------------

def test_vcore_start_assigns_ptids_in_list_order_and_ipis_the_secondaries(run):
    r = run("S1")
    core = r.one("kvmppc_run_core", detail="ptids")
    assert core.ev.arg == A  # vcpu0 = A, run by the runner on thread 0
    # Joining and the loop test are one vc->lock section, so the first KVM_RUN starts the
    # vcore at once; the others join it late, in list order.
    joins = r.rows("kvmppc_run_vcpu", detail="late join")
    assert [j.ev.vcpu for j in joins] == [B, C, D]
    s = joins[-1].after
    assert ptids(s, (A, B, C, D)) == [0, 1, 2, 3]
    assert [t.vcpu for t in s.threads] == [A, B, C, D]
    assert s.vcore.n_woken == 3 and s.vcore.vcore_state == VCORE_RUNNING
    assert all(s.threads[i].cpu_start and s.threads[i].ipi for i in (1, 2, 3))
    assert not s.threads[0].ipi
    assert all(u.cpu == s.vcore.pcpu == 0 for u in s.vcpus)  # vcpu->cpu = vc->pcpu
    assert sorted(x.ev.arg for x in r.rows("ipi", thread=-1)) == [1, 2, 3]
    entries = r.rows("kvmppc_hv_entry")
    assert entries[0].ev.thread == 0
    assert sorted(x.ev.thread for x in entries) == [0, 1, 2, 3]
    assert [entry_count(x.after.vcore.entry_exit_count) for x in entries] == [1, 2, 3, 4]
    assert all(exit_count(x.before.vcore.entry_exit_count) == 0 for x in entries)
    assert entries[0].before.vcore.in_guest == 0 and entries[0].after.vcore.in_guest == 1
    # secondaries go into the guest only once the primary has switched the partition
    for x in r.rows("kvmppc_cede_reentry"):
        assert x.before.vcore.in_guest == 1
    f = r.final
    assert f.vcore.entry_exit_count == 4 and f.vcore.in_guest == 1
    assert [t.loc for t in f.threads] == ["guest"] * 4
    assert not r.rows("exit")


# ---- S2 ---------------------------------------------------------------------------------

def test_idle_vcpu_naps_in_the_guest_while_the_others_run(run):
    r = run("S2")
    cede = r.one("H_CEDE", vcpu=C)
    assert cede.after.vcpus[C].msr_ee and cede.after.vcpus[C].ceded == 1
    handled = r.one("kvmppc_h_cede", vcpu=C, detail="not prodded")
    assert handled.after.vcpus[C].trap == 0 and handled.after.vcpus[C].r3 == H_SUCCESS
    decide = r.one("kvmppc_h_cede", vcpu=C, detail="napping_threads |=")
    assert decide.before.vcore.napping_threads == 0 and decide.ev.arg == 0b0100
    assert entry_count(decide.before.vcore.entry_exit_count) == 4
    assert decide.after.threads[2].napping == 1
    recheck = r.one("kvmppc_h_cede", vcpu=C, detail="exit count still 0")
    nap = r.one("nap", vcpu=C)
    assert (cede.ev.time < handled.ev.time < decide.ev.time < recheck.ev.time
            < nap.ev.time)
    t2 = nap.after.threads[2]
    assert t2.loc == "nap" and t2.pece == LPCR_PECE0 | LPCR_PECE1 and t2.cpu_start
    # what nap loses was saved first: the registers' contents are in the vcpu
    assert nap.after.vcpus[C].gpr_saved == nap.before.threads[2].gprs != REGS_LOST
    assert nap.after.vcpus[C].fpr_saved == nap.before.threads[2].fprs != REGS_LOST
    assert t2.gprs == t2.fprs == REGS_LOST
    # no exit, no IPI, and the host is not involved once C has ceded
    assert not r.rows("exit") and not r.rows("hdec_poke")
    assert not [x for x in r.all if x.ev.thread == -1 and x.ev.time >= cede.ev.time]
    f = r.final
    assert [t.loc for t in f.threads] == ["guest", "guest", "nap", "guest"]
    assert f.vcpus[C].ceded == 1 and f.vcore.napping_threads == 0b0100


# ---- S3 ---------------------------------------------------------------------------------

def test_decrementer_wakes_the_napper_into_its_0x900_handler_alone(run):
    r = run("S3")
    wake = r.one("wake", vcpu=C)
    assert wake.ev.thread == 2 and wake.ev.detail == "decrementer"
    r.one("kvm_start_guest", vcpu=C, detail="kvm_end_cede")
    end = r.one("kvm_end_cede", vcpu=C, detail="napping_threads")
    assert "IPI acked" not in end.ev.detail  # not woken by an external interrupt
    t2 = end.after.threads[2]
    assert t2.gprs == end.after.vcpus[C].gpr_saved != REGS_LOST  # NV GPRs reloaded
    assert t2.fprs == end.after.vcpus[C].fpr_saved != REGS_LOST
    assert end.after.vcore.napping_threads == 0 and t2.napping == 0
    r.one("kvm_end_cede", vcpu=C, detail="no exit in progress")
    reentry = r.rows("kvmppc_cede_reentry", vcpu=C)[-1]
    assert reentry.ev.arg == 0x900
    u = reentry.after.vcpus[C]
    assert u.ceded == 0 and u.vector == 0x900 and not u.msr_ee and u.r3 == H_SUCCESS
    deliver = r.one("deliver", vcpu=C)
    assert deliver.ev.arg == 0x900 and deliver.ev.thread == 2
    assert "interrupt 0x900" in r.one("H_CEDE returns", vcpu=C).ev.detail
    assert r.tr.metrics.latency["decrementer"]["count"] == 1
    # nobody else is disturbed: no exit, no IPI, threads 0, 1, 3 stay in the guest
    assert not r.rows("exit") and not [x for x in r.rows("ipi") if x.ev.thread >= 0]
    for i in (0, 1, 3):
        states = [e.detail for e in r.tr.events if e.kind == "thread_state" and e.thread == i]
        assert states[-1] == "guest" and states.count("guest") == 1


# ---- S4 ---------------------------------------------------------------------------------

def test_last_thread_to_cede_exits_to_host(run):
    r = run("S4")
    last = r.one("kvmppc_h_cede", vcpu=A, detail="H_TOO_HARD")
    assert last.ev.arg == 0b1111 and last.before.vcore.napping_threads == 0b1110
    assert last.after.vcore.napping_threads == 0b1110  # A's bit is not stored
    u = last.after.vcpus[A]
    assert u.ceded == 1 and u.trap == 0 and u.r3 == H_SUCCESS
    assert last.after.threads[0].napping == 0
    ex = r.one("exit")
    assert (ex.ev.thread, ex.ev.vcpu, ex.ev.detail) == (0, A, "H_CEDE")
    first = r.first("hdec_soon", thread=0)
    assert first.before.vcore.entry_exit_count == 4  # old = 4: first, others entered
    assert [x.ev.thread for x in r.rows("hdec_poke")] == [0]
    assert sorted(x.ev.arg for x in r.rows("ipi", thread=0)) == [1, 2, 3]
    for i in (1, 2, 3):
        assert r.one("wake", thread=i).ev.detail == "external"
        assert "IPI acked" in r.one("kvm_end_cede", thread=i, detail="napping").ev.detail
        r.one("hcall_real_fallback", thread=i)
        assert r.one("hdec_soon", thread=i).before.vcore.entry_exit_count >= 0x100
    switch = r.one("switch_to_host")
    eec = switch.before.vcore.entry_exit_count
    assert exit_count(eec) == entry_count(eec) == 4
    assert switch.after.vcore.in_guest == 0
    assert switch.ev.time >= max(x.ev.time for x in r.rows("hdec_soon"))
    naps = r.rows("secondary_nap")
    assert [x.after.vcore.nap_count for x in naps] == [1, 2, 3]
    assert all(x.ev.time >= switch.ev.time for x in naps)
    done = r.one("kvmppc_run_core", detail="vcore exited")
    assert done.before.vcore.nap_count >= done.before.vcore.n_woken == 3
    # every vcpu has trap 0: no exit handling, all ceded -> DEC hrtimers armed
    assert not r.rows("kvmppc_handle_exit")
    assert sorted(x.ev.vcpu for x in r.rows("kvmppc_set_timer")) == [A, B, C, D]
    r.one("kvmppc_vcore_blocked", detail="all 4 runnable vcpus ceded")
    sleep = r.one("vcore_sleep")
    f = r.final
    assert f.vcore.vcore_state == VCORE_SLEEPING and f.vcore.wq == (sleep.ev.vcpu,)
    assert f.tasks[sleep.ev.vcpu].loc == "kvmppc_vcore_blocked.schedule"
    assert all(u.ceded == 1 and u.timer_running for u in f.vcpus)
    assert [t.loc for t in f.threads] == ["host"] + ["secondary_nap"] * 3


# ---- S5 ---------------------------------------------------------------------------------

def test_decrementer_wakes_the_sleeping_vcore_and_idle_vcpus_cede_again(run):
    r = run("S5")
    fire = r.one("kvmppc_decrementer_func", vcpu=B)
    kick = r.one("kvm_vcpu_kick", vcpu=B)
    assert "wake_up_interruptible(&vc->wq)" in kick.ev.detail
    assert kick.before.vcore.vcore_state == VCORE_SLEEPING
    r.one("host_wakeup", vcpu=B)
    r.one("vcore_wake")
    inject = r.one("kvmppc_core_deliver_interrupts", vcpu=B)
    assert inject.ev.arg == 0x900 and inject.after.vcpus[B].ceded == 0
    r.one("kvmppc_end_cede", vcpu=B)
    core = r.rows("kvmppc_run_core", detail="ptids")[-1]
    assert fire.ev.time < core.ev.time
    assert core.ev.arg == B and core.ev.vcpu == A  # vcpu0 = B, run by A's task
    s = core.after
    assert ptids(s, (B, A, C, D)) == [0, 1, 2, 3] and s.threads[0].vcpu == B
    started = {x.ev.vcpu for x in r.rows("kvmppc_start_thread", since=core.ev.time)}
    assert started == {A, B, C, D}
    assert not any(u.timer_running for u in s.vcpus)  # cancelled in kvmppc_start_thread
    assert all(s.vcpus[v].ceded for v in (A, C, D))
    assert r.one("deliver", vcpu=B).ev.thread == 0
    for v in (A, C, D):
        back = r.first("kvmppc_cede_reentry", vcpu=v, since=core.ev.time)
        assert back.ev.arg == 0 and back.after.vcpus[v].ceded == 0
        assert back.after.vcpus[v].r3 == H_SUCCESS
        assert "cede again" in r.first("H_CEDE returns", vcpu=v, since=core.ev.time).ev.detail
        decide = r.first("kvmppc_h_cede", vcpu=v, detail="napping_threads |=",
                         since=core.ev.time)
        assert decide.ev.arg.bit_count() < entry_count(decide.before.vcore.entry_exit_count)
        r.first("nap", vcpu=v, since=decide.ev.time)
    assert len(r.rows("exit")) == 1  # only S4's; B runs on, A, C, D nap
    f = r.final
    assert [f.threads[i].loc for i in range(4)] == ["guest", "nap", "nap", "nap"]


# ---- S12 --------------------------------------------------------------------------------

def test_cede_racing_an_exit_skips_nap_and_joins_it(run):
    r = run("S12")
    decide = r.one("kvmppc_h_cede", vcpu=C, detail="napping_threads |=")
    exiting = r.one("hdec_soon", vcpu=B)
    recheck = r.one("kvmppc_h_cede", vcpu=C, detail="exit already in progress")
    # the interleaving of S12: C's bit is set, then B counts itself out, then C re-reads
    assert decide.ev.time < exiting.ev.time < recheck.ev.time
    assert exiting.before.vcore.entry_exit_count == 4  # B is the first exiter
    assert r.one("exit").ev.detail == "MMIO" and r.one("exit").ev.vcpu == B
    assert recheck.before.threads[2].napping == 1
    assert not r.rows("nap", vcpu=C)
    clear = r.one("kvm_end_cede", vcpu=C, detail="napping_threads")
    assert clear.after.vcore.napping_threads == 0 and clear.after.threads[2].napping == 0
    r.one("hcall_real_fallback", vcpu=C)
    assert r.one("hdec_soon", vcpu=C).before.vcore.entry_exit_count >= 0x100  # not first
    # host: B's MMIO needs userspace; C (trap 0) stays ceded with its hrtimer armed
    assert [x.ev.vcpu for x in r.rows("kvmppc_handle_exit")] == [A, B, D]
    assert "KVM_EXIT_MMIO" in r.one("kvmppc_handle_exit", vcpu=B).ev.detail
    timer = r.one("kvmppc_set_timer", vcpu=C)
    assert timer.after.vcpus[C].ceded == 1 and timer.after.vcpus[C].timer_running
    assert timer.after.vcpus[C].trap == 0
    assert r.one("kvmppc_remove_runnable", vcpu=B).after.vcpus[B].state == \
        KVMPPC_VCPU_BUSY_IN_HOST


# ---- S15 --------------------------------------------------------------------------------

def test_single_vcpu_cede_exits_without_poke_or_ipis_and_the_vcore_sleeps(run):
    r = run("S15")
    too_hard = r.one("kvmppc_h_cede", vcpu=A, detail="H_TOO_HARD")
    assert too_hard.ev.arg == 0b1
    assert entry_count(too_hard.before.vcore.entry_exit_count) == 1
    assert r.one("exit").ev.detail == "H_CEDE"
    assert r.first("hdec_soon").before.vcore.entry_exit_count == 1  # old = 1
    assert not r.rows("hdec_poke") and not r.rows("ipi")
    timer = r.one("kvmppc_set_timer", vcpu=A)
    assert timer.after.vcpus[A].timer_running
    sleep = r.one("vcore_sleep")
    fire = r.one("kvmppc_decrementer_func", vcpu=A)
    deliver = r.one("deliver", vcpu=A)
    assert timer.ev.time < sleep.ev.time < fire.ev.time < deliver.ev.time
    assert deliver.ev.arg == 0x900


def test_single_vcpu_cede_costs_the_same_as_before_the_commit():
    sc = scenario("S15")
    real = sc.run().metrics
    host = _simulate(sc.config.replace(policy="host"), sc.workload, until=sc.until_us).metrics
    assert real.exits_by_reason == host.exits_by_reason == {"H_CEDE": 1}
    assert real.vcore_sleeps == host.vcore_sleeps == 1 and real.naps == host.naps == 0


# ---- S17 --------------------------------------------------------------------------------

def test_restart_with_one_ceded_vcpu_starts_both_and_the_ceded_one_naps(run):
    r = run("S17")
    core = r.rows("kvmppc_run_core", detail="ptids")[-1]
    assert core.after.vcore.runnable == (B, A)  # A came back from userspace last
    assert core.before.vcpus[B].ceded and not core.before.vcpus[A].ceded
    assert core.ev.arg == A and ptids(core.after, (A, B)) == [0, 1]
    assert core.after.vcore.n_woken == 1
    t = core.ev.time
    r.first("kvm_start_guest", vcpu=B, detail="secondary started", since=t)
    back = r.first("kvmppc_cede_reentry", vcpu=B, since=t)
    assert back.ev.arg == 0 and back.after.vcpus[B].ceded == 0
    assert "cede again" in r.first("H_CEDE returns", vcpu=B, since=t).ev.detail
    decide = r.first("kvmppc_h_cede", vcpu=B, detail="napping_threads |=", since=t)
    assert decide.ev.arg == 0b10
    assert entry_count(decide.before.vcore.entry_exit_count) == 2
    r.first("nap", vcpu=B, since=decide.ev.time)
    assert r.final.threads[1].loc == "nap" and r.final.threads[0].loc == "guest"


def test_two_ceded_vcpus_sleep_instead_of_running_the_core():
    cfg = Config(threads_per_core=2, vcpus=2)
    r = Run(_simulate(cfg, Workload(((Idle(500),), (Idle(600),))), until=100,
                      check_invariants=True))
    done = r.rows("kvmppc_run_core", detail="vcore exited")[-1]
    assert all(u.ceded for u in done.after.vcpus)
    assert not r.rows("kvmppc_run_core", detail="ptids", since=done.ev.time + 1)
    r.one("vcore_sleep")
    assert r.final.vcore.vcore_state == VCORE_SLEEPING


# ---- S22 --------------------------------------------------------------------------------

def test_precommit_cede_takes_the_whole_core_out_twice(run):
    r = run("S22")
    cede = r.one("H_CEDE", vcpu=C)
    assert "not in hcall_real_table" in cede.ev.detail
    first, second = r.rows("exit")
    assert (first.ev.thread, first.ev.vcpu, first.ev.detail) == (2, C, "H_CEDE")
    assert first.ev.arg == 0xC00
    assert [x.ev.thread for x in r.rows("hdec_poke")] == [2, 0]
    assert not [x for x in r.rows("ipi") if x.ev.thread >= 0]  # nobody naps
    restart = r.rows("kvmppc_run_core", detail="ptids")[1]
    hdec = [x for x in r.rows("kvmppc_interrupt", since=first.ev.time)
            if x.ev.time < restart.ev.time]
    assert sorted(x.ev.thread for x in hdec) == [0, 1, 3]
    assert all(x.ev.arg == 0x980 for x in hdec)
    handled = r.one("kvmppc_handle_exit", vcpu=C)
    assert "H_CEDE handled in the host" in handled.ev.detail
    assert handled.after.vcpus[C].ceded == 1
    assert r.first("kvmppc_set_timer", vcpu=C).after.vcpus[C].timer_running
    assert ptids(restart.after, (A, B, D)) == [0, 1, 2]
    assert C not in {x.ev.vcpu for x in r.rows("kvmppc_start_thread", since=restart.ev.time)
                     if x.ev.time < second.ev.time}
    kick = r.one("kvm_vcpu_kick", vcpu=C)
    assert "IPI to thread 0" in kick.ev.detail and kick.ev.time < second.ev.time
    assert (second.ev.thread, second.ev.detail) == (0, "external")
    assert r.tr.metrics.exits_by_reason == {"H_CEDE": 1, "external (decrementer kick)": 1}
    deliver = r.one("deliver", vcpu=C)
    assert deliver.ev.arg == 0x900 and deliver.ev.time > second.ev.time
    assert r.tr.metrics.lost_guest_us > 0


def test_precommit_counterpart_of_s3_needs_no_exit_after_the_commit(scenario_trace):
    assert scenario_trace("S3").metrics.whole_core_exits == 0
    assert scenario_trace("S22").metrics.whole_core_exits == 2


# ---- the named extras -------------------------------------------------------------------

def test_late_joiner_starts_at_once_on_the_next_thread(run):
    r = run("late-join")
    join = r.one("kvmppc_run_vcpu", vcpu=D, detail="late join")
    assert join.before.vcpus[D].state == 0 and join.before.vcore.vcore_state == VCORE_RUNNING
    assert exit_count(join.before.vcore.entry_exit_count) == 0
    assert join.after.vcpus[D].ptid == 3 == join.after.vcore.n_runnable - 1
    assert (join.before.vcore.n_woken, join.after.vcore.n_woken) == (2, 3)
    assert join.after.threads[3].ipi and join.after.threads[3].vcpu == D
    entry = r.one("kvmppc_hv_entry", thread=3)
    assert entry.before.vcore.napping_threads == 0b0100  # C naps meanwhile
    assert entry_count(entry.after.vcore.entry_exit_count) == 4
    assert not r.rows("exit") and r.final.threads[3].loc == "guest"


def test_mmio_exit_takes_the_core_out_and_n_busy_holds_the_vcore(run):
    r = run("mmio")
    ex = r.one("exit")
    assert (ex.ev.thread, ex.ev.vcpu, ex.ev.detail) == (1, B, "MMIO")
    assert [x.ev.arg for x in r.rows("ipi", thread=1)] == [2]  # C napped
    assert "KVM_EXIT_MMIO" in r.one("kvmppc_handle_exit", vcpu=B).ev.detail
    gone = r.one("kvmppc_remove_runnable", vcpu=B)
    assert gone.after.vcore.n_busy == 1
    wait = r.first("kvmppc_wait_for_exec", detail="n_busy = 1")
    back = r.first("kvmppc_run_vcpu", vcpu=B, detail="RUNNABLE", since=gone.ev.time)
    assert back.after.vcore.n_busy == 0 and back.after.vcpus[B].state == KVMPPC_VCPU_RUNNABLE
    restart = r.rows("kvmppc_run_core", detail="ptids")[-1]
    assert wait.ev.time < back.ev.time <= restart.ev.time
    emulation = r.tr.config.costs.mmio_emulation
    assert restart.ev.time - ex.ev.time >= emulation
    assert r.final.threads[0].loc == "guest"


def test_h_prod_of_a_napping_vcpu_makes_its_cede_return(run):
    r = run("h-prod")
    call = r.one("H_PROD", vcpu=A)
    assert call.ev.arg == C
    assert r.one("exit").ev.detail == "H_PROD"
    hcall = r.one("kvmppc_pseries_do_hcall", vcpu=A)
    assert "target ceded: kick it" in hcall.ev.detail and hcall.after.vcpus[C].prodded == 1
    r.one("kvmppc_run_vcpu", vcpu=C, detail="prodded")
    core = r.rows("kvmppc_run_core", detail="ptids")[-1]
    assert not core.after.vcpus[C].ceded
    prodded = r.one("kvm_cede_prodded", vcpu=C)
    assert prodded.after.vcpus[C].prodded == 0 and prodded.after.vcpus[C].ceded == 0
    assert "prodded" in r.rows("H_CEDE returns", vcpu=C)[-1].ev.detail
    assert r.first("guest_run", vcpu=C, since=prodded.ev.time)


def test_remote_prod_kicks_thread_zero_and_the_whole_core_exits(run):
    r = run("remote-prod")
    kick = r.one("kvm_vcpu_kick", vcpu=C)
    assert "IPI to thread 0" in kick.ev.detail and kick.before.vcpus[C].ceded
    assert kick.after.threads[0].ipi
    ex = r.one("exit")
    assert (ex.ev.thread, ex.ev.detail) == (0, "external")
    assert r.tr.metrics.exits_by_reason == {"external (H_PROD kick)": 1}
    r.one("kvm_cede_prodded", vcpu=C)
    assert r.tr.metrics.host_ipis == 1


def test_remote_prod_wakes_a_sleeping_vcore_only_with_the_8464c884_fix():
    cfg = Config.linux("4.10", threads_per_core=2, vcpus=2)
    wl = Workload(((Idle(5000),), (Idle(None),)), (RemoteProd(60.0, 1),))
    fixed = Run(_simulate(cfg, wl, until=200, check_invariants=True))
    kick = fixed.one("kvm_vcpu_kick", vcpu=B)
    assert kick.before.vcore.vcore_state == VCORE_SLEEPING
    assert "wake_up_interruptible" in kick.ev.detail
    fixed.one("kvm_cede_prodded", vcpu=B)
    buggy = Run(_simulate(cfg.replace(changes={"04f995a5"}), wl, until=200,
                          check_invariants=True))
    assert not buggy.rows("kvm_vcpu_kick") and not buggy.rows("kvm_cede_prodded")
    assert buggy.final.vcpus[B].prodded == 1
    assert buggy.final.vcore.vcore_state == VCORE_SLEEPING


def test_signals_wait_for_the_running_vcore_and_exit_with_kvm_exit_intr(run):
    r = run("signal")
    woken = r.one("kvmppc_wait_for_exec", vcpu=B, detail="woken")
    assert woken.after.threads[1].loc == "guest"  # B keeps running in the guest ...
    kick = r.one("ipi", thread=-1, vcpu=A, detail="(signal)")
    assert kick.ev.arg == 0 and "(signal)" in kick.ev.detail
    # ... while its task waits, uninterruptibly, for the running vcore to finish
    assert kick.before.tasks[B].loc == "kvmppc_run_vcpu.out"
    assert kick.before.threads[1].loc == "guest"
    assert kick.before.tasks[A].loc == "kvmppc_run_core"  # A's task runs the vcore
    ex = r.one("exit")
    assert ex.ev.thread == 0 and woken.ev.time < kick.ev.time <= ex.ev.time
    for v in (A, B):
        out = r.one("kvmppc_vcpu_run", vcpu=v, detail="KVM_EXIT_INTR")
        assert out.ev.time > ex.ev.time
        assert r.first("kvmppc_run_vcpu", vcpu=v, since=out.ev.time)
    assert r.tr.metrics.exits_by_reason == {"external (signal kick)": 1}


def test_vcpu_rejoining_a_sleeping_vcore_waits_for_the_next_kick_in_3_4():
    # 3.4's kvmppc_run_vcpu starts only STOPPED vcpus at once and does not wake vc->wq:
    # B, back from userspace after a signal, waits until A's timer wakes the runner.
    cfg = Config(threads_per_core=2, vcpus=2)
    wl = Workload(((Idle(400),), (Idle(None),)), (Signal(60.0, B),))
    r = Run(_simulate(cfg, wl, until=600, check_invariants=True))
    back = r.first("kvmppc_run_vcpu", vcpu=B, since=r.one("signal").ev.time)
    assert back.after.vcore.vcore_state == VCORE_SLEEPING and not back.after.vcpus[B].ceded
    wait = r.first("kvmppc_wait_for_exec", vcpu=B, since=back.ev.time)
    fire = r.one("kvmppc_decrementer_func", vcpu=A)
    restart = r.rows("kvmppc_run_core", detail="ptids")[-1]
    assert wait.ev.time < fire.ev.time < restart.ev.time
    assert restart.ev.time - back.ev.time > cfg.ticks(300)


def test_ppc970_cede_always_goes_to_the_host(run):
    r = run("ppc970")
    cedes = r.rows("kvmppc_h_cede", detail="PPC970")
    assert len(cedes) == len(r.rows("H_CEDE")) == 2
    assert all(x.after.vcore.napping_threads == 0 and x.after.vcpus[A].trap == 0
               and x.after.vcpus[A].r3 == H_SUCCESS for x in cedes)
    assert not r.rows("nap")
    assert r.tr.metrics.exits_by_reason == {"H_CEDE": 2}
    inject = r.one("kvmppc_core_deliver_interrupts", vcpu=A)
    assert inject.ev.arg == 0x900
    assert r.tr.metrics.vcore_sleeps == 2


def test_primary_woken_by_a_host_kick_keeps_the_ipi_and_takes_the_core_out(run):
    r = run("primary-wake")
    nap = r.first("nap", vcpu=A)
    assert nap.ev.thread == 0 and nap.after.vcore.napping_threads == 0b01
    kick = r.one("kvm_vcpu_kick", vcpu=A)
    assert "IPI to thread 0" in kick.ev.detail
    assert r.one("wake", thread=0).ev.detail == "external"
    end = r.one("kvm_end_cede", thread=0, detail="napping_threads")
    assert "IPI acked" not in end.ev.detail and end.after.threads[0].ipi
    back = r.first("kvmppc_cede_reentry", thread=0, since=end.ev.time)
    assert back.ev.arg == 0x500 and back.after.threads[0].ipi
    out = r.first("kvmppc_interrupt", thread=0, since=back.ev.time)
    assert out.ev.arg == 0x500 and out.before.threads[0].loc == "guest"
    ex = r.first("exit")
    assert (ex.ev.thread, ex.ev.detail) == (0, "external") and ex.ev.time >= out.ev.time
    assert r.tr.metrics.exits_by_reason["external (KVM_INTERRUPT kick)"] == 1
    assert not r.first("switch_to_host").after.threads[0].ipi  # the host took it


def test_external_behind_a_host_injected_interrupt_is_taken_through_lpcr_mer(run):
    r = run("mediated-external")
    injected = r.one("kvmppc_core_deliver_interrupts", vcpu=C)
    raised = r.one("KVM_INTERRUPT", vcpu=C)
    core = r.rows("kvmppc_run_core", detail="ptids", since=injected.ev.time)[0]
    assert core.after.vcpus[C].ptid != 0 and core.ev.time < raised.ev.time
    r.one("secondary_too_late", vcpu=C, detail="exit already in progress")
    reentry = r.rows("kvmppc_cede_reentry", vcpu=C)[-1]
    assert reentry.before.vcpus[C].vector == 0x900 and not reentry.before.vcpus[C].msr_ee
    assert reentry.after.threads[reentry.ev.thread].mer  # LPCR_MER for the external
    mediated = r.one("deliver", vcpu=C, detail="LPCR_MER")
    assert mediated.ev.arg == 0x500
    handled = r.rows("guest_interrupt", vcpu=C)
    assert [x.ev.arg for x in handled][-2:] == [0x900, 0x500]
    assert r.tr.metrics.undelivered == 0
