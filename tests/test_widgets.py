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


# ---- the walk-through widgets -------------------------------------------------------------

def test_step_player_buttons_use_fontawesome_icons_not_glyphs(trace):
    p = StepPlayer(trace)
    assert [b.icon for b in p.buttons] == ["step-backward", "chevron-left", "chevron-right",
                                           "step-forward"]
    assert all(b.description == "" and b.tooltip for b in p.buttons)


def _strings(app) -> str:
    return " ".join(app.status.value.split())


def test_nap_save_restore_shows_the_corruption_when_the_save_is_off():
    from kvmcede.widgets import NapSaveRestore
    app = NapSaveRestore(dpi=40)
    ok = app.image.value
    assert "✓ the guest finds the registers it wrote" in app.status.value
    app.save.value = False  # ablation no_nv_save
    assert "✗ the guest resumes with stale registers" in app.status.value
    assert app.image.value != ok
    fig = plots.nap_save_restore(save=False, fig=Figure(dpi=40))
    assert app.image.value == plots.to_png(fig)  # the same call as the book's figure
    assert "✗ corrupted" in plots.figure_strings(fig)
    app.compute.value = False  # nothing written since the last save: wrong code, right values
    assert "✓" in app.status.value and "by luck" in app.status.value
    app.save.value = True
    assert "✓" in app.status.value and "luck" not in app.status.value
    png_size(app.image.value)


def test_nap_save_restore_reads_the_model_tags():
    fig = plots.nap_save_restore(save=True, fig=Figure(dpi=40))
    mo = plots.nap_moments(plots._nap_demo(True, True), vcpu=1)
    assert mo.saved == mo.before == mo.expected and mo.during == (-1, -1)
    assert "✗ corrupted" not in plots.figure_strings(fig)
    bad = plots.nap_moments(plots._nap_demo(False, True), vcpu=1)
    assert bad.saved != bad.expected and bad.guest_sees == bad.saved


def test_exit_race_outcome_flips_at_the_right_offsets():
    from kvmcede.widgets import ExitRaceWindow
    w = ExitRaceWindow(dpi=40)
    assert w.offset.value == 0.15 and w.outcome == "both"  # S12 itself
    seen = {}
    for d in plots.RACE_OFFSETS_US:
        w.offset.value = d
        seen[d] = w.outcome
        assert plots.RACE_OUTCOMES[w.outcome][0] in html.unescape(w.status.value)
    # the order of the window, as the model runs it: exit first; C's re-check sees the
    # exit; the IPI and the re-check both fire; C naps and the IPI wakes it
    order = [o for k, o in enumerate(seen.values()) if k == 0 or o != list(seen.values())[k - 1]]
    assert order == ["before", "recheck", "both", "ipi"]
    first_ipi = min(d for d, o in seen.items() if o == "ipi")
    w.offset.value = first_ipi
    image_ipi = w.image.value
    w.ipi.value = False  # no_ipi_on_exit: the same offset loses the wake-up
    assert w.outcome == "lost" and "the core never leaves the guest" in w.status.value
    assert w.image.value != image_ipi
    w.offset.value = min(d for d, o in seen.items() if o == "both")
    assert w.outcome == "recheck"  # the re-check alone still saves it
    w.ipi.value = True  # IPI restored: back to the protocol's outcomes
    assert w.outcome == "both"
    w.offset.value = first_ipi
    assert w.outcome == "ipi"
    w.recheck.value = False  # no_exit_recheck: the cedes after the exiter looked are lost
    w.offset.value = min(d for d, o in seen.items() if o == "recheck")
    assert w.outcome == "lost"
    w.recheck.value = True
    assert w.outcome == "recheck"


@pytest.mark.parametrize("ipi", [True, False])
@pytest.mark.parametrize("recheck", [True, False])
def test_exit_race_every_offset_and_toggle_draws(ipi, recheck):
    from kvmcede.widgets import ExitRaceWindow
    w = ExitRaceWindow(plots.RACE_OFFSETS_US[0], no_ipi_on_exit=not ipi,
                       no_exit_recheck=not recheck, dpi=30)
    outcomes = set()
    for d in (*plots.RACE_OFFSETS_US, 0.12, plots.RACE_OFFSETS_US[-1]):
        w.offset.value = d
        assert "⚠" not in w.status.value
        png_size(w.image.value)
        outcomes.add(w.outcome)
    assert "other" not in outcomes
    assert ("lost" in outcomes) == (not (ipi and recheck))  # a lost wake-up iff one is gone


def test_exit_race_rejects_bad_input():
    with pytest.raises(ValueError, match="offset_us"):
        plots.exit_race(5.0)
    with pytest.raises(ValueError, match="ablations"):
        plots.exit_race(0.0, ["no_nv_save"])


def test_reentry_delivery_external_before_decrementer_and_mer():
    from kvmcede.widgets import ReentryDelivery
    app = ReentryDelivery(dpi=40)
    r = app.result
    assert r.vector == 0x900 and not r.mer and r.ceded == 0
    assert "synthesizes 0x900" in app.status.value
    dec_only = app.image.value
    app.external.value = True  # both pending: external first, DEC taken by the guest after
    r = app.result
    assert r.vector == 0x500 and r.mer
    assert [v for v, _ in r.order] == [0x500, 0x900]
    assert "0x500 → 0x900" in app.status.value and app.image.value != dec_only
    app.injected.value = True  # host's 0x900 first; the external waits for MSR[EE] (MER)
    r = app.result
    assert r.vector == 0 and r.mer and [v for v, _ in r.order] == [0x900, 0x500]
    assert "LPCR_MER" in r.order[1][1]
    app.dec.value = False
    app.injected.value = False
    app.msr_ee.value = False  # nothing can be taken: MER set, the external stays pending
    r = app.result
    assert r.vector == 0 and r.mer and r.order == () and "external" in r.still_pending
    app.external.value = False
    assert app.result.vector == 0 and not app.result.mer


def test_reentry_highlights_the_lines_that_ran():
    import inspect

    from kvmcede import realmode
    src, first = inspect.getsourcelines(realmode.kvmppc_cede_reentry)
    line = {text.strip(): first + k for k, text in enumerate(src)}
    ext = plots.reentry(external=True)
    dec = plots.reentry(dec_expired=True)
    assert line["vector = 0x500"] in ext.lines_run and line["vector = 0x500"] not in dec.lines_run
    assert line["vector = 0x900"] in dec.lines_run and line["vector = 0x900"] not in ext.lines_run
    assert line["mer = True"] in ext.lines_run and line["mer = True"] not in dec.lines_run


def test_reentry_every_combination_draws():
    import itertools

    from kvmcede.widgets import ReentryDelivery
    app = ReentryDelivery(dpi=30)
    for dec, ext, ee, inj in itertools.product((False, True), repeat=4):
        app.dec.value, app.external.value, app.msr_ee.value, app.injected.value = (
            dec, ext, ee, inj)
        r = app.result
        assert r.inputs == {"dec_expired": dec, "external": ext, "msr_ee": ee,
                            "injected": inj}
        assert "⚠" not in app.status.value
        png_size(app.image.value)
        assert r.mer == ext  # a pending external always sets LPCR_MER
        assert r.vector == (0x500 if ext and ee and not inj else
                            0x900 if dec and ee and not inj and not ext else 0)
