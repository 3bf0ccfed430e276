"""Figures of kvmcede.plots, checked by what they contain (no browser, Agg canvas)."""

from __future__ import annotations

import io
import random

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from PIL import Image

from kvmcede import (
    Busy,
    Config,
    Idle,
    Interrupt,
    Model,
    Trace,
    Workload,
    plots,
    random_workload,
    simulate,
)

# The figures here are plain Figures rendered by Agg; pyplot (one test) must be headless.
matplotlib.use("Agg")

FOUR = Workload(((Busy(50),), (Idle(20),), (Idle(None),), (Idle(None),)),
                events=(Interrupt(30, 2),))


@pytest.fixture(scope="module")
def trace() -> Trace:
    """100 us: vcpu 0 busy, the others nap; an interrupt for vcpu 2 at 30 us makes the
    whole core exit (IPIs to the nappers); vcpu 0 finally cedes as the last one awake."""
    return simulate(Config(), FOUR, until=100)


@pytest.fixture(scope="module")
def long_trace() -> Trace:
    cfg = Config()
    wl = random_workload(cfg, 20_000, idle_fraction=0.5, idle_us=300, interrupt_rate=1000,
                         seed=3)
    return simulate(cfg, wl, until=20_000)


def walk_trace(config: Config, workload: Workload, n: int,
               budget=(1, 1, 0, 0, 0), seed: int = 1) -> Trace:
    """An explorer-style trace (time = step number, kernel events only): a random walk
    over the enabled steps, as the interleaving explorer's counterexamples are."""
    m = Model(config, workload)
    s = m.initial(budget)
    rng = random.Random(seed)
    steps, events = [], []
    for k in range(n):
        enabled = m.enabled(s)
        if not enabled:
            break
        st = rng.choice(enabled)
        s, evs = m.apply(s, st, k)
        steps.append((k, st))
        events.extend(evs)
    return Trace(config, workload, events, steps, end=len(steps), source="explore",
                 budget=budget)


def _collections(fig, prefix: str) -> list:
    return [c for c in fig.axes[0].collections if (c.get_gid() or "").startswith(prefix)]


def _expected_spans(tr: Trace, thread: int, a_us: float, b_us: float) -> int:
    """Spans of ``thread`` overlapping [a, b], counted from the thread_state events."""
    evs = [e for e in tr.events if e.kind == "thread_state" and e.thread == thread]
    n = 0
    for k, e in enumerate(evs):
        t0 = tr.us(e.time)
        t1 = tr.us(evs[k + 1].time) if k + 1 < len(evs) else tr.us(tr.end)
        if t1 > t0 and t1 > a_us and t0 < b_us:
            n += 1
    return n


# ---- timeline --------------------------------------------------------------------------------

def test_timeline_draws_one_bar_per_thread_activity_span(trace):
    fig = plots.timeline(trace)
    for i in range(4):
        bars = sum(len(c.get_paths()) for c in _collections(fig, f"spans|thread {i}"))
        assert bars == _expected_spans(trace, i, 0, 100), f"thread {i}"


def test_timeline_window_keeps_only_overlapping_spans(trace):
    fig = plots.timeline(trace, 20, 45)
    for i in range(4):
        bars = sum(len(c.get_paths()) for c in _collections(fig, f"spans|thread {i}"))
        assert bars == _expected_spans(trace, i, 20, 45)
    assert fig.axes[0].get_xlim() == (20, 45)


def test_redraw_timeline_replaces_the_window(trace):
    fig = plots.timeline(trace, 0, 50, legend=False)
    ax = fig.axes[0]
    plots.redraw_timeline(ax, trace, 50, 100, title="later")
    assert ax.get_xlim() == (50, 100) and ax.get_title(loc="left") == "later"
    for i in range(4):
        bars = sum(len(c.get_paths()) for c in _collections(fig, f"spans|thread {i}"))
        assert bars == _expected_spans(trace, i, 50, 100)
    with pytest.raises(ValueError, match="end must be greater"):
        plots.redraw_timeline(ax, trace, 10, 10)
    assert plots.step_position(trace, 0) == trace.us(trace.steps[0][0])
    with pytest.raises(ValueError, match="k must be"):
        plots.step_position(trace, -1)


def test_timeline_nap_spans_are_hatched_in_pale_blue(trace):
    fig = plots.timeline(trace)
    naps = _collections(fig, "spans|thread 1|nap")
    assert naps and naps[0].get_hatch() == "...."
    assert tuple(naps[0].get_facecolor()[0]) == to_rgba(plots.ACTIVITY_COLOURS["nap"])


def test_timeline_draws_an_arrow_per_ipi(trace):
    fig = plots.timeline(trace)
    n_thr = trace.config.threads_per_core
    exit_ipis = [e for e in trace.events if e.kind == "ipi" and e.thread >= 0]
    host_ipis = [e for e in trace.events if e.kind == "ipi" and e.thread < 0
                 and 0 <= e.arg < n_thr]
    assert exit_ipis and host_ipis
    (exit_lc,) = _collections(fig, "ipi|exit")
    (host_lc,) = _collections(fig, "ipi|host")
    assert len(exit_lc.get_segments()) == len(exit_ipis)
    assert len(host_lc.get_segments()) == len(host_ipis)
    # each exit-path arrow starts at its sender's row and ends on its target's row
    ticks = fig.axes[0].get_yticks()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    row_y = dict(zip(labels, ticks, strict=False))
    for seg, ev in zip(sorted(exit_lc.get_segments(), key=lambda s: (s[0][0], -s[1][1])),
                       sorted(exit_ipis, key=lambda e: (e.time, e.arg)), strict=False):
        assert abs(seg[0][1] - row_y[f"thread {ev.thread}"]) < 0.5
        assert abs(seg[1][1] - row_y[f"thread {ev.arg}"]) < 0.5
        assert seg[1][0] >= seg[0][0]  # received no earlier than sent


def test_timeline_ipi_arrows_only_in_window(trace):
    # the first whole-core exit (the interrupt at 30 us) and its IPIs are over by 50 us
    first = [e for e in trace.events if e.kind == "ipi" and e.thread >= 0
             and trace.us(e.time) < 50]
    fig = plots.timeline(trace, 0, 50)
    (lc,) = _collections(fig, "ipi|exit")
    assert len(lc.get_segments()) == len(first) == 3


def test_timeline_legend_names_activities_and_markers(trace):
    # the full key (legend="all"): every activity and marker under its own name
    fig = plots.timeline(trace, legend="all")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    for want in ("guest code: vcpu 0", "napping (H_CEDE)", "exiting the guest",
                 "offline, idle in the host (POWER7: secondary_nap)",
                 "host kernel (POWER7: thread 0, the runner)", "H_CEDE",
                 "IPI (exit path)", "IPI (from the host)", "HDEC poke / host tick",
                 "external raised", "delivered at 0x500", "delivered at 0x900"):
        assert want in labels
    assert "vcpu ceded in the host" not in labels  # no vcpu rows asked for


def test_timeline_default_legend_has_a_handful_of_grouped_entries(trace, long_trace):
    for tr, vcpus in ((trace, False), (trace, True), (long_trace, True)):
        fig = plots.timeline(tr, vcpus=vcpus)
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        full = [t.get_text() for t in
                plots.timeline(tr, vcpus=vcpus, legend="all").legends[0].get_texts()]
        assert len(labels) <= 8 < len(full)
        # the groups still name what they hold
        text = " ".join(labels)
        for word in ("guest code of vcpus 0", "napping (H_CEDE)", "exiting the guest",
                     "HDEC poke", "IPI"):
            assert word in text
    legend_fig = plots.timeline_legend(trace, vcpus=True)
    assert len(legend_fig.legends[0].get_texts()) <= 8


def test_timeline_labels_guest_bars_with_their_vcpu():
    # S5: vcpu 1 runs on thread 0 after 234 us (its ptid is not its number)
    from kvmcede.scenarios import scenario

    tr = scenario("S5").run()
    fig = plots.timeline(tr, 230, 250, vcpus=True)
    ax = fig.axes[0]
    row_y = dict(zip([t.get_text() for t in ax.get_yticklabels()], ax.get_yticks(),
                     strict=True))
    labels = [(t.get_text(), t.get_position()[1]) for t in ax.texts
              if t.get_gid() == "vcpu-label"]
    assert ("v1", row_y["thread 0"]) in labels
    # every label sits on a thread row, on a bar in its vcpu's colour
    assert all(y in [row_y[f"thread {i}"] for i in range(4)] for _, y in labels)


def test_timeline_marks_cedes_and_exit_reasons(trace):
    fig = plots.timeline(trace)
    hcede = [c for c in fig.axes[0].collections if c.get_gid() == "H_CEDE"]
    n_cede = sum(1 for e in trace.events if e.kind == "H_CEDE")
    assert len(hcede[0].get_offsets()) == n_cede
    exits = [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "exit-label"]
    assert exits == [f"exit: {e.detail}" for e in trace.events if e.kind == "exit"]


def test_timeline_marks_prods_on_the_host_row():
    from kvmcede import Prod, RemoteProd
    wl = Workload(((Busy(30), Prod(2), Busy(30)), (Busy(60),), (Idle(None),), (Idle(None),)),
                  events=(RemoteProd(45, 3),))
    tr = simulate(Config(), wl, until=80)
    fig = plots.timeline(tr)
    (marks,) = [c for c in fig.axes[0].collections if c.get_gid() == "H_PROD"]
    xs = sorted(x for x, _y in marks.get_offsets())
    # the remote prod at 45 us, then vcpu 0's H_PROD once the host handles it (after the
    # whole-core exit it caused)
    handled = next(tr.us(e.time) for e in tr.events if e.kind == "kvmppc_pseries_do_hcall")
    assert xs == pytest.approx([45, handled]) and handled > 45
    assert any("H_PROD" in t.get_text() for t in fig.legends[0].get_texts())
    full = plots.timeline(tr, legend="all")
    assert "H_PROD: prodded = 1" in [t.get_text() for t in full.legends[0].get_texts()]


def test_timeline_vcpu_rows_show_each_vcpu(trace):
    fig = plots.timeline(trace, vcpus=True)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["host side", "thread 0", "thread 1", "thread 2", "thread 3",
                      "vcpu 0", "vcpu 1", "vcpu 2", "vcpu 3"]
    assert _collections(fig, "spans|vcpu 3")


def test_timeline_highlights_a_step(trace):
    fig = plots.timeline(trace, highlight_step=40)
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_gid() == "highlight"]
    assert line.get_xdata()[0] == pytest.approx(trace.us(trace.steps[40][0]))


def test_timeline_aggregates_long_windows_with_bounded_artists(long_trace):
    fig = plots.timeline(long_trace)
    ax = fig.axes[0]
    bands = [im for im in ax.images if (im.get_gid() or "").startswith("band|")]
    assert len(bands) == 5  # host side + 4 threads
    assert not _collections(fig, "spans|")
    assert len(ax.get_children()) < 60
    note = [t.get_text() for t in ax.texts if t.get_gid() == "aggregate-note"]
    assert note and note[0].startswith("aggregated")
    assert "H_CEDE" in note[0]  # thousands of markers are counted, not drawn


def test_density_band_columns_add_up_to_the_time_split(long_trace):
    # A whole-trace band of thread 1: the share of each colour over all columns is the
    # share of time thread 1 spent in each activity.
    fig = plots.timeline(long_trace, aggregate=True)
    (band,) = [im for im in fig.axes[0].images if im.get_gid() == "band|thread 1"]
    img = band.get_array()
    nap = np.all(np.isclose(img, to_rgba(plots.ACTIVITY_COLOURS["nap"])), axis=-1).mean()
    evs = [e for e in long_trace.events if e.kind == "thread_state" and e.thread == 1]
    t_nap = sum((evs[k + 1].time if k + 1 < len(evs) else long_trace.end) - e.time
                for k, e in enumerate(evs) if e.detail == "nap")
    assert nap == pytest.approx(t_nap / long_trace.end, abs=0.03)


def test_timeline_short_window_of_long_trace_draws_bars(long_trace):
    fig = plots.timeline(long_trace, 5000, 5050)
    assert _collections(fig, "spans|thread 0")
    assert not fig.axes[0].images
    assert fig.axes[0].get_xlabel() == "time (µs)"
    assert plots.timeline(long_trace).axes[0].get_xlabel() == "time (ms)"


@pytest.mark.parametrize(("start", "end", "field"), [(50, 50, "end_us"), (60, 10, "end_us"),
                                                     (float("nan"), 10, "start_us")])
def test_timeline_rejects_bad_windows(trace, start, end, field):
    with pytest.raises(ValueError, match=field):
        plots.timeline(trace, start, end)


def test_timeline_rejects_a_step_outside_the_trace(trace):
    with pytest.raises(ValueError, match="highlight_step"):
        plots.timeline(trace, highlight_step=len(trace.steps))


def test_timeline_of_an_explorer_trace_counts_steps():
    cfg = Config(threads_per_core=2, vcpus=2, ablations={"no_nv_save"})
    wl = Workload(((Busy(5), Idle(5), Busy(5)), (Busy(5), Idle(5), Busy(5))))
    tr = walk_trace(cfg, wl, 60)
    fig = plots.timeline(tr, highlight_step=10)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "step"
    assert ax.get_title(loc="left").startswith("counterexample")
    # no thread_state events: the activities come from replaying the steps
    assert not any(e.kind == "thread_state" for e in tr.events)
    assert _collections(fig, "spans|thread 0") and _collections(fig, "spans|thread 1")
    (line,) = [ln for ln in ax.lines if ln.get_gid() == "highlight"]
    assert line.get_xdata()[0] == tr.steps[10][0]


def test_step_window_pages_hold_their_steps(long_trace):
    d_x = [long_trace.us(t) for t, _ in long_trace.steps]
    for k in (0, 59, 60, 1234, len(long_trace.steps) - 1):
        a, b = plots.step_window(long_trace, k, page_steps=60)
        assert a <= d_x[k] <= b
    with pytest.raises(ValueError, match="k must be"):
        plots.step_window(long_trace, len(long_trace.steps))


def test_figures_made_outside_a_kernel_leave_pyplot_alone(trace):
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    plots.timeline(trace)
    plots.comparison(trace, trace)
    assert plt.get_fignums() == before


def test_axes_free_figures_managed_by_pyplot_still_display(trace):
    # IPython's inline backend skips a pyplot figure without axes as "empty".
    import matplotlib.pyplot as plt
    fig = plt.figure()
    try:
        plots.state_view(trace.state_after(10), trace.config, fig=fig)
        assert fig.axes and not fig.axes[0].axison
    finally:
        plt.close(fig)
    plain = plots.state_view(trace.state_after(10), trace.config)
    assert not plain.axes  # a plain Figure needs nothing of the kind


def test_to_png_gives_a_png_of_the_figure_size(trace):
    fig = plots.timeline(trace)
    img = Image.open(io.BytesIO(plots.to_png(fig)))
    w, h = fig.get_size_inches() * fig.dpi
    assert img.format == "PNG" and img.size == (round(w), round(h))
    pixels = np.asarray(img)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # something was drawn


# ---- state view --------------------------------------------------------------------------------

def _step_index(tr: Trace, name: str, index: int | None = None) -> int:
    return next(k for k, (_t, st) in enumerate(tr.steps)
                if st.name == name and (index is None or st.index == index))


def test_state_view_shows_the_kernel_fields(trace):
    k = _step_index(trace, "kvmppc_h_cede: napping_threads", 3) + 1
    s = trace.state_after(k)
    strings = plots.figure_strings(plots.state_view(s, trace.config, workload=FOUR))
    vc = s.vcore
    assert "VCORE_RUNNING" in strings
    assert f"entry {vc.entry_exit_count & 0xff}" in strings
    assert f"exit {vc.entry_exit_count >> 8}" in strings
    assert f"{vc.napping_threads:#06b}" in strings and vc.napping_threads
    assert f"{vc.nap_count} / {vc.n_woken}" in strings
    for t in s.threads:
        assert t.loc in strings
    for u in s.vcpus:
        assert plots.pending_names(u.pending_exceptions) in strings
    for task in s.tasks:
        assert any(x.startswith(task.loc) for x in strings)
    for header in ("napping", "ceded", "prodded", "ptid", "MSR[EE]", "DEC", "dec_timer",
                   "pending_exceptions", "napping_threads", "nap_count / n_woken",
                   "in_guest", "vcore_state"):
        assert header in strings


def test_state_view_napping_threads_boxes_follow_the_bitmask(trace):
    k = _step_index(trace, "kvmppc_h_cede: napping_threads", 2) + 1
    s = trace.state_after(k)
    fig = plots.state_view(s, trace.config)
    nap = to_rgba(plots.ACTIVITY_COLOURS["nap"])
    filled = sum(1 for c in fig.findobj(lambda a: hasattr(a, "get_facecolor")
                                        and a.__class__.__name__ == "PolyCollection")
                 for fc in c.get_facecolor() if tuple(fc) == nap)
    assert filled == bin(s.vcore.napping_threads).count("1") > 0


def test_state_view_highlights_what_the_step_changed(trace):
    k = _step_index(trace, "kvmppc_h_cede: napping_threads", 1)
    before, after = trace.state_after(k), trace.state_after(k + 1)
    changed = to_rgba("#FFE58F")

    def n_changed(fig):
        (boxes,) = fig.findobj(lambda a: a.__class__.__name__ == "PolyCollection")
        return sum(1 for fc in boxes.get_facecolor() if tuple(fc) == changed)

    # the step sets paca napping, moves the thread on, and sets a napping_threads bit
    assert n_changed(plots.state_view(after, trace.config, previous=before)) == 3
    assert n_changed(plots.state_view(after, trace.config, previous=after)) == 0
    assert n_changed(plots.state_view(after, trace.config)) == 0


def test_state_view_rejects_a_state_of_another_config(trace):
    with pytest.raises(ValueError, match="threads_per_core"):
        plots.state_view(trace.state_after(5), Config(threads_per_core=2, vcpus=2))


# ---- registers across nap ------------------------------------------------------------------------

def test_nap_moments_find_nap_wake_and_resume(trace):
    mo = plots.nap_moments(trace, vcpu=1)
    assert trace.steps[mo.nap_step][1].name == "kvmppc_h_cede: save state, nap"
    assert trace.steps[mo.wake_step][1].name == "kvm_start_guest"
    assert mo.nap_step < mo.wake_step < mo.resume_step
    assert mo.during == (-1, -1)  # nap loses the registers
    assert mo.saved == mo.before == mo.after_wake == mo.expected
    with pytest.raises(ValueError, match="occurrence"):
        plots.nap_moments(trace, vcpu=1, occurrence=99)


def test_registers_view_shows_nv_registers_survive_nap():
    fig = plots.registers_view(Config())
    strings = plots.figure_strings(fig)
    assert strings.count("✓ correct") == 3
    assert not any("corrupted" in s or "stale" in s for s in strings)


def test_registers_view_shows_corruption_without_nv_save():
    cfg = Config(ablations={"no_nv_save"})
    fig = plots.registers_view(cfg)
    strings = plots.figure_strings(fig)
    assert strings.count("✗ corrupted") == 2 and "✗ stale copy" in strings
    assert any("no_nv_save" in s for s in strings)
    (boxes,) = fig.findobj(lambda a: a.__class__.__name__ == "PolyCollection")
    red = sum(1 for fc in boxes.get_facecolor() if tuple(fc) == to_rgba("#F4A6A6"))
    assert red == 3 * 2 * 18  # three rows of wrong GPRs and FPRs
    two = cfg.replace(threads_per_core=2, vcpus=2)
    mo = plots.nap_moments(simulate(two, Workload(
        ((Busy(60.0),), (Busy(5.0), Idle(15.0), Busy(10.0)))), until=60), vcpu=1)
    assert mo.guest_sees != mo.expected == mo.before


def test_registers_view_needs_a_nap():
    with pytest.raises(ValueError, match="vcpus"):
        plots.registers_view(Config(threads_per_core=1, vcpus=1))


# ---- comparison, explorer result, explanations ------------------------------------------

def test_comparison_bars_and_labels_carry_the_metrics():
    cfg = Config()
    wl = random_workload(cfg, 3000, idle_fraction=0.5, idle_us=200, interrupt_rate=1000,
                         seed=2)
    mh = simulate(cfg.replace(policy="host"), wl, until=3000).metrics
    mr = simulate(cfg, wl, until=3000).metrics
    fig = plots.comparison(mh, mr, title="t")
    strings = plots.figure_strings(fig)
    for m in (mh, mr):
        assert f"{m.whole_core_exits:,}" in strings
        assert f"{m.lost_guest_us:,.0f}" in strings
        assert f"{m.host_ipis:,}" in strings
    assert mh.whole_core_exits > mr.whole_core_exits
    # exit bars are stacked by reason group and scaled to the larger policy
    ca = plots.ComparisonArtists(Figure(figsize=(11, 6.4)))
    ca.update(mh, mr)
    tops = [sum(ca.exit_bars[g][p].get_height() for g, _, _ in plots.EXIT_GROUPS)
            for p in range(2)]
    assert tops[0] == pytest.approx(1.0)
    assert tops[1] == pytest.approx(mr.whole_core_exits / mh.whole_core_exits)
    legend = [t.get_text() for lg in fig.legends + [a.get_legend() for a in fig.axes
                                                   if a.get_legend()] for t in lg.get_texts()]
    assert "napping in the guest (H_CEDE)" in legend and "H_CEDE (whole core to the host)" \
        in legend


def test_exit_groups_cover_the_metrics_reasons():
    assert plots.exit_group("H_CEDE") == "H_CEDE"
    assert plots.exit_group("external (KVM_INTERRUPT kick)") == "kick"
    assert plots.exit_group("HDEC") == "HDEC"
    assert plots.exit_group("MMIO") == plots.exit_group("H_PROD") == "hcall"
    assert plots.exit_group("trap 0x700") == "other"


def _explorer_violation():
    from types import SimpleNamespace
    cfg = Config(threads_per_core=2, vcpus=2)
    tr = walk_trace(cfg, Workload(((Busy(5), Idle(5)), (Idle(5),))), 30)
    return SimpleNamespace(ok=False, finished=True, states=1234, transitions=5678,
                           seconds=1.5, violation=SimpleNamespace(
                               name="nap_is_flagged", kind="invariant",
                               message="thread 1 naps unflagged", trace=tr, depth=30))


def test_explorer_result_states_the_verdict():
    from types import SimpleNamespace
    bad = _explorer_violation()
    strings = plots.figure_strings(plots.explorer_result(bad))
    assert "✗ invariant 'nap_is_flagged' violated" in strings
    assert any("1,234 states" in s for s in strings)
    good = SimpleNamespace(ok=True, finished=True, states=10, transitions=20, seconds=0.1,
                           violation=None)
    fig = plots.explorer_result(good)
    assert "✓ every property holds in every reachable state" in plots.figure_strings(fig)
    assert len(fig.axes) == 1  # no counterexample timeline


def test_every_step_the_model_can_take_has_an_explanation():
    from kvmcede.guest import GUEST_STEPS
    from kvmcede.host import _STEP_NAME as TASK_NAMES
    from kvmcede.interrupts import WORLD_STEPS
    from kvmcede.realmode import STEP_NAME
    names = {*STEP_NAME.values(), *TASK_NAMES.values(), *GUEST_STEPS, *WORLD_STEPS,
             "kvmppc_interrupt", "kvmppc_decrementer_func", "H_PROD: smp_mb; test ceded",
             "store visible"}
    missing = sorted(n for n in names if not plots.explain_step(n))
    assert missing == []


def test_steps_of_a_simulation_all_have_explanations(long_trace):
    assert all(plots.explain_step(st) for _t, st in long_trace.steps)


# The public names of kvmcede.plots before it became a package (``dir()`` of the module,
# without the underscore names): every one must still be there, the same object as in
# the module that now defines it.
_PLOTS_NAMES_BEFORE_THE_SPLIT = (
    "ACTIVITY_COLOURS",
    "ACTIVITY_LABELS",
    "Any",
    "BOOK3S_IRQPRIO_DECREMENTER",
    "BOOK3S_IRQPRIO_EXTERNAL",
    "BOOK3S_IRQPRIO_EXTERNAL_LEVEL",
    "ClassVar",
    "ComparisonArtists",
    "Dec",
    "EXIT_GROUPS",
    "ExitRace",
    "Figure",
    "FigureCanvasAgg",
    "FontProperties",
    "Line2D",
    "LineCollection",
    "Machine",
    "NapMoments",
    "POLICY_COLOURS",
    "Patch",
    "RACE_OFFSETS_US",
    "RACE_OUTCOMES",
    "REGS_LOST",
    "Reentry",
    "RendererAgg",
    "RendererBase",
    "STEP_EXPLANATIONS",
    "TYPE_CHECKING",
    "TextToPath",
    "VCORE_STATE_NAMES",
    "VCPU_COLOURS",
    "VCPU_STATE_NAMES",
    "VECTOR_COLOURS",
    "WIDTH_RANGE",
    "annotations",
    "bisect",
    "comparison",
    "dataclass",
    "entry_count",
    "exit_count",
    "exit_group",
    "exit_race",
    "exit_race_outcomes",
    "exit_race_window",
    "explain_step",
    "explorer_result",
    "fast_canvas",
    "figure_strings",
    "is_finite",
    "is_number",
    "nap_moments",
    "nap_save_restore",
    "np",
    "pending_names",
    "redraw_timeline",
    "reentry",
    "reentry_delivery",
    "registers_view",
    "rgba_to_png",
    "show",
    "state_view",
    "step_position",
    "step_window",
    "struct",
    "sys",
    "thread_activity",
    "timeline",
    "timeline_end",
    "timeline_legend",
    "to_png",
    "vcpu_activity",
    "weakref",
    "zlib",
)


def test_the_plots_package_keeps_every_public_name():
    import types

    missing = [n for n in _PLOTS_NAMES_BEFORE_THE_SPLIT if not hasattr(plots, n)]
    assert missing == []
    for n in plots.__all__:
        obj = getattr(plots, n)
        assert not isinstance(obj, types.ModuleType), n  # no submodule hides a function
    assert callable(plots.timeline) and callable(plots.state_view)
    assert callable(plots.comparison)
    from kvmcede.plots import timelines
    assert timelines.timeline is plots.timeline


# ---- readability: colours, text sizes, axis labels ----------------------------------------

def _lightness(colour: str) -> float:
    """CIELAB L* of a colour (0 black .. 100 white)."""
    r, g, b, _ = to_rgba(colour)
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return 116 * y ** (1 / 3) - 16 if y > 0.008856 else 903.3 * y


def _colour_meanings() -> dict[str, list[str]]:
    """Every colour the figures give a meaning to, with its meanings."""
    from kvmcede.plots import style

    out: dict[str, list[str]] = {}

    def put(colour: str, meaning: str) -> None:
        out.setdefault(to_rgba(colour)[:3].__repr__(), []).append(meaning)

    for v, c in enumerate(plots.VCPU_COLOURS):
        put(c, f"guest code of vcpu {v}")
    for act, c in plots.ACTIVITY_COLOURS.items():
        put(c, plots.ACTIVITY_LABELS[act])
    for vec, c in plots.VECTOR_COLOURS.items():
        put(c, f"interrupt at {vec:#x}")
    put(style.HDEC_COLOUR, "HDEC poke / host tick")
    put(style.GUEST_COLOUR, "guest code (all vcpus)")
    for key, c in style.IPI_COLOURS.items():
        put(c, f"IPI ({key})")
    for _, label, c in plots.EXIT_GROUPS:
        put(c, f"whole-core exits: {label}")
    for label, c in plots.RACE_OUTCOMES.values():
        put(c, f"exit race: {label}")
    return out


def test_no_colour_has_two_meanings():
    two = {c: m for c, m in _colour_meanings().items() if len(m) > 1}
    assert two == {}


def test_distinct_activities_have_distinct_colours_and_greys_differ_clearly():
    colours = [to_rgba(c) for c in plots.ACTIVITY_COLOURS.values()]
    assert len(set(colours)) == len(colours)
    assert not set(colours) & {to_rgba(c) for c in plots.VCPU_COLOURS}
    greys = sorted(_lightness(c) for c in plots.ACTIVITY_COLOURS.values()
                   if len(set(to_rgba(c)[:3])) == 1)
    assert len(greys) >= 4
    from itertools import pairwise
    steps = [b - a for a, b in pairwise(greys)]
    assert min(steps) >= 10, greys  # CIELAB lightness steps a reader can tell apart


def test_state_view_text_is_legible_at_the_books_width(trace):
    s = trace.state_after(40)
    fig = plots.state_view(s, trace.config, "after step 40", previous=trace.state_after(39),
                           workload=FOUR)
    assert fig.get_figwidth() <= 7.0  # the book's content width: shown at full size
    sizes = [size for text, size in plots.figure_fontsizes(fig) if text.strip()]
    assert sizes and min(sizes) >= 9


@pytest.mark.parametrize("make", [
    lambda: plots.registers_view(Config()),
    lambda: plots.nap_save_restore(save=False),
    lambda: plots.exit_race_window(0.15, no_ipi_on_exit=True, no_exit_recheck=True),
    lambda: plots.reentry_delivery(external=True, msr_ee=False),
], ids=["registers_view", "nap_save_restore", "exit_race_window", "reentry_delivery"])
def test_walkthrough_figures_are_legible_at_the_books_width(make):
    fig = make()
    assert fig.get_figwidth() <= 7.0
    assert min(size for text, size in plots.figure_fontsizes(fig) if text.strip()) >= 9


@pytest.mark.parametrize("make", ["timeline", "timeline_vcpus", "comparison", "explorer"])
def test_every_plotting_panel_has_axis_labels_and_legible_text(trace, make):
    """Every visible axes with a frame names what it plots (x or y label, with its
    unit); tables and diagrams drawn without axes are exempt.  Text is at least 8 pt."""
    if make == "timeline":
        fig = plots.timeline(trace)
    elif make == "timeline_vcpus":
        fig = plots.timeline(trace, 0, 50, vcpus=True)
    elif make == "comparison":
        host = simulate(Config(policy="host"), FOUR, until=100)
        fig = plots.comparison(host, trace, title="t")
    else:
        fig = plots.explorer_result(_explorer_violation())
    plotted = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert plotted
    for ax in plotted:
        assert ax.get_xlabel() or ax.get_ylabel(), ax.get_title()
    for ax in plotted:
        for label in (ax.get_xlabel(), ax.get_ylabel()):
            if label and label not in ("step",):
                assert "(" in label and ")" in label, label  # the unit, in brackets
    if make != "timeline" and make != "timeline_vcpus":
        return
    assert min(size for _, size in plots.figure_fontsizes(fig)) >= 8


def test_comparison_bar_panels_have_y_axes_in_their_units(trace):
    host = simulate(Config(policy="host"), FOUR, until=100)
    fig = plots.comparison(host, trace)
    ylabels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert ylabels == ["exits (count)", "IPIs (count)", "guest time lost (µs)",
                       "latency (µs)"]
    exits_ax = fig.axes[0]
    ticks = [t.get_text() for t in exits_ax.get_yticklabels()]
    top = max(host.metrics.whole_core_exits, trace.metrics.whole_core_exits)
    # the tick labels are in exits: the tallest bar (1.0 of the panel) reads `top`
    values = [float(t.replace(",", "")) for t in ticks if t]
    assert values[0] == 0 and max(values) >= top * 0.75
