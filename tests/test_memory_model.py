"""Store-buffer memory: the lwarx/stwcx. updates of napping_threads and entry_exit_count,
the lwsync/sync question of reference sections 2 (step 9) and 4, and what the explorer
answers for Linux 3.4's barriers."""

from __future__ import annotations

import pytest

from kvmcede import Config, Model, Workload, realmode, simulate
from kvmcede.edit import Edit
from kvmcede.explorer import default_workload, explore, setup
from kvmcede.guest import Busy, Idle, Mmio
from kvmcede.realmode import thread_step
from kvmcede.scenarios import scenario
from kvmcede.state import Store, Thread, vcore_view

SB = Config.linux("4.10", threads_per_core=2, vcpus=2, memory="store_buffer")
#: vcpu 0 computes, then takes an MMIO exit; every other vcpu idles with no timer.
EXIT_WITH_NAPPERS = {n: Workload(((Busy(1.0), Mmio()),) + ((),) * (n - 1)) for n in (2, 3)}
NO_EVENTS = {"interrupts": 0, "dec_expiries": 0}


def _state(cfg: Config, threads: tuple[Thread, ...], stores: tuple[Store, ...] = ()):
    m = Model(cfg, Workload(((),) * cfg.vcpus))
    return m, m.initial()._replace(threads=threads, stores=stores)


# ---- the memory model -------------------------------------------------------------------------

def test_a_buffered_vcore_store_is_seen_by_its_writer_only_until_it_drains():
    m, s = _state(SB, (Thread("guest", vcpu=0), Thread("guest", vcpu=1)))
    e = Edit(m, s, 0)
    e.store(1, "napping_threads", -1, 0b10, buffered=True)
    e.store(1, "napping_threads", -1, 0b00, buffered=True)  # FIFO: newest forwarded
    assert e.load(1, "napping_threads", -1) == 0b00 and e.load(0, "napping_threads", -1) == 0
    t = e.freeze()
    assert t.vcore.napping_threads == 0
    assert vcore_view(t, "napping_threads") == 0 and vcore_view(t, "napping_threads", 0) == 0
    e = Edit(m, t, 0)
    from kvmcede.interrupts import drain
    drain(e, 1)  # the oldest store first
    assert e.vcore.napping_threads == 0b10 and len(e.stores) == 1
    e.drain_all(1)
    assert e.vcore.napping_threads == 0 and e.stores == ()


def test_under_sequential_consistency_stores_act_at_once():
    cfg = SB.replace(memory="sc")
    m, s = _state(cfg, (Thread("guest", vcpu=0), Thread("guest", vcpu=1)))
    e = Edit(m, s, 0)
    e.store(1, "entry_exit_count", -1, 0x102, buffered=True)
    assert e.stores == () and e.vcore.entry_exit_count == 0x102
    tr = scenario("S12").run()
    assert not any(ev.kind == "store visible" for ev in tr.events)


def test_an_update_of_a_word_waits_for_another_threads_buffered_update_of_it():
    # lwarx/stwcx. succeeds only on the newest value: thread 0's clear of its napping bit
    # (kvm_end_cede) waits while thread 1's napping_threads update is still buffered, and
    # an exit increment waits for a buffered exit increment.
    buffered = (Store(1, "napping_threads", -1, 0b11),)
    for loc in ("kvm_end_cede.clear", "kvmppc_h_cede.napping_threads"):
        m, s = _state(SB, (Thread(loc, vcpu=0, napping=1), Thread("guest", vcpu=1)), buffered)
        assert thread_step(s, 0, m) is None
        assert thread_step(s._replace(stores=()), 0, m) is not None
    m, s = _state(SB, (Thread("hdec_soon", vcpu=0), Thread("hdec_soon.wait_in_guest", vcpu=1)),
                  (Store(1, "entry_exit_count", -1, 0x102),))
    assert thread_step(s, 0, m) is None
    # ... but not for a store to the other word, nor for its own.
    s = s._replace(stores=(Store(1, "napping_threads", -1, 0), Store(0, "entry_exit_count",
                                                                   -1, 0x102)))
    assert thread_step(s, 0, m) == "hdec_soon"


def test_the_nap_and_the_way_out_wait_for_the_threads_own_stores():
    # nap's ptesync; secondary_nap's lwsync before nap_count++ (and its nap); the primary's
    # partition switch.
    own = (Store(1, "entry_exit_count", -1, 0x202),)
    m, s = _state(SB, (Thread("hdec_soon.wait_exits", vcpu=0),
                       Thread("hdec_soon.wait_in_guest", vcpu=1)), own)
    s = s._replace(vcore=s.vcore._replace(entry_exit_count=0x202, in_guest=0))
    assert thread_step(s, 1, m) is None and thread_step(s, 0, m) is not None
    assert thread_step(s._replace(stores=()), 1, m) is not None


# ---- the barrier question ----------------------------------------------------------------------

@pytest.mark.parametrize("vcpus", [2, 3])
def test_with_linux_3_4s_lwsyncs_a_napper_can_miss_the_exit(vcpus):
    # Reference section 2 step 9 and section 4: 3.4 has lwsync after each side's stwcx.,
    # which does not order that store before the load of the other side's word.  The
    # cede re-reads entry_exit_count (0) while its napping bit is still buffered, the
    # exiter loads napping_threads without it: nobody IPIs the napper, the primary waits.
    cfg = Config.linux("4.10", threads_per_core=4, vcpus=vcpus, memory="store_buffer")
    r = explore(cfg, EXIT_WITH_NAPPERS[vcpus], progress=False, stop_at_first=vcpus == 3,
                properties=["core_can_leave"], **NO_EVENTS)
    v = r.violations["core_can_leave"]
    steps = [st.name for _, st in v.trace.steps]
    poke = steps.index("hdec_soon: HDEC poke, IPI nappers")
    recheck = steps.index("kvmppc_h_cede: re-check entry_exit_count")
    # Store buffering: the napper's re-read found exit count 0 although the exit
    # increment was already made (still in the exiter's buffer), or the exiter's load of
    # napping_threads missed the napping bit (still in the napper's buffer), or both.
    stale_exit = vcore_view(v.trace.state_after(recheck + 1), "entry_exit_count") >= 0x100
    stale_bit = any(st.field == "napping_threads" and st.vcpu == -1
                    for st in v.trace.state_after(poke + 1).stores)
    assert stale_exit or stale_bit
    assert any(ev.detail == "exit count still 0: go to nap" for ev in v.trace.kernel_events())
    if vcpus == 2:
        assert v.depth == 17 and r.finished
    # Under sequential consistency the same program is fine.
    sc = explore(cfg.replace(memory="sc"), EXIT_WITH_NAPPERS[vcpus], progress=False,
                 properties=["core_can_leave"], reduction=True, **NO_EVENTS)
    assert sc.ok


def test_linux_3_4_as_shipped_misses_the_exit_with_the_default_program():
    cfg, wl, kw = setup("protocol")
    r = explore(cfg.replace(memory="store_buffer"), wl, progress=False,
                properties=["core_can_leave"], **kw)
    assert not r.ok and r.violations["core_can_leave"].depth == 20


@pytest.mark.parametrize("cede, exit_, ok", [
    ("lwsync", "lwsync", False), ("sync", "lwsync", False), ("lwsync", "sync", False),
    ("sync", "sync", True)])
def test_only_a_sync_on_both_sides_closes_the_window(monkeypatch, cede, exit_, ok):
    # Store buffering: each side must see its own store visible before it loads the
    # other's word, or both can load the old values.
    monkeypatch.setitem(realmode.BARRIERS, "kvmppc_h_cede", cede)
    monkeypatch.setitem(realmode.BARRIERS, "hdec_soon", exit_)
    cfg = Config.linux("4.10", threads_per_core=4, vcpus=2, memory="store_buffer")
    r = explore(cfg, EXIT_WITH_NAPPERS[2], progress=False, **NO_EVENTS)
    assert r.finished and r.ok == ok, r.format(events=False)
    if not ok:
        assert set(r.violations) == {"core_can_leave"}


@pytest.mark.slow
def test_with_syncs_on_both_sides_three_vcpus_hold(monkeypatch):
    monkeypatch.setitem(realmode.BARRIERS, "kvmppc_h_cede", "sync")
    monkeypatch.setitem(realmode.BARRIERS, "hdec_soon", "sync")
    cfg = Config.linux("4.10", threads_per_core=4, vcpus=3, memory="store_buffer")
    r = explore(cfg, EXIT_WITH_NAPPERS[3], progress=False, **NO_EVENTS)
    assert r.ok and r.finished


def test_the_barriers_change_nothing_under_sequential_consistency(monkeypatch):
    cfg = Config.linux("4.10", threads_per_core=4, vcpus=2)
    before = explore(cfg, default_workload(cfg), progress=False, dec_expiries=1)
    monkeypatch.setitem(realmode.BARRIERS, "kvmppc_h_cede", "sync")
    monkeypatch.setitem(realmode.BARRIERS, "hdec_soon", "sync")
    after = explore(cfg, default_workload(cfg), progress=False, dec_expiries=1)
    assert before.ok and after.ok and before.states == after.states


# ---- the ablation -------------------------------------------------------------------------------

def test_weak_cede_barrier_buffers_the_napping_bit_even_under_sequential_consistency():
    cfg, wl, kw = setup("weak_cede_barrier")
    assert cfg.memory == "sc"
    r = explore(cfg, wl, progress=False, **kw)
    v = r.violations["core_can_leave"]
    assert any(st.actor == "drain" for st in v.continuation) or any(
        st.actor == "drain" for _, st in v.trace.steps)
    assert explore(cfg.replace(ablations=frozenset()), wl, progress=False, **kw).ok


def test_store_buffer_simulations_keep_every_invariant():
    for name in ("S4", "S12", "S17"):
        sc = scenario(name)
        cfg = sc.config.replace(memory="store_buffer")
        tr = simulate(cfg, sc.workload, until=sc.until_us, check_invariants=True)
        assert any(ev.kind == "store visible" and ev.vcpu == -1 for ev in tr.events)


def test_idle_vcpus_on_smt4_lose_no_exit_with_full_barriers(monkeypatch):
    monkeypatch.setitem(realmode.BARRIERS, "kvmppc_h_cede", "sync")
    monkeypatch.setitem(realmode.BARRIERS, "hdec_soon", "sync")
    cfg = Config.linux("4.10", threads_per_core=4, vcpus=2, memory="store_buffer")
    r = explore(cfg, Workload(((Busy(1.0), Idle(5.0), Mmio()), ())), progress=False,
                interrupts=1, dec_expiries=1)
    assert r.ok, r.format(events=False)
