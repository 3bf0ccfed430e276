"""The interleaving explorer: properties, counterexamples, budgets, symmetry, the CLI."""

from __future__ import annotations

import argparse
import itertools
import json
from collections import deque

import pytest

from kvmcede import ABLATIONS, BUGS, CHANGES, INVARIANTS, Config, Model, Trace, Workload
from kvmcede.explorer import (
    LIVENESS,
    PROPERTIES,
    SETUPS,
    ExploreResult,
    add_cli_arguments,
    cli_main,
    default_workload,
    explore,
    permute_state,
    permute_step,
    setup,
    symmetry_classes,
)
from kvmcede.guest import GUEST_STEPS, Busy, Idle, Mmio, Prod
from kvmcede.invariants import check_step

# Each ready-made exploration is run once and shared by the tests below.
_RESULTS: dict[str, ExploreResult] = {}


def _setup_result(name: str) -> ExploreResult:
    if name not in _RESULTS:
        cfg, wl, kw = setup(name)
        _RESULTS[name] = explore(cfg, wl, progress=False, **kw)
    return _RESULTS[name]


BROKEN = [name for name in SETUPS if name != "protocol"]


# ---- properties -------------------------------------------------------------------------------

def test_properties_are_the_invariants_plus_the_liveness_properties():
    assert set(PROPERTIES) == set(INVARIANTS) | set(LIVENESS)
    assert {"core_can_leave", "interrupt_delivered", "prod_not_lost",
            "no_napper_after_exit"} <= set(PROPERTIES)
    assert all(isinstance(text, str) and text for text in PROPERTIES.values())


def test_every_ablation_and_bug_has_a_setup():
    assert set(SETUPS) == {"protocol"} | set(ABLATIONS) | set(BUGS)


@pytest.mark.parametrize("name", BROKEN)
def test_each_ablation_and_bug_breaks_its_named_property(name):
    r = _setup_result(name)
    expected = SETUPS[name][1]
    assert not r.ok and r.finished
    assert expected in r.violations, r.format()
    v = r.violations[expected]
    assert v.kind == ("liveness" if expected in LIVENESS else "invariant")
    assert v.depth == len(v.trace.steps) > 0


def test_no_ipi_on_exit_leaves_the_core_unable_to_leave_with_a_napper():
    v = _setup_result("no_ipi_on_exit").violations["core_can_leave"]
    s = v.state
    assert "from here no sequence" in v.message
    # The napper is (or is about to be) napping in H_CEDE with no IPI, the exit started.
    assert s.vcore.entry_exit_count >= 0x100
    assert any(t.napping and not t.ipi for t in s.threads)


def test_hprod_wakes_caller_leaves_a_prodded_vcpu_of_a_sleeping_vcore_asleep():
    v = _setup_result("hprod_wakes_caller").violations["prod_not_lost"]
    assert v.state.vcpus[0].prodded and v.state.vcpus[0].ceded
    # From the stuck state, whatever the hypervisor does, it ends with the vcore asleep
    # on vc->wq and the prodded vcpu still ceded.
    m = Model(*setup("hprod_wakes_caller")[:2])
    seen = {v.state}
    q = deque([v.state])
    ends = []
    while q:
        s = q.popleft()
        steps = m.enabled(s, environment=False)
        if not steps:
            ends.append(s)
        for st in steps:
            t, _ = m.apply(s, st)
            if t not in seen:
                seen.add(t)
                q.append(t)
    assert ends and all(s.tasks[0].loc == "kvmppc_vcore_blocked.schedule"
                        and s.vcpus[0].prodded and s.vcpus[0].ceded for s in ends)


def test_the_historical_fixes_remove_the_bug_counterexamples():
    # The same explorations with the bug switched off hold.
    for name in BUGS:
        cfg, wl, kw = setup(name)
        r = explore(cfg.replace(changes=frozenset(CHANGES)), wl, progress=False, **kw)
        assert r.ok, (name, r.verdict())


def test_the_real_protocol_setup_holds():
    r = _setup_result("protocol")
    assert r.ok and r.finished and not r.violations and r.violation is None
    assert r.properties == tuple(PROPERTIES)
    assert r.liveness_checked


@pytest.mark.parametrize("threads, vcpus, policy", [
    (4, 2, "host"), (2, 2, "realmode"), (2, 2, "host"), (1, 1, "realmode"), (1, 1, "host")])
def test_the_real_protocol_holds_on_small_cores_for_both_policies(threads, vcpus, policy):
    # With prods in the budget, the shipped bugs lose them (see the next test): this is
    # the protocol with both fixes in.
    cfg = Config.linux("4.10", threads_per_core=threads, vcpus=vcpus, policy=policy)
    budget = ({"interrupts": 1, "prods": 1, "host_ticks": 1, "signals": 1} if vcpus == 1
              else {"interrupts": 0, "dec_expiries": 1})
    r = explore(cfg, default_workload(cfg), progress=False, **budget)
    assert r.ok, r.format()


def test_linux_3_4_as_shipped_loses_a_prod_to_a_lone_idle_vcpu():
    cfg = Config(threads_per_core=1, vcpus=1)
    r = explore(cfg, default_workload(cfg), progress=False, interrupts=0, prods=1)
    assert not r.ok and "prod_not_lost" in r.violations


def test_an_interrupt_to_an_idle_pair_is_always_delivered():
    cfg = Config(threads_per_core=4, vcpus=2)
    r = explore(cfg, Workload(((), ())), interrupts=1, progress=False,
                properties=["interrupt_delivered", "core_can_leave"])
    assert r.ok and r.properties == ("core_can_leave", "interrupt_delivered")


def test_policy_host_holds_for_three_idle_vcpus_on_smt4():
    cfg = Config(threads_per_core=4, vcpus=3, policy="host")
    r = explore(cfg, Workload(((),) * 3), interrupts=0, progress=False)
    assert r.ok and r.symmetry == ((0, 1, 2),)


@pytest.mark.parametrize("vcpus", [3, 4])
def test_the_real_protocol_has_no_violation_in_the_first_states_of_larger_vcores(vcpus):
    # A complete exploration of 3 or 4 vcpus takes minutes (see benchmarks/); breadth
    # first, the first states are every interleaving up to some depth.
    cfg = Config(threads_per_core=4, vcpus=vcpus)
    r = explore(cfg, default_workload(cfg), interrupts=0, dec_expiries=1, max_states=6000,
                progress=False)
    assert not r.finished and not r.violations and r.depth >= 10


# ---- store-buffer memory --------------------------------------------------------------------

def test_store_buffer_without_the_cede_sync_loses_a_prod():
    v = _setup_result("no_cede_sync").violations["prod_not_lost"]
    kinds = [st.actor for _, st in v.trace.steps]
    assert "drain" in kinds  # the race needs a store still sitting in a buffer


def test_store_buffer_with_the_cede_sync_holds(monkeypatch):
    # Full barriers between the napping_threads / entry_exit_count updates and the loads
    # that follow them, so that only the cede/prod pair is in question: with 3.4's
    # lwsyncs there, a napper can miss the exit (tests/test_memory_model.py).
    from kvmcede import realmode
    monkeypatch.setitem(realmode.BARRIERS, "kvmppc_h_cede", "sync")
    monkeypatch.setitem(realmode.BARRIERS, "hdec_soon", "sync")
    cfg, wl, kw = setup("no_cede_sync")
    r = explore(cfg.replace(ablations=frozenset()), wl, progress=False,
                properties=["prod_not_lost"], **kw)
    assert r.ok and r.finished


def test_without_the_cede_sync_sequential_consistency_still_holds():
    # Under sequential consistency the sync orders nothing, so the ablation would change
    # nothing: the configuration is refused, and the same exploration holds.
    cfg, wl, kw = setup("no_cede_sync")
    with pytest.raises(ValueError, match="no_cede_sync"):
        cfg.replace(memory="sc")
    r = explore(cfg.replace(memory="sc", ablations=frozenset()), wl, progress=False,
                properties=["prod_not_lost"], **kw)
    assert r.ok


# ---- budgets, results ------------------------------------------------------------------------

def test_max_states_stops_cleanly_with_a_not_finished_verdict():
    cfg, wl, kw = setup("protocol")
    r = explore(cfg, wl, max_states=500, progress=False, **kw)
    assert not r.finished and not r.ok and r.states == 500
    assert r.verdict().startswith("not finished: 500 states explored")
    assert not r.liveness_checked
    assert "not finished" in r.format() and "not finished" in repr(r)


def test_stop_at_first_stops_at_the_first_violation():
    cfg, wl, kw = setup("no_ipi_on_exit")
    r = explore(cfg, wl, stop_at_first=True, progress=False, **kw)
    full = _setup_result("no_ipi_on_exit")
    assert not r.finished and r.violation is not None and r.states < full.states
    assert r.violation.depth == full.violation.depth


def test_dec_expiries_default_to_one_per_timed_idle():
    cfg = Config(threads_per_core=2, vcpus=2)
    wl = Workload(((Idle(5.0), Busy(1.0), Idle(3.0)), (Idle(None),)))
    assert explore(cfg, wl, interrupts=0, max_states=1, progress=False).budget == \
        (0, 2, 0, 0, 0)


def test_properties_restrict_what_is_checked():
    assert set(_setup_result("prodded_branch").violations) >= {"nap_is_flagged",
                                                               "prod_not_lost"}
    cfg, wl, kw = setup("prodded_branch")
    r = explore(cfg, wl, properties=["prod_not_lost", "nap_is_flagged"], progress=False,
                **kw)
    assert set(r.violations) == {"nap_is_flagged", "prod_not_lost"}
    assert r.properties == ("nap_is_flagged", "prod_not_lost")
    cfg, wl, kw = setup("hprod_wakes_caller")
    r = explore(cfg, wl, properties="nv_registers_preserved", progress=False, **kw)
    assert r.ok and r.properties == ("nv_registers_preserved",)


@pytest.mark.parametrize("kwargs, field", [
    ({"properties": ["no_such_property"]}, "properties"),
    ({"interrupts": -1}, "interrupts"),
    ({"prods": 1.5}, "prods"),
    ({"max_states": 0}, "max_states"),
])
def test_bad_arguments_raise_value_errors_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        explore(Config(threads_per_core=1, vcpus=1), progress=False, **kwargs)


def test_unknown_setup_names_the_allowed_ones():
    with pytest.raises(ValueError, match="no_ipi_on_exit"):
        setup("no_such_setup")


def test_result_reprs_show_the_verdict():
    r = _setup_result("no_exit_recheck")
    assert repr(r).startswith("ExploreResult(VIOLATED: core_can_leave")
    md = r._repr_markdown_()
    assert "VIOLATED" in md and "kvmppc_h_cede" in md
    assert "Violation(name='core_can_leave'" in repr(r.violation)


def test_default_workload_exercises_cede_wake_and_exit():
    cfg = Config(threads_per_core=4, vcpus=3)
    wl = default_workload(cfg)
    assert len(wl.programs) == 3
    ops = {type(op) for prog in wl.programs for op in prog}
    assert {Busy, Idle, Mmio} <= ops
    # One timed run of it naps, wakes on the DEC, exits with IPIs to nappers and sleeps.
    from kvmcede import simulate
    kinds = {ev.kind for ev in simulate(cfg, wl, until=200.0).events}
    assert {"nap", "wake", "exit", "ipi", "vcore_sleep"} <= kinds


# ---- counterexamples ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", BROKEN)
def test_counterexamples_replay_to_the_violating_state(name):
    for v in _setup_result(name).violations.values():
        tr = v.trace
        assert tr.source == "explore" and tr.meta["property"] == v.name
        assert tr.budget == _setup_result(name).budget
        assert [t for t, _ in tr.steps] == list(range(len(tr.steps)))
        assert tr.state_after(len(tr.steps)) == v.state
        assert all(0 <= ev.time < len(tr.steps) for ev in tr.events)
        assert Trace.from_json(tr.to_json()) == tr


def _plain_bfs_depth(cfg, wl, kw, bad) -> int:
    """Depth of the shallowest state reached by a transition that ``bad`` flags, by an
    independent plain breadth-first search (no symmetry, no liveness)."""
    m = Model(cfg, wl)
    b = (kw["interrupts"], kw["dec_expiries"], kw["prods"], kw["host_ticks"], kw["signals"])
    s0 = m.initial(budget=b)
    seen = {s0}
    q = deque([(s0, 0)])
    while q:
        s, d = q.popleft()
        for st in m.enabled(s):
            t, _ = m.apply(s, st)
            if bad(m, s, st, t):
                return d + 1
            if t not in seen:
                seen.add(t)
                q.append((t, d + 1))
    raise AssertionError("no violation found")


def test_invariant_counterexamples_are_shortest():
    cfg, wl, kw = setup("no_ipi_on_exit")
    name = "first_exiter_ipis_nappers"
    depth = _plain_bfs_depth(cfg, wl, kw, lambda m, s, st, t: any(
        n == name for n, _ in check_step(m, s, st, t)))
    assert _setup_result("no_ipi_on_exit").violations[name].depth == depth


def test_liveness_counterexamples_are_shortest():
    # Every state one step shorter on the way to the stuck state can still reach the
    # goal (a shorter stuck state would have been reported instead).
    r = _setup_result("no_exit_recheck")
    v = r.violations["core_can_leave"]
    prefix = v.trace.steps[:-1]
    cfg, wl, kw = setup("no_exit_recheck")
    shorter = Trace(cfg, wl, [], prefix, len(prefix), source="explore", budget=r.budget)
    s = shorter.state_after(len(prefix))
    m = Model(cfg, wl)
    # From the state before the last step, the hypervisor alone (no guest code, no
    # environment event) can still bring the core out: search for it.
    seen = {s}
    q = deque([s])
    left = False
    while q and not left:
        x = q.popleft()
        for st in m.enabled(x, environment=False):
            if st.actor == "thread" and st.name in GUEST_STEPS:
                continue
            y, _ = m.apply(x, st)
            if y.vcore.vcore_state != 1:
                left = True
                break
            if y not in seen:
                seen.add(y)
                q.append(y)
    assert left


def test_liveness_counterexamples_show_how_the_hang_continues():
    r = _setup_result("no_exit_recheck")
    v = r.violations["core_can_leave"]
    assert v.continuation_end == "dead end" and v.continuation
    m = Model(*setup("no_exit_recheck")[:2])
    s = v.state
    for st in v.continuation:
        assert st in m.enabled(s, environment=False)
        s, _ = m.apply(s, st)
        assert s.vcore.vcore_state == 1  # still VCORE_RUNNING: the core never leaves
    # The end: vcpu 1 naps in H_CEDE un-IPI'd, the primary waits for it forever.
    assert any(t.loc == "nap" and not t.ipi for t in s.threads)
    assert s.threads[0].loc == "hdec_soon.wait_exits"
    assert "then, for example (ends in a dead end)" in v.format()


def test_format_lists_the_counterexample_steps_with_kernel_names():
    text = _setup_result("no_ipi_on_exit").format()
    assert text.startswith("VIOLATED: ")
    for word in ("kvmppc_run_core", "kvmppc_h_cede: napping_threads", "hdec_soon",
                 "NOT sending IPIs", "=> "):
        assert word in text
    short = _setup_result("no_ipi_on_exit").format(events=False)
    assert "NOT sending IPIs" not in short and "hdec_soon" in short


# ---- symmetry ----------------------------------------------------------------------------------

def test_symmetry_classes_are_equal_programs_that_name_no_vcpu():
    assert symmetry_classes(Workload(((Busy(1.0),), (), (), ()))) == ((1, 2, 3),)
    assert symmetry_classes(Workload(((Prod(2),), (), (), ()))) == ((1, 3),)
    assert symmetry_classes(Workload(((Busy(1.0),), (Mmio(),)))) == ()


def test_the_model_commutes_with_renumbering_interchangeable_vcpus():
    # apply(permute(s), permute(step)) == permute(apply(s, step)) on every transition of
    # a small graph: what makes one state per orbit enough.
    cfg = Config(threads_per_core=4, vcpus=3)
    wl = Workload(((Busy(1.0),), (), ()))
    m = Model(cfg, wl)
    perms = [(0, 2, 1)]
    s0 = m.initial(budget=(1, 0, 1, 0, 0))
    seen = {s0}
    q = deque([s0])
    checked = 0
    while q and checked < 4000:
        s = q.popleft()
        for st in m.enabled(s):
            t, _ = m.apply(s, st)
            for p in perms:
                ps = permute_state(s, p)
                pst = permute_step(st, p)
                assert pst in m.enabled(ps)
                assert m.apply(ps, pst)[0] == permute_state(t, p)
                checked += 1
            if t not in seen:
                seen.add(t)
                q.append(t)


def test_symmetry_reduction_gives_the_same_verdicts_with_fewer_states():
    cfg = Config(threads_per_core=2, vcpus=2)
    wl = Workload(((), ()))
    full = explore(cfg, wl, interrupts=0, symmetry=False, progress=False)
    reduced = explore(cfg, wl, interrupts=0, symmetry=True, progress=False)
    assert full.ok and reduced.ok
    assert reduced.symmetry == ((0, 1),) and full.symmetry == ()
    assert reduced.states < full.states
    # The same first dead end (breadth-first level) with and without the reduction.
    cfg, wl, kw = setup("no_prodded_check")
    a, b = (explore(cfg, wl, symmetry=sym, stop_at_first=True, progress=False,
                    properties=["prod_not_lost"], **kw) for sym in (True, False))
    assert a.symmetry and not b.symmetry
    assert set(a.violations) == set(b.violations) == {"prod_not_lost"}
    assert a.violations["prod_not_lost"].depth == b.violations["prod_not_lost"].depth


def test_renumbered_counterexamples_replay_from_the_real_initial_state():
    # The prod lands on either vcpu: whichever representative was stored, the replayed
    # counterexample is a concrete run of the real machine.
    v = _setup_result("no_prodded_check").violations["prod_not_lost"]
    s = v.trace.state_after(len(v.trace.steps))
    assert s == v.state
    assert any(u.prodded and u.ceded for u in s.vcpus)


# ---- progress ------------------------------------------------------------------------------------

def test_progress_false_is_silent_and_a_callable_gets_counts(capsys):
    calls = []
    cfg, wl, kw = setup("no_exit_recheck")
    r = explore(cfg, wl, progress=lambda *a: calls.append(a), **kw)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    assert calls and calls[-1] == (r.states, 0, r.transitions)
    for states, queue, transitions in calls:
        assert 0 < states <= transitions + 1 and queue >= 0


# ---- command line ------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kvmcede explore")
    add_cli_arguments(p)
    return p


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli_main(_parser().parse_args(["--no-progress", *argv]))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_prints_the_counterexample_and_exits_1(capsys, tmp_path):
    path = tmp_path / "cex.json"
    rc, out, _ = _cli(capsys, "no_exit_recheck", "--json", str(path))
    assert rc == 1
    assert out.startswith("VIOLATED: core_can_leave")
    assert "thread 1: H_CEDE" in out and "hdec_soon: HDEC poke, IPI nappers" in out
    tr = Trace.from_json(path.read_text())
    assert tr.source == "explore" and tr.meta["property"] == "core_can_leave"


def test_cli_exits_0_when_everything_holds(capsys):
    rc, out, _ = _cli(capsys, "--vcpus", "1", "--smt", "1", "--interrupts", "1")
    assert rc == 0 and out.startswith(f"holds: all {len(PROPERTIES)} properties")


def test_cli_exits_3_when_not_finished(capsys):
    rc, out, _ = _cli(capsys, "protocol", "--max-states", "100")
    assert rc == 3 and out.startswith("not finished: 100 states explored")


def test_cli_builds_a_configuration_from_options(capsys, tmp_path):
    rc, out, _ = _cli(capsys, "--vcpus", "1", "--smt", "1", "--change", "04f995a5",
                      "--workload", "idle", "--interrupts", "0", "--prods", "1",
                      "--property", "prod_not_lost", "--no-events",
                      "--perfetto", str(tmp_path / "p.json"))
    assert rc == 1 and out.startswith("VIOLATED: prod_not_lost")
    assert "(bugs hprod_wakes_caller)" in out and "remote H_PRODs 1" in out
    assert "[host, vcpu 0]" not in out  # --no-events
    assert "traceEvents" in json.loads((tmp_path / "p.json").read_text())
    rc, out, _ = _cli(capsys, "--vcpus", "1", "--smt", "1", "--ablation", "no_cede_sync",
                      "--memory", "store_buffer", "--max-states", "20")
    assert rc == 3 and "ablations no_cede_sync" in out and "memory store_buffer" in out


def test_cli_reports_a_bad_configuration_and_exits_2(capsys):
    rc, out, err = _cli(capsys, "--vcpus", "3", "--smt", "2")
    assert rc == 2 and out == "" and "vcpus must be" in err


def test_cli_lists_setups_and_properties(capsys):
    rc, out, _ = _cli(capsys, "--list")
    assert rc == 0
    for name in itertools.chain(SETUPS, PROPERTIES):
        assert name in out


# ---- partial-order reduction ------------------------------------------------------------------

def _reachable(cfg, wl, budget, limit):
    m = Model(cfg, wl)
    s0 = m.initial(budget=budget)
    seen = {s0}
    q = deque([s0])
    while q and len(seen) < limit:
        s = q.popleft()
        for st in m.enabled(s, True):
            t, _ = m.apply(s, st)
            if t not in seen:
                seen.add(t)
                q.append(t)
        yield m, s


_REDUCTION_CASES = [
    (Config(threads_per_core=4, vcpus=2), None, (1, 1, 0, 1, 1)),
    (Config(threads_per_core=4, vcpus=3), Workload(((),) * 3), (1, 0, 0, 0, 0)),
    (Config(threads_per_core=2, vcpus=2), Workload(((Busy(1.0), Mmio()), ())),
     (0, 0, 0, 0, 0)),
    (Config(threads_per_core=2, vcpus=2, policy="host"), None, (1, 1, 0, 0, 1)),
    (Config(threads_per_core=2, vcpus=2, ablations={"no_exit_recheck"}),
     Workload(((Busy(1.0), Mmio()), ())), (0, 0, 0, 0, 0)),
]


@pytest.mark.parametrize("cfg, wl, budget", _REDUCTION_CASES)
def test_private_steps_commute_with_every_other_step_and_hide_no_violation(cfg, wl, budget):
    # What the reduction's soundness argument needs, checked one step deep in every state
    # it is used in: the private step a and any other actor's step b run in either order
    # to the same state and stay enabled; a leaves the liveness triggers alone, repairs no
    # invariant broken by b, and moves its thread off the private locations.
    from kvmcede.explorer import PRIVATE_ORDER, PRIVATE_STEPS, _trigger_mask, private_step
    from kvmcede.invariants import check_state
    wl = wl or default_workload(cfg)
    prods = any(isinstance(op, Prod) for p in wl.programs for op in p)
    used = 0
    for m, s in _reachable(cfg, wl, budget, 6000):
        en = m.enabled(s, True)
        a = private_step(s, en, prods_possible=prods, config=cfg)
        if a is None:
            continue
        used += 1
        sa, _ = m.apply(s, a)
        before, after = s.threads[a.index], sa.threads[a.index]
        assert before.loc in PRIVATE_STEPS
        # No cycle of private steps: forward along PRIVATE_ORDER, or back to
        # secondary_nap with the start disabled until the host sets IPI and cpu_start.
        assert (PRIVATE_ORDER[after.loc] > PRIVATE_ORDER[before.loc]
                or (after.loc == "secondary_nap" and not (after.ipi and after.cpu_start)))
        assert _trigger_mask(sa) == _trigger_mask(s)
        for b in en:
            if (b.actor, b.index) == ("thread", a.index):
                continue
            sb, _ = m.apply(s, b)
            assert a in m.enabled(sb, True), (a, b)
            assert b in m.enabled(sa, True), (a, b)
            sab, _ = m.apply(sa, b)
            sba, _ = m.apply(sb, a)
            assert sab == sba, (a, b)
            broken = {name for name, _ in check_state(m, sb)}
            assert broken <= {name for name, _ in check_state(m, sba)}, (a, b)
            # ... nor a broken step invariant: b taken after a breaks what it broke.
            broken = {name for name, _ in check_step(m, s, b, sb)}
            assert broken <= {name for name, _ in check_step(m, sa, b, sab)}, (a, b)
    assert used > 100


def test_the_commutation_checks_cover_every_private_step():
    # The cases above reach every location of PRIVATE_STEPS with its step private.
    from kvmcede.explorer import PRIVATE_STEPS, private_step
    used = set()
    for cfg, wl, budget in _REDUCTION_CASES:
        wl = wl or default_workload(cfg)
        prods = any(isinstance(op, Prod) for p in wl.programs for op in p)
        for m, s in _reachable(cfg, wl, budget, 6000):
            a = private_step(s, m.enabled(s, True), prods_possible=prods, config=cfg)
            if a is not None:
                used.add(s.threads[a.index].loc)
    assert used == set(PRIVATE_STEPS)


_REDUCTION_RUNS = [(name, *setup(name)) for name in SETUPS] + [
    ("idle pair SMT2, interrupt and host tick", Config(threads_per_core=2, vcpus=2),
     Workload(((), ())), {"interrupts": 1, "host_ticks": 1}),
    ("3 idle vcpus", Config(threads_per_core=4, vcpus=3), Workload(((),) * 3),
     {"interrupts": 0, "dec_expiries": 0}),
    ("2 vcpus SMT2, policy host", Config(threads_per_core=2, vcpus=2, policy="host"), None,
     {"interrupts": 1}),
]


@pytest.mark.parametrize("label, cfg, wl, kw", _REDUCTION_RUNS, ids=[r[0] for r in _REDUCTION_RUNS])
def test_reduction_gives_the_same_verdicts_with_no_more_states(label, cfg, wl, kw):
    full = explore(cfg, wl, progress=False, **kw)
    red = explore(cfg, wl, progress=False, reduction=True, **kw)
    assert red.finished and full.finished
    assert red.ok == full.ok and set(red.violations) == set(full.violations)
    assert red.states <= full.states
    assert red.reduction == (cfg.memory == "sc") and not full.reduction
    for name, v in red.violations.items():  # real runs, at most a few steps longer
        assert full.violations[name].depth <= v.depth <= full.violations[name].depth + 3
        assert v.trace.state_after(v.depth) == v.state


def test_reduction_shrinks_three_idle_vcpus():
    cfg = Config(threads_per_core=4, vcpus=3)
    r = explore(cfg, Workload(((),) * 3), interrupts=0, dec_expiries=0, progress=False,
                reduction=True)
    assert r.ok and r.states < 6_000
    assert "private steps not interleaved" in r.verdict()
    assert "partial-order reduction" in r.describe()


def test_cli_reduce_flag(capsys):
    p = argparse.ArgumentParser()
    add_cli_arguments(p)
    code = cli_main(p.parse_args(["--vcpus", "2", "--smt", "2", "--workload", "idle",
                                  "--interrupts", "0", "--reduce"]))
    assert code == 0
    assert "private steps not interleaved" in capsys.readouterr().out


# ---- dead values ------------------------------------------------------------------------------

_DEAD_VALUE_CASES = [  # (config, workload, budget, states to visit)
    (Config(threads_per_core=2, vcpus=2), None, (1, 1, 0, 1, 1), 20000),
    (Config(threads_per_core=4, vcpus=3), None, (1, 1, 0, 1, 1), 20000),
    (Config(threads_per_core=4, vcpus=3), Workload(((),) * 3), (0, 0, 1, 0, 0), 20000),
    (Config(threads_per_core=2, vcpus=2, policy="host"), None, (1, 1, 0, 0, 1), 20000),
    (Config(threads_per_core=2, vcpus=2), Workload(((Prod(1), Idle(5.0)), (Idle(None),))),
     (0, 1, 0, 0, 1), 20000),
    (Config(threads_per_core=2, vcpus=2, memory="store_buffer"), Workload(((), ())),
     (0, 0, 1, 0, 0), 20000),
    (Config(threads_per_core=2, vcpus=2, changes={"8464c884"}), Workload(((), ())),
     (0, 0, 1, 0, 0), 20000),
    (Config(threads_per_core=1, vcpus=1, changes={"04f995a5"}), Workload(((),)),
     (0, 0, 1, 0, 0), 20000),
]


@pytest.mark.parametrize("cfg, wl, budget, limit", _DEAD_VALUE_CASES)
def test_clearing_dead_values_is_a_bisimulation(cfg, wl, budget, limit):
    # The explorer stores states with their dead values cleared.  That is exact when a
    # state and its cleared form behave alike: the same steps enabled, successors that
    # again agree once cleared, the same invariant verdicts and liveness triggers.
    from kvmcede.explorer import _DeadValues, _trigger_mask
    wl = wl or default_workload(cfg)
    dead = _DeadValues(wl)
    changed = 0
    for m, s in _reachable(cfg, wl, budget, limit):
        d = dead(s)
        if d == s:
            continue
        changed += 1
        assert dead(d) == d
        en = m.enabled(s, True)
        assert m.enabled(d, True) == en
        assert _trigger_mask(d) == _trigger_mask(s)
        for st in en:
            t, _ = m.apply(s, st)
            u, _ = m.apply(d, st)
            assert dead(t) == dead(u), st
            assert ({n for n, _ in check_step(m, s, st, t)}
                    == {n for n, _ in check_step(m, d, st, u)}), st
    assert changed > 10


# ---- moving secondary threads ---------------------------------------------------------------

_THREAD_MOVE_CASES = [  # (config, workload, budget, states to visit, vcpu restarts seen)
    (Config(threads_per_core=4, vcpus=3), None, (1, 1, 0, 1, 1), 6000, False),
    (Config(threads_per_core=4, vcpus=4), Workload(((),) * 4), (0, 0, 1, 0, 0), 6000, False),
    (Config(threads_per_core=4, vcpus=3),
     Workload(((Busy(1.0), Mmio()), (Idle(5.0),), (Prod(0),))), (0, 1, 0, 0, 0), 6000, True),
    (Config(threads_per_core=4, vcpus=3, policy="host"), None, (1, 1, 0, 0, 1), 6000, False),
    (Config(threads_per_core=4, vcpus=3, ablations={"no_exit_recheck"}),
     Workload(((Busy(1.0), Mmio()), (), ())), (0, 0, 0, 0, 0), 6000, True),
    (Config(threads_per_core=4, vcpus=3), Workload(((),) * 3), (1, 0, 0, 0, 0), 6000, True),
]


@pytest.mark.parametrize("cfg, wl, budget, limit, restarts", _THREAD_MOVE_CASES)
def test_moving_secondary_threads_is_a_bisimulation(cfg, wl, budget, limit, restarts):
    # States that differ by which secondary thread (among threads 1 .. L-1, L the number
    # of runnable vcpus) holds what behave alike: the moved state enables the moved
    # steps, and each leads to a state with the same representative; invariants agree.
    # (kvmppc_run_core does not commute with a move, it places vcpus by list order: but
    # the secondaries are all offline and alike then, so the results are one orbit.)
    from kvmcede.explorer import _Canon, _DeadValues
    wl = wl or default_workload(cfg)
    dead = _DeadValues(wl)
    canon = _Canon(cfg.vcpus, symmetry_classes(wl), cfg.threads_per_core, True)
    ident = tuple(range(cfg.vcpus))
    moved = started = 0
    for m, s in _reachable(cfg, wl, budget, limit):
        last = max(1, min(len(s.vcore.runnable), cfg.threads_per_core))
        en = m.enabled(s, True)
        for order in itertools.permutations(range(1, last)):
            move = (0, *order, *range(last, cfg.threads_per_core))
            if move == tuple(range(cfg.threads_per_core)):
                continue
            moved += 1
            g = permute_state(s, ident, move)
            assert set(m.enabled(g, True)) == {permute_step(st, ident, move) for st in en}
            assert canon(dead(g))[0] == canon(dead(s))[0]
            for st in en:
                t, _ = m.apply(s, st)
                gst = permute_step(st, ident, move)
                u, _ = m.apply(g, gst)
                assert canon(dead(u))[0] == canon(dead(t))[0], (st, move)
                started += s.threads[0].loc == "host" and t.threads[0].loc != "host"
                assert ({n for n, _ in check_step(m, s, st, t)}
                        == {n for n, _ in check_step(m, g, gst, u)}), (st, move)
    assert moved > 100
    assert bool(started) == restarts  # kvmppc_run_core starting the vcore with L >= 3


# ---- remembered thread steps -------------------------------------------------------------------

@pytest.mark.parametrize("cfg, wl, budget", [
    (Config(threads_per_core=4, vcpus=3), None, (1, 1, 0, 1, 1)),
    (Config(threads_per_core=2, vcpus=2, policy="host"), None, (1, 1, 1, 0, 1)),
    (Config(threads_per_core=4, vcpus=3, ablations={"no_nv_save"}),
     Workload(((Busy(1.0), Idle(5.0), Busy(1.0)), (Prod(0),), ())), (0, 1, 1, 0, 0)),
    (Config(threads_per_core=2, vcpus=2, changes={"8464c884"}), Workload(((), ())),
     (0, 0, 1, 0, 0)),
])
def test_remembered_thread_steps_are_the_models_steps(cfg, wl, budget):
    # The explorer assembles a thread step's result from what the same step did to the
    # same thread, vcpu and vcore before; it must always be what Model.apply gives.
    from kvmcede.explorer import _ThreadSteps
    wl = wl or default_workload(cfg)
    m = Model(cfg, wl)
    step_to = _ThreadSteps(m)
    for _, s in _reachable(cfg, wl, budget, 8000):
        for st in m.enabled(s, True):
            assert step_to(s, st) == m.apply(s, st)[0], st
    reused = sum(1 for v in step_to.memo.values() if v is not None)
    assert reused > 50


def test_thread_symmetry_keeps_verdicts_and_counterexample_lengths():
    # Three vcpus on SMT4, so the secondaries can be moved: the same violations at the
    # same (shortest) depths with and without symmetry, and the counterexample found
    # through moved states replays from the real initial state to the state reported.
    cfg = Config(threads_per_core=4, vcpus=3, ablations={"no_exit_recheck"})
    wl = Workload(((Busy(1.0), Mmio()), (), ()))
    sym, plain = (explore(cfg, wl, interrupts=0, symmetry=s, progress=False)
                  for s in (True, False))
    assert sym.thread_symmetry and not plain.thread_symmetry
    assert sym.finished and plain.finished and sym.states < plain.states / 2
    assert ({n: v.depth for n, v in sym.violations.items()}
            == {n: v.depth for n, v in plain.violations.items()} == {"core_can_leave": 12})
    v = sym.violations["core_can_leave"]
    assert v.trace.state_after(v.depth) == v.state
    assert "symmetry over secondary threads" in sym.describe()


def test_explore_is_called_like_simulate_and_the_module_is_kvmcede_explorer():
    import importlib

    import kvmcede
    assert callable(kvmcede.explore) and kvmcede.explore is explore
    mod = importlib.import_module("kvmcede.explorer")
    assert mod.explore is kvmcede.explore and kvmcede.SETUPS is mod.SETUPS
    for name in ("explore", "ExploreResult", "Violation", "setup", "SETUPS", "PROPERTIES",
                 "LIVENESS"):
        assert name in kvmcede.__all__
    r = kvmcede.explore(Config(threads_per_core=1, vcpus=1), progress=False)
    assert r.ok


# ---- limits, interruption, validation -----------------------------------------------------------

def test_max_seconds_stops_cleanly_and_says_so():
    cfg = Config(threads_per_core=4, vcpus=3)
    r = explore(cfg, max_seconds=0.05, progress=False)
    assert not r.finished and not r.ok and r.stopped == "max_seconds"
    assert r.states > 0 and r.seconds < 5
    assert "stopped by the time limit (max_seconds = 0.05 s)" in r.verdict()
    assert "liveness properties not checked" in r.format()


def test_max_states_result_says_the_state_limit_stopped_it():
    cfg, wl, kw = setup("protocol")
    r = explore(cfg, wl, max_states=500, progress=False, **kw)
    assert r.stopped == "max_states" and "state limit (max_states = 500)" in r.verdict()
    assert _setup_result("protocol").stopped is None


def test_keyboard_interrupt_returns_the_counts_reached():
    calls = []

    def progress(states, queue, transitions):
        calls.append(states)
        if len(calls) == 1:
            raise KeyboardInterrupt

    r = explore(Config(threads_per_core=4, vcpus=3), progress=progress)
    assert r.stopped == "interrupted" and not r.finished and not r.ok
    assert r.states > 0 and r.transitions > 0
    assert r.verdict().startswith(f"not finished: {r.states:,} states explored, "
                                  "interrupted (Ctrl-C)")


@pytest.mark.parametrize("kwargs, words", [
    ({"max_states": 5_000_001}, ["max_states", "5,000,000"]),
    ({"max_states": True}, ["max_states"]),
    ({"max_seconds": 0}, ["max_seconds", "3600"]),
    ({"max_seconds": float("nan")}, ["max_seconds"]),
    ({"max_seconds": float("inf")}, ["max_seconds"]),
    ({"max_seconds": 1e9}, ["max_seconds"]),
    ({"max_seconds": True}, ["max_seconds"]),
    ({"interrupts": 101}, ["interrupts", "100"]),
    ({"properties": 3}, ["properties"]),
    ({"progress": "yes"}, ["progress"]),
    ({"reduction": "yes"}, ["reduction"]),
])
def test_limits_and_switches_are_validated_up_front(kwargs, words):
    with pytest.raises(ValueError) as e:
        explore(Config(threads_per_core=1, vcpus=1), **kwargs)
    for w in words:
        assert w in str(e.value)


def test_config_and_workload_must_be_what_they_say():
    with pytest.raises(ValueError, match="config must be a kvmcede.Config"):
        explore(None)
    with pytest.raises(ValueError, match="workload must be a kvmcede.Workload"):
        explore(Config(threads_per_core=1, vcpus=1), "idle")


def test_timed_events_and_start_times_are_refused_not_ignored():
    from kvmcede import Interrupt, RemoteProd
    cfg = Config(threads_per_core=2, vcpus=2)
    progs = default_workload(cfg).programs
    with pytest.raises(ValueError) as e:
        explore(cfg, Workload(progs, events=(Interrupt(5.0, 0), RemoteProd(7.0, 1))))
    for w in ("workload.events", "interrupts=", "prods=", "signals="):
        assert w in str(e.value)
    with pytest.raises(ValueError, match="workload.start_us"):
        explore(cfg, Workload(progs, start_us=(0.0, 3.0)))
    assert explore(cfg, Workload(progs, start_us=(0.0, 0.0)), interrupts=0,
                   progress=False).ok


def test_cli_max_seconds_is_exit_3_and_labelled(capsys):
    rc, out, _ = _cli(capsys, "--vcpus", "3", "--max-seconds", "0.05")
    assert rc == 3 and "stopped by the time limit" in out


@pytest.mark.parametrize("argv, flag", [
    (["--max-states", "0"], "--max-states"),
    (["--max-states", "6000000"], "--max-states"),
    (["--max-seconds", "inf"], "--max-seconds"),
    (["--max-seconds", "nan"], "--max-seconds"),
    (["--max-seconds", "3601"], "--max-seconds"),
    (["--interrupts", "101"], "--interrupts"),
    (["--prods", "-1"], "--prods"),
])
def test_cli_rejects_out_of_range_numbers_naming_the_flag(capsys, argv, flag):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(argv)
    assert e.value.code == 2 and flag in capsys.readouterr().err


def test_cli_setup_option_is_the_setup_argument(capsys):
    rc, out, _ = _cli(capsys, "--setup", "no_ipi_on_exit", "--no-events")
    assert rc == 1 and out.startswith("VIOLATED")
    rc, _, err = _cli(capsys, "protocol", "--setup", "no_ipi_on_exit")
    assert rc == 2 and "disagree" in err


def test_cli_interrupted_is_exit_130_with_the_counts(capsys, monkeypatch):
    import kvmcede.explorer as mod
    real = mod.explore

    def interrupted(*a, **kw):
        calls = []

        def progress(*_):  # Ctrl-C once, during the search
            calls.append(1)
            if len(calls) == 1:
                raise KeyboardInterrupt
        kw["progress"] = progress
        return real(*a, **kw)

    monkeypatch.setattr(mod, "explore", interrupted)
    rc, out, err = _cli(capsys, "--vcpus", "3")
    assert rc == 130 and "interrupted (Ctrl-C)" in out
    assert "interrupted after" in err and "states" in err
