"""The widgets of kvmcede.widgets, driven programmatically (no browser).

Every app is built, every control is set to its extremes, and what the callbacks
produce is checked: the PNG shown, the numbers and messages, the step shown."""

from __future__ import annotations

import html
import io
import sys

import matplotlib
import pytest
from matplotlib.figure import Figure
from PIL import Image

from kvmcede import (
    ABLATIONS,
    BUGS,
    Busy,
    Config,
    Idle,
    Interrupt,
    Workload,
    plots,
    simulate,
    widgets,
)
from kvmcede.widgets import ComparisonDashboard, ExplorerApp, StepPlayer, TimelineWidget

from .test_plots import walk_trace

matplotlib.use("Agg")

FOUR = Workload(((Busy(50),), (Idle(20),), (Idle(None),), (Idle(None),)),
                events=(Interrupt(30, 2),))


def png_size(data: bytes) -> tuple[int, int]:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return img.size


@pytest.fixture(scope="module")
def trace():
    return simulate(Config(), FOUR, until=100)


# ---- step player -------------------------------------------------------------------------------

def test_step_player_shows_the_step_its_explanation_and_events(trace):
    p = StepPlayer(trace)
    assert p.slider.max == p.play.max == len(trace.steps)
    assert "initial state" in p.info.value
    k = next(i for i, (_t, st) in enumerate(trace.steps)
             if st.name == "kvmppc_h_cede: napping_threads") + 1
    p.slider.value = k
    assert p.step == k
    info = p.info.value
    assert f"step {k} of {len(trace.steps)}" in info
    assert "kvmppc_h_cede: napping_threads" in info
    assert html.escape(plots.explain_step("kvmppc_h_cede: napping_threads")) in info
    assert "napping_threads |= 1 &lt;&lt;" in info  # the step's event, HTML-escaped
    png_size(p.state_image.value)
    png_size(p.timeline_image.value)


def test_step_player_state_image_is_the_state_view_after_the_step(trace):
    p = StepPlayer(trace, dpi=60)
    for k in (0, 1, 37, len(trace.steps)):
        p.show(k)
        fig = Figure(dpi=60)
        prev = trace.state_after(k - 1) if k else None
        title = f"after step {k}: {trace.steps[k - 1][1].label()}" if k else "initial state"
        plots.state_view(trace.state_after(k), trace.config, title, previous=prev,
                         workload=trace.workload, fig=fig)
        assert p.state_image.value == plots.to_png(fig)


def test_step_player_marks_the_current_step_on_the_timeline(trace):
    p = StepPlayer(trace, page_steps=200)
    images = set()
    for k in (5, 60, 90):
        p.show(k)
        images.add(p.timeline_image.value)
        x = plots.step_position(trace, k - 1)
        assert p._pane.line.get_xdata()[0] == x
        a, b = p._pane.window
        assert a <= x <= b
    assert len(images) == 3  # the mark moved


def test_step_player_every_slider_position_renders(trace):
    p = StepPlayer(trace)
    for k in [*range(len(trace.steps) + 1), 3, 90, 0]:  # forwards, then jumps
        p.slider.value = k
        assert p.step == k
        assert (f"step {k} of" in p.info.value) if k else ("initial state" in p.info.value)
    png_size(p.state_image.value)


def test_step_player_buttons_and_play_stay_in_range(trace):
    n = len(trace.steps)
    p = StepPlayer(trace, start=n)
    first, prev, nxt, last = p.buttons
    nxt.click()
    assert p.step == n
    first.click()
    assert p.step == 0
    prev.click()
    assert p.step == 0
    nxt.click()
    nxt.click()
    assert p.step == 2
    last.click()
    assert p.step == n
    p.play.value = 7  # Play drives the slider
    assert p.step == 7 and "step 7 of" in p.info.value
    with pytest.raises(ValueError, match="k must be"):
        p.show(n + 1)
    with pytest.raises(ValueError, match="start"):
        StepPlayer(trace, start=-1)


def test_step_player_pages_through_a_long_trace():
    cfg = Config()
    from kvmcede import random_workload
    tr = simulate(cfg, random_workload(cfg, 500, idle_fraction=0.5, idle_us=50, seed=1),
                  until=500)
    p = StepPlayer(tr, page_steps=40)
    for k in (1, 40, 41, 80, 81, len(tr.steps), 0, len(tr.steps) // 2):
        p.show(k)
        png_size(p.timeline_image.value)
        page = max(k - 1, 0) // 40
        assert p._pane.window == p.page_window(page)
        assert p._pane.ax.get_title(loc="left").startswith(f"steps {page * 40 + 1} to ")


def test_step_player_steps_through_an_explorer_counterexample():
    cfg = Config(threads_per_core=2, vcpus=2, ablations={"no_nv_save"})
    wl = Workload(((Busy(5), Idle(5), Busy(5)), (Busy(5), Idle(5), Busy(5))))
    tr = walk_trace(cfg, wl, 50)
    p = StepPlayer(tr, start=len(tr.steps))
    assert p.page_steps == len(tr.steps)  # a short counterexample fits on one page
    for k in range(len(tr.steps) + 1):
        p.show(k)
    assert "t = " not in p.info.value  # explorer steps have no time


def test_step_player_of_an_empty_trace():
    from kvmcede import Trace
    tr = Trace(Config(), FOUR, [], [], end=0)
    p = StepPlayer(tr)
    assert p.slider.max == 0 and "initial state" in p.info.value
    png_size(p.timeline_image.value)


# ---- comparison dashboard ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboard():
    return ComparisonDashboard(duration_us=2000, idle_us=200, interrupt_rate=1000)


def _shown_ok(d: ComparisonDashboard) -> None:
    assert "⚠" not in d.status.value
    assert png_size(d.image.value) == (880, 512)


def test_dashboard_shows_the_metrics_of_both_policies(dashboard):
    d = dashboard
    st = d.settings()
    mh, mr = widgets._simulate_pair(st["threads_per_core"], st["vcpus"], st["idle_fraction"],
                                    st["interrupt_rate"], 2000.0, 200.0, st["seed"])
    assert d.metrics == (mh, mr)
    labels = [t.get_text() for t in d._artists.exit_labels]
    assert labels == [f"{mh.whole_core_exits:,}", f"{mr.whole_core_exits:,}"]
    assert [t.get_text() for t in d._artists.lost_labels] == [
        f"{mh.lost_guest_us:,.0f}", f"{mr.lost_guest_us:,.0f}"]
    assert f"whole-core exits {mh.whole_core_exits} → {mr.whole_core_exits}" in d.status.value
    assert mh.whole_core_exits > mr.whole_core_exits  # the commit's point
    _shown_ok(d)


@pytest.mark.parametrize(("control", "values"), [
    ("idle_fraction", (0.0, 1.0, 0.05, 0.95, 0.5)),
    ("vcpus", (1, 2, 3, 4)),
    ("interrupt_rate", (0, 10_000, 1000)),
    ("seed", (0, 2**31 - 1, 7)),
])
def test_dashboard_every_slider_extreme_draws(dashboard, control, values):
    d = dashboard
    for v in values:
        before = d.image.value
        getattr(d, control).value = v
        _shown_ok(d)
        assert d.settings()[control] == pytest.approx(v)
        title = d._artists.title.get_text()
        if control == "vcpus":
            assert f"{v} vcpu" in title
        if before != d.image.value:
            continue
        # an identical picture is only fine if the numbers did not change either
        assert d.status.value


def test_dashboard_smt_mode_bounds_the_vcpus(dashboard):
    d = dashboard
    d.vcpus.value = 4
    d.smt.value = 1
    assert d.vcpus.max == 1 and d.vcpus.value == 1
    assert "SMT1, 1 vcpu," in d._artists.title.get_text()
    _shown_ok(d)
    d.vcpus.value = 3  # more than an SMT1 core has: the slider refuses
    assert d.vcpus.value == 1
    d.smt.value = 2
    assert d.vcpus.max == 2 and d.vcpus.value == 1
    d.vcpus.value = 2
    _shown_ok(d)
    d.smt.value = 4
    d.vcpus.value = 4
    assert "SMT4, 4 vcpus" in d._artists.title.get_text()
    _shown_ok(d)


def test_dashboard_says_what_is_wrong_instead_of_a_traceback(dashboard):
    d = dashboard
    d.smt.value = 2
    d._holding = True
    d.vcpus.max = 4  # bypass the link on purpose
    d.vcpus.value = 4
    d._holding = False
    d.update()
    assert "⚠" in d.status.value and "cannot exceed" in d.status.value
    png_size(d.image.value)
    d.smt.value = 4
    _shown_ok(d)


def test_dashboard_rejects_bad_construction():
    with pytest.raises(ValueError, match="vcpus"):
        ComparisonDashboard(threads_per_core=2, vcpus=4)
    with pytest.raises(ValueError, match="threads_per_core"):
        ComparisonDashboard(threads_per_core=3)


# ---- timeline widget ---------------------------------------------------------------------------

def test_timeline_widget_moves_and_resizes_its_window():
    cfg = Config()
    from kvmcede import random_workload
    tr = simulate(cfg, random_workload(cfg, 5000, idle_fraction=0.5, idle_us=200,
                                       interrupt_rate=1000, seed=4), until=5000)
    w = TimelineWidget(tr)
    assert w.window() == (0.0, 50.0)
    ax = w._ax
    seen = set()
    for width in (w.width.options[0][1], w.width.options[-1][1], 200):
        w.width.value = width
        for start in (0.0, w.start.max):
            w.start.value = start
            a, b = w.window()
            assert ax.get_xlim() == pytest.approx((a, b))
            assert b <= 5000 + 1e-6
            seen.add(w.image.value)
            png_size(w.image.value)
    assert len(seen) >= 4
    w.width.value = w.width.options[-1][1]  # the whole trace: aggregated
    assert any((im.get_gid() or "").startswith("band|") for im in ax.images)


# ---- explorer app ------------------------------------------------------------------------------

def test_explorer_app_without_the_explorer_says_so(monkeypatch):
    import kvmcede
    monkeypatch.setitem(sys.modules, "kvmcede.explorer", None)  # makes the import fail
    monkeypatch.delattr(kvmcede, "explorer", raising=False)
    app = ExplorerApp()
    assert "not available" in app.verdict.value
    assert app.run() is None
    assert "not available" in app.verdict.value


def test_explorer_app_rejects_unknown_variants():
    with pytest.raises(ValueError, match="name must be one of"):
        ExplorerApp("no_such_thing")


def test_explorer_app_proves_the_protocol_and_breaks_an_ablation():
    pytest.importorskip("kvmcede.explorer")
    app = ExplorerApp()
    app.vcpus.value = 1  # small enough to explore completely in a test
    app.run()
    assert app.result.finished and app.result.violation is None
    assert "✓ every property holds" in app.verdict.value
    assert f"{app.result.states:,} states" in app.progress.value
    assert app.player is None and app.player_box.children == ()
    app.variant.value = "no_ipi_on_exit"
    assert app.vcpus.value == app.configuration()[0].vcpus  # the variant's own setting
    app.run()
    v = app.result.violation
    assert "✗" in app.verdict.value and v.name in app.verdict.value
    assert isinstance(app.player, StepPlayer)
    assert app.player.trace is v.trace
    assert app.player.step == len(v.trace.steps)  # shows the violating state
    assert app.player_box.children == (app.player,)


@pytest.mark.parametrize("name", [*sorted(ABLATIONS), *sorted(BUGS)])
def test_explorer_app_shows_a_counterexample_for_every_ablation_and_bug(name):
    pytest.importorskip("kvmcede.explorer")
    app = ExplorerApp(name)
    app.run()
    v = app.result.violation
    assert v is not None and v.name in app.verdict.value
    assert app.player is not None and len(app.player.trace.steps) == v.depth


def test_explorer_app_partial_order_reduction():
    pytest.importorskip("kvmcede.explorer")
    app = ExplorerApp("no_exit_recheck")
    app.run()
    full = app.result
    app.reduce.value = True
    app.run()
    assert app.result is not full and app.result.reduction and not full.reduction
    assert app.result.states < full.states
    assert app.result.violation.name == full.violation.name == "core_can_leave"
    app.reduce.value = False
    app.run()
    assert app.result is full  # the earlier run, remembered


def test_explorer_app_every_vcpu_count_and_memory_mode():
    pytest.importorskip("kvmcede.explorer")
    app = ExplorerApp(max_states=2_000)
    for vcpus in (1, 4):
        for memory in ("sc", "store_buffer"):
            app.vcpus.value = vcpus
            app.memory.value = memory
            app.run()
            assert app.verdict.value  # a verdict or a message, never a traceback
            cfg, _wl, _kw = app.configuration()
            assert cfg.vcpus == vcpus and cfg.memory == memory
            assert cfg.threads_per_core >= vcpus


def test_explorer_app_offers_only_bounded_budgets():
    pytest.importorskip("kvmcede.explorer")
    from kvmcede.explorer import MAX_SECONDS_LIMIT, MAX_STATES_LIMIT
    app = ExplorerApp()
    assert app.max_states.max == MAX_STATES_LIMIT
    assert app.max_seconds.max == MAX_SECONDS_LIMIT and app.max_seconds.value <= 600
    app.max_states.value = 20_000_000  # the text box clamps what is typed
    assert app.max_states.value == MAX_STATES_LIMIT
    with pytest.raises(ValueError, match="max_states"):
        ExplorerApp(max_states=20_000_000)
    with pytest.raises(ValueError, match="max_seconds"):
        ExplorerApp(max_seconds=float("inf"))


def test_explorer_app_passes_its_time_limit_and_labels_a_stopped_run():
    pytest.importorskip("kvmcede.explorer")
    app = ExplorerApp(max_seconds=1.0)
    app.vcpus.value = 4
    app.run()
    r = app.result
    assert r.max_seconds == 1.0
    if r.violation is None and not r.finished:
        assert "not a proof" in app.verdict.value
        assert "time limit" in app.verdict.value or "state limit" in app.verdict.value
