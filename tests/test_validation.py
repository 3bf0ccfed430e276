"""The bad-input audit, item by item: every input it found running forever, crashing
with a traceback, or silently ignored now gets a ValueError naming the field (written
``field: got VALUE; allowed: ...``) before any work starts; and the metrics-only mode
gives exactly the metrics of a stored trace."""

from __future__ import annotations

import dataclasses
import json

import pytest

from kvmcede import (
    Busy,
    Config,
    CostModel,
    Idle,
    Interrupt,
    Metrics,
    Signal,
    Trace,
    Workload,
    random_workload,
    simulate,
)
from kvmcede.config import MAX_TIME_US, MAX_UNTIL_US, TIMEBASE_HZ
from kvmcede.scenarios import SCENARIOS

NAN, INF = float("nan"), float("inf")
SMT2 = Config(threads_per_core=2, vcpus=2)
OK = (Busy(5),)


def _error(make) -> str:
    with pytest.raises(ValueError) as err:
        make()
    return str(err.value)


def _names(msg: str, *words: str) -> None:
    for w in words:
        assert w in msg, msg


@pytest.fixture(scope="module")
def small_trace() -> Trace:
    sc = SCENARIOS["S4"]
    return simulate(sc.config, sc.workload, until=sc.until_us)


# ---- finite but absurd values that ran forever ------------------------------------------------

def test_random_workload_of_1e300_us_is_refused_not_built():
    _names(_error(lambda: random_workload(Config(), 1e300)), "duration_us", "1e+300",
           "allowed")


def test_random_workload_duration_bound_is_the_simulation_bound():
    random_workload(Config(vcpus=1, threads_per_core=1), MAX_UNTIL_US, idle_fraction=0.0)
    _names(_error(lambda: random_workload(SMT2, MAX_UNTIL_US * 1.01)), "duration_us")


def test_random_workload_interrupt_rate_1e308_is_refused():
    _names(_error(lambda: random_workload(Config(), interrupt_rate=1e308)),
           "interrupt_rate", "1e+308", "allowed")


def test_random_workload_with_too_many_expected_periods_names_idle_us():
    _names(_error(lambda: random_workload(Config(), 10_000_000, idle_us=1.0)), "idle_us",
           "duration_us")


def test_dashboard_duration_1e300_is_refused():
    from kvmcede.widgets import ComparisonDashboard
    _names(_error(lambda: ComparisonDashboard(duration_us=1e300)), "duration_us", "allowed")


def test_dashboard_idle_us_that_a_slider_would_make_too_busy_is_refused_up_front():
    from kvmcede.widgets import ComparisonDashboard
    _names(_error(lambda: ComparisonDashboard(duration_us=1_000_000, idle_us=1.0)),
           "idle_us")


def test_timebase_10_to_the_30_is_refused():
    _names(_error(lambda: Config(timebase_hz=10**30)), "timebase_hz", "allowed")


# ---- crashes with tracebacks -------------------------------------------------------------------

@pytest.mark.parametrize(("field", "make"), [
    ("workload.programs[0][0].us",
     lambda: simulate(SMT2, Workload(((Busy(3.5e299),), OK)), until=10)),
    ("workload.programs[1][0].us",
     lambda: simulate(SMT2, Workload((OK, (Idle(1e300),))), until=10)),
    ("workload.events[0].at_us",
     lambda: simulate(SMT2, Workload((OK, OK), (Interrupt(1e300, 0),)), until=10)),
    ("workload.start_us[1]",
     lambda: simulate(SMT2, Workload((OK, OK), start_us=(0, 1e300)), until=10)),
    ("until", lambda: simulate(SMT2, Workload((OK, OK)), until=1e300)),
    ("until", lambda: simulate(SMT2, Workload((OK, OK)), until=MAX_UNTIL_US * 2)),
    ("workload.programs[0][0].us",
     lambda: simulate(SMT2, Workload(((Busy(MAX_TIME_US * 2),), OK)), until=10)),
])
def test_huge_times_are_refused_naming_the_field(field, make):
    _names(_error(make), field, "allowed")


def test_time_bounds_are_inclusive():
    simulate(SMT2, Workload(((Busy(MAX_TIME_US),), (Idle(MAX_TIME_US),))), until=5)


def test_threads_per_core_float_is_refused():
    _names(_error(lambda: Config(threads_per_core=1.0, vcpus=1)), "threads_per_core", "1.0")


def test_numpy_integers_are_accepted_as_plain_ints():
    np = pytest.importorskip("numpy")
    cfg = Config(threads_per_core=np.int64(2), vcpus=np.int32(2), seed=np.int64(3))
    assert type(cfg.threads_per_core) is int and cfg == Config(threads_per_core=2, vcpus=2,
                                                               seed=3)
    json.dumps(cfg.to_dict())


@pytest.mark.parametrize(("make", "words"), [
    (lambda: Config.from_dict(None), ["config", "None", "dict"]),
    (lambda: Config.from_dict([1, 2]), ["config", "dict"]),
    (lambda: Config.from_dict({"vcpu": 2}), ["config", "'vcpu'", "vcpus"]),
    (lambda: Config.from_dict({"costs": {"nap": 1}}), ["costs", "'nap'", "nap_wakeup"]),
    (lambda: Config.from_dict({"costs": 5}), ["costs", "dict"]),
    (lambda: Config.from_dict({"vcpus": "2"}), ["vcpus", "'2'"]),
])
def test_config_from_dict_checks_its_input(make, words):
    _names(_error(make), *words)


def _trace_dict(tr: Trace) -> dict:
    return json.loads(tr.to_json())


@pytest.mark.parametrize(("edit", "words"), [
    (lambda d: [], ["trace", "list"]),
    (lambda d: None, ["trace"]),
    (lambda d: {k: v for k, v in d.items() if k != "events"}, ["events", "missing"]),
    (lambda d: {k: v for k, v in d.items() if k != "config"}, ["config", "missing"]),
    (lambda d: {**d, "extra": 1}, ["'extra'"]),
    (lambda d: {**d, "source": "dream"}, ["source", "'dream'"]),
    (lambda d: {**d, "end": -1}, ["end", "-1"]),
    (lambda d: {**d, "budget": [0, 0]}, ["budget"]),
    (lambda d: {**d, "meta": []}, ["meta"]),
    (lambda d: {**d, "events": {}}, ["events", "list"]),
    (lambda d: {**d, "events": [[0, 9, 0, "x", "", -1]]}, ["events[0][1]", "9"]),
    (lambda d: {**d, "events": [[0, 0, 7, "x", "", -1]]}, ["events[0][2]", "7"]),
    (lambda d: {**d, "events": [[0, 0, 0, 5, "", -1]]}, ["events[0][3]"]),
    (lambda d: {**d, "events": [[0, 0, 0]]}, ["events[0]"]),
    (lambda d: {**d, "events": [[5, 0, 0, "x", "", -1], [1, 0, 0, "x", "", -1]]},
     ["events[1][0]", "1"]),
    (lambda d: {**d, "events": [[0.5, 0, 0, "x", "", -1]]}, ["events[0][0]", "0.5"]),
    (lambda d: {**d, "steps": [[0, "thread", 4, "H_CEDE"]]}, ["steps[0][2]", "4"]),
    (lambda d: {**d, "steps": [[0, "gremlin", 0, "H_CEDE"]]}, ["steps[0][1]", "gremlin"]),
    (lambda d: {**d, "steps": [[0, "task", 0]]}, ["steps[0]"]),
    (lambda d: {**d, "steps": [[0, "task", 0, None]]}, ["steps[0][3]"]),
    (lambda d: {**d, "config": None}, ["config"]),
    (lambda d: {**d, "workload": None}, ["workload"]),
    (lambda d: {**d, "workload": {**d["workload"], "programs": [[{"op": "Busy", "us": -1}],
                                                                 [], [], []]}},
     ["workload.programs[0][0].us", "-1"]),
    (lambda d: {**d, "workload": {**d["workload"], "programs": [[{"op": "Nap"}], [], [],
                                                                 []]}},
     ["workload.programs[0][0].op", "Nap"]),
    (lambda d: {**d, "workload": {**d["workload"], "programs": [[{"op": "Busy", "ms": 1}],
                                                                 [], [], []]}},
     ["workload.programs[0][0]", "'ms'"]),
    (lambda d: {**d, "workload": {**d["workload"], "events": [{"event": "Interrupt",
                                                                "at_us": 1.0, "vcpu": 9}]}},
     ["workload.events[0].vcpu", "9"]),
    (lambda d: {**d, "workload": {**d["workload"], "programs": [[], []]}},
     ["workload.programs", "one program per vcpu"]),
])
def test_trace_from_json_names_what_is_wrong(small_trace, edit, words):
    text = json.dumps(edit(_trace_dict(small_trace)))
    _names(_error(lambda: Trace.from_json(text)), *words)


def test_trace_from_json_rejects_text_that_is_not_json():
    _names(_error(lambda: Trace.from_json("{not json")), "text", "JSON")
    _names(_error(lambda: Trace.from_json(None)), "text")


def test_a_step_the_model_cannot_replay_is_a_value_error(small_trace):
    d = _trace_dict(small_trace)
    d["steps"][0][3] = "no_such_step"
    tr = Trace.from_json(json.dumps(d))
    _names(_error(lambda: tr.state_after(1)), "steps[0]", "no_such_step")


def test_trace_round_trip_stays_lossless(small_trace):
    assert Trace.from_json(small_trace.to_json()).to_json() == small_trace.to_json()


class _MyBusy(Busy):
    __slots__ = ()


class _MyInterrupt(Interrupt):
    __slots__ = ()


def test_a_subclass_of_an_op_is_refused_by_name():
    msg = _error(lambda: simulate(SMT2, Workload(((_MyBusy(5),), OK)), until=10))
    _names(msg, "workload.programs[0][0]", "subclass of Busy")
    msg = _error(lambda: simulate(SMT2, Workload((OK, OK), (_MyInterrupt(1.0, 0),)),
                                  until=10))
    _names(msg, "workload.events[0]", "subclass of Interrupt")


def test_step_player_page_steps_must_be_a_whole_number(small_trace):
    from kvmcede.widgets import StepPlayer
    _names(_error(lambda: StepPlayer(small_trace, page_steps=1.5)), "page_steps", "1.5")
    _names(_error(lambda: StepPlayer(small_trace, start=True)), "start")
    _names(_error(lambda: StepPlayer(small_trace, dpi=0)), "dpi")
    _names(_error(lambda: StepPlayer(None)), "trace")


@pytest.mark.parametrize(("kw", "field"), [
    ({"width": 0}, "width"), ({"width": -3.0}, "width"), ({"width": NAN}, "width"),
    ({"width": 1e6}, "width"), ({"legend": "some"}, "legend"), ({"vcpus": "yes"}, "vcpus"),
    ({"aggregate": 1}, "aggregate"), ({"highlight_step": 1.0}, "highlight_step"),
    ({"start_us": "0"}, "start_us"), ({"title": 5}, "title"),
])
def test_timeline_arguments_are_checked(small_trace, kw, field):
    from kvmcede import plots
    _names(_error(lambda: plots.timeline(small_trace, **kw)), field, "allowed")


def test_other_plot_sizes_and_indices_are_checked(small_trace):
    from matplotlib.figure import Figure

    from kvmcede import plots
    _names(_error(lambda: plots.timeline_legend(small_trace, width=0)), "width")
    _names(_error(lambda: plots.step_window(small_trace, 0, page_steps=0)), "page_steps")
    _names(_error(lambda: plots.step_window(small_trace, 0.5)), "k")
    _names(_error(lambda: plots.to_png(Figure(), dpi=-1)), "dpi")
    _names(_error(lambda: plots.timeline(None)), "trace")
    _names(_error(lambda: plots.nap_moments(small_trace, occurrence=0.5)), "occurrence")


@pytest.mark.parametrize(("kw", "field"), [
    ({"interrupt_rate": NAN}, "interrupt_rate"),
    ({"interrupt_rate": 20_000}, "interrupt_rate"),
    ({"interrupt_rate": 250.5}, "interrupt_rate"),
    ({"idle_fraction": 2.0}, "idle_fraction"),
    ({"idle_fraction": NAN}, "idle_fraction"),
    ({"vcpus": 2.5}, "vcpus"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**40}, "seed"),
    ({"dpi": INF}, "dpi"),
    ({"idle_us": 0}, "idle_us"),
    ({"threads_per_core": 4.0}, "threads_per_core"),
])
def test_dashboard_refuses_instead_of_clamping(kw, field):
    from kvmcede.widgets import ComparisonDashboard
    _names(_error(lambda: ComparisonDashboard(duration_us=500, **kw)), field, "allowed")


def test_timeline_widget_refuses_a_window_wider_than_the_trace(small_trace):
    from kvmcede.widgets import TimelineWidget
    _names(_error(lambda: TimelineWidget(small_trace, width_us=1e9)), "width_us")
    _names(_error(lambda: TimelineWidget(small_trace, width_us=0)), "width_us")
    _names(_error(lambda: TimelineWidget(small_trace, vcpus=1)), "vcpus")


# ---- silently ignored or wrong -----------------------------------------------------------------

@pytest.mark.parametrize("ablation", ["no_ipi_on_exit", "no_exit_recheck", "no_prodded_check",
                                      "no_nv_save"])
def test_host_policy_with_an_ablation_is_an_error_naming_both(ablation):
    _names(_error(lambda: Config(policy="host", ablations={ablation})), "ablations",
           "policy", ablation)


def test_ppc970_with_an_ablation_is_an_error_naming_both():
    _names(_error(lambda: Config(threads_per_core=1, vcpus=1, cpu="PPC970",
                                 ablations={"no_nv_save"})), "ablations", "cpu")


def test_no_cede_sync_needs_store_buffers():
    _names(_error(lambda: Config(ablations={"no_cede_sync"})), "no_cede_sync", "memory",
           "store_buffer")
    Config(ablations={"no_cede_sync"}, memory="store_buffer")


def test_a_changed_timebase_rescales_the_default_costs_so_guest_time_is_right():
    sc = SCENARIOS["S4"]
    fast = sc.config.replace(timebase_hz=2 * TIMEBASE_HZ)
    assert fast.costs.nap_wakeup == 2 * CostModel().nap_wakeup
    a = simulate(sc.config, sc.workload, until=sc.until_us).metrics
    b = simulate(fast, sc.workload, until=sc.until_us).metrics
    assert b.time_split[0]["guest"] > 0
    for v in a.time_split:
        for act, t in a.time_split[v].items():
            assert b.time_split[v][act] == pytest.approx(t, abs=0.01)
    assert b.whole_core_exits == a.whole_core_exits
    # explicit costs are kept as given (they are in ticks of the new timebase)
    own = CostModel(nap_wakeup=7)
    assert Config(timebase_hz=10**9, costs=own).costs == own
    # and the round trip is exact
    assert Config.from_dict(fast.to_dict()) == fast


def test_trace_from_json_refuses_a_negative_busy():
    tr = simulate(SMT2, Workload((OK, OK)), until=20)
    d = _trace_dict(tr)
    d["workload"]["programs"][0][0]["us"] = -1
    _names(_error(lambda: Trace.from_json(json.dumps(d))), "workload.programs[0][0].us",
           "-1")


@pytest.mark.parametrize(("make", "field"), [
    (lambda: CostModel(realmode_step=2**70), "costs.realmode_step"),
    (lambda: Config(bogus=1), "bogus"),
    (lambda: Config().replace(vcpu=2), "vcpu"),
    (lambda: CostModel(nap=1), "costs.nap"),
    (lambda: CostModel(host_tick=0), "costs.host_tick"),
    (lambda: Config(policy=["realmode"]), "policy"),
    (lambda: Config(ablations=[1, "no_nv_save"]), "ablations"),
    (lambda: Config(memory=None), "memory"),
    (lambda: Config(cpu=7), "cpu"),
    (lambda: Config(timebase_hz=999_999), "timebase_hz"),
    (lambda: simulate(SMT2, Workload((OK, OK)), until=10, record="events"), "record"),
    (lambda: simulate(SMT2, Workload((OK, OK)), until=10, max_steps=0), "max_steps"),
    (lambda: simulate(SMT2, Workload((OK, OK)), until=10, check_invariants="yes"),
     "check_invariants"),
    (lambda: simulate(SMT2, Workload(((Idle(None),), (Busy(5),)), name=5), until=10),
     "workload.name"),
    (lambda: Workload.from_dict(None), "workload"),
    (lambda: Workload.from_dict({"programs": [[5]], "events": []}),
     "workload.programs[0][0]"),
])
def test_more_bad_input_names_the_field(make, field):
    _names(_error(make), field)


# ---- bounded work --------------------------------------------------------------------------------

def test_max_steps_stops_a_run_with_a_clear_error():
    wl = random_workload(SMT2, 2000, idle_us=50)
    _names(_error(lambda: simulate(SMT2, wl, until=2000, max_steps=50)), "max_steps", "50")


def test_costs_that_stop_time_are_a_clear_error_not_a_hang():
    zero = CostModel(**{f.name: 0 for f in dataclasses.fields(CostModel)
                        if f.name != "host_tick"}, host_tick=10**9)
    cfg = Config(policy="host", costs=zero)
    wl = Workload(tuple((Idle(5.0),) for _ in range(4)), (Signal(1.0, 0),))
    try:
        simulate(cfg, wl, until=100)
    except ValueError as exc:
        _names(str(exc), "costs", "time")


# ---- metrics-only mode ---------------------------------------------------------------------------

def _random_cases():
    for policy in ("realmode", "host"):
        for seed in range(3):
            cfg = Config(policy=policy, seed=seed,
                         memory="store_buffer" if seed == 2 else "sc")
            wl = random_workload(cfg, 3000, idle_fraction=0.3 + 0.2 * seed, idle_us=150,
                                 interrupt_rate=4000 * seed)
            yield f"random-{policy}-{seed}", cfg, wl, 3000.0


CASES = [(name, sc.config, sc.workload, sc.until_us) for name, sc in SCENARIOS.items()]
CASES += list(_random_cases())


@pytest.mark.parametrize(("name", "cfg", "wl", "until"), CASES, ids=[c[0] for c in CASES])
def test_metrics_only_run_equals_the_stored_traces_metrics(name, cfg, wl, until):
    tr = simulate(cfg, wl, until=until)
    m = simulate(cfg, wl, until=until, record="metrics")
    assert isinstance(m, Metrics)
    assert m == tr.metrics
    assert m.steps == len(tr.steps)
    assert m.summary() == tr.metrics.summary()


def test_metrics_only_run_keeps_no_events():
    import tracemalloc
    cfg = Config()
    sizes = []
    for until in (20_000, 80_000):
        wl = random_workload(cfg, until, idle_us=200)
        tracemalloc.start()
        simulate(cfg, wl, until=until, record="metrics")
        sizes.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # four times the simulated time, not four times the memory (a trace would be)
    assert sizes[1] < 1.5 * sizes[0] + 20_000, sizes
