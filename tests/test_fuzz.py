"""Property-based fuzzing of every public entry point with bad and borderline input.

Each call gets arbitrary values (wrong types, NaN, infinities, huge and negative
numbers, unknown names) and must either return a result or raise ``ValueError`` — the
CLI returns an exit code, or exits with status 2 for a command-line error — within a
few seconds (hypothesis ``deadline``): never another exception, never a hang.  Budgets
are kept small (``until``, ``max_states``, ``max_steps``, ``--duration-us``) so that every
accepted input finishes fast; what is fuzzed is the checking, not the speed.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import kvmcede
from kvmcede import (
    ABLATIONS,
    CHANGES,
    Busy,
    Confer,
    Config,
    CostModel,
    Idle,
    Interrupt,
    Metrics,
    Mmio,
    Prod,
    RemoteProd,
    Signal,
    Trace,
    Workload,
    random_workload,
    simulate,
)
from kvmcede.config import CPUS

_HEALTH = [HealthCheck.too_slow, HealthCheck.filter_too_much]


def _fuzz(max_examples: int = 100):
    return settings(deadline=timedelta(seconds=5), derandomize=True, database=None,
                    max_examples=max_examples, suppress_health_check=_HEALTH)


FUZZ = _fuzz()


def _explore_fn():
    """``kvmcede.explore`` the function, whether the package exports it or it is still the
    function of the module of that name (or of ``kvmcede.explorer``)."""
    ex = getattr(kvmcede, "explore", None)
    if callable(ex):
        return ex
    for name in ("kvmcede.explorer", "kvmcede.explore"):
        with contextlib.suppress(ImportError):
            fn = getattr(importlib.import_module(name), "explore", None)
            if callable(fn):
                return fn
    pytest.skip("the explorer is not available")
    return None


# ---- values -------------------------------------------------------------------------------------

def _mostly(good, bad, tenths: int = 8):
    """``good`` about ``tenths`` times in ten, else ``bad`` (so that accepted input is
    exercised too, not only the errors)."""
    return st.integers(0, 9).flatmap(lambda k: good if k < tenths else bad)


NUMBERS = st.one_of(
    st.integers(-10, 10), st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 4, 0.5, 1.0, -1, 1e300, -1e300, 3.5e299, 2**62, 10**30, 10**400,
                     -(10**400)]),
)
JUNK = st.one_of(
    NUMBERS, st.none(), st.booleans(), st.text(max_size=6),
    st.lists(st.text(max_size=4), max_size=2), st.just(object()), st.just({"a": 1}),
)
NAMES = st.sampled_from([*ABLATIONS, *CHANGES, "no_such", ""])
FIELDS = {
    "threads_per_core": _mostly(st.sampled_from([1, 2, 4]), JUNK, 7),
    "vcpus": _mostly(st.integers(1, 4), JUNK, 7),
    "policy": _mostly(st.sampled_from(["realmode", "host"]), JUNK, 7),
    "cpu": _mostly(st.sampled_from(CPUS), JUNK, 7),
    "changes": _mostly(st.frozensets(NAMES, max_size=2), JUNK, 7),
    "ablations": _mostly(st.frozensets(NAMES, max_size=2), JUNK, 7),
    "memory": _mostly(st.sampled_from(["sc", "store_buffer"]), JUNK, 7),
    "timebase_hz": _mostly(st.sampled_from([512_000_000, 10**9, 10**6]), JUNK, 7),
    "seed": _mostly(st.integers(0, 2**64), JUNK, 7),
    "costs": _mostly(st.just(CostModel()), JUNK, 7),
}


@st.composite
def config_kwargs(draw) -> dict:
    names = draw(st.sets(st.sampled_from(sorted(FIELDS)), max_size=4))
    kw = {n: draw(FIELDS[n]) for n in sorted(names)}
    if draw(st.integers(0, 9)) == 0:  # an unknown name
        kw[draw(st.sampled_from(["bugs", "smt", "vcpu", "kernel", "x"]))] = draw(JUNK)
    return kw


@st.composite
def valid_configs(draw) -> Config:
    """Any configuration that is accepted (bad ones are filtered out by their error)."""
    kw = draw(config_kwargs())
    try:
        return Config(**kw)
    except ValueError:
        return Config(threads_per_core=draw(st.sampled_from([1, 2, 4])), vcpus=1)


def _ok_or_value_error(fn, *args, **kwargs):
    try:
        r = fn(*args, **kwargs)
    except ValueError as exc:
        assert str(exc), "a ValueError must say what is wrong"
        event(f"{getattr(fn, '__name__', fn)}: ValueError ({str(exc).split(':')[0]})")
        return exc
    event(f"{getattr(fn, '__name__', fn)}: result")
    return r


# ---- Config, CostModel, from_dict ----------------------------------------------------------------

@FUZZ
@given(config_kwargs())
def test_config_returns_or_raises_value_error(kw):
    r = _ok_or_value_error(Config, **kw)
    if isinstance(r, Config):
        assert Config.from_dict(r.to_dict()) == r
    else:
        assert str(r).split(":")[0].split(".")[0] in {*FIELDS, *kw}, r


@FUZZ
@given(st.dictionaries(st.one_of(st.sampled_from(sorted(FIELDS)), st.text(max_size=5)),
                       JUNK, max_size=4) | JUNK)
def test_config_from_dict_returns_or_raises_value_error(d):
    _ok_or_value_error(Config.from_dict, d)


@FUZZ
@given(st.dictionaries(st.sampled_from(["realmode_step", "host_tick", "nap_wakeup",
                                        "ipi_latency", "nap"]), NUMBERS | JUNK, max_size=3))
def test_cost_model_returns_or_raises_value_error(kw):
    _ok_or_value_error(CostModel, **kw)


# ---- workloads and simulate -------------------------------------------------------------------

TIMES = st.one_of(st.floats(0.0, 300.0), NUMBERS, JUNK)
GOOD_TIMES = st.floats(0.5, 300.0)


def ops(n: int):
    """Ops for ``n`` vcpus: mostly valid, some with bad values, some not ops at all."""
    good = st.one_of(st.builds(Busy, GOOD_TIMES), st.builds(Idle, st.none() | GOOD_TIMES),
                     st.builds(Prod, st.integers(0, n - 1)),
                     st.builds(Confer, st.integers(-1, n - 1)),
                     st.builds(Mmio, st.none() | st.floats(1.0, 50.0)))
    bad = st.one_of(st.builds(Busy, TIMES), st.builds(Idle, TIMES), st.builds(Prod, JUNK),
                    st.builds(Confer, JUNK), st.builds(Mmio, TIMES), JUNK)
    return _mostly(good, bad, 9)


def events(n: int):
    at, v = st.floats(0.0, 400.0), st.integers(0, n - 1)
    good = st.one_of(st.builds(Interrupt, at, v), st.builds(RemoteProd, at, v),
                     st.builds(Signal, at, v))
    bad = st.one_of(st.builds(Interrupt, TIMES, st.integers(-1, 4) | JUNK),
                    st.builds(Signal, st.floats(0.0, 400.0), JUNK), JUNK)
    return _mostly(good, bad, 9)


@st.composite
def workloads(draw, n: int):
    k = n if draw(st.integers(0, 9)) else draw(st.integers(0, 5))  # sometimes the wrong count
    programs = tuple(tuple(draw(st.lists(ops(n), max_size=4))) for _ in range(k))
    return programs, tuple(draw(st.lists(events(n), max_size=4)))


UNTIL = _mostly(st.floats(1.0, 3000.0), st.one_of(NUMBERS, JUNK), 7)


@FUZZ
@given(st.data(), valid_configs(), UNTIL, st.sampled_from(["trace", "metrics"]))
def test_simulate_returns_or_raises_value_error(data, cfg, until, record):
    programs, evs = data.draw(workloads(cfg.vcpus))
    wl = _ok_or_value_error(Workload, programs, evs)
    if isinstance(wl, ValueError):
        return
    if isinstance(until, int | float) and not isinstance(until, bool) and until > 5000:
        until = 5000.0  # the bound of a long run is tested below; here keep it fast
    r = _ok_or_value_error(simulate, cfg, wl, until, record=record, max_steps=20_000)
    if record == "metrics" and not isinstance(r, ValueError):
        assert isinstance(r, Metrics)
    elif isinstance(r, Trace):
        assert Trace.from_json(r.to_json()) == r


@FUZZ
@given(UNTIL)
def test_simulate_until_returns_or_raises_value_error(until):
    cfg = Config(threads_per_core=1, vcpus=1)
    _ok_or_value_error(simulate, cfg, Workload(((Busy(5.0),),)), until, record="metrics")


@FUZZ
@given(valid_configs(), st.one_of(st.floats(1.0, 5000.0), NUMBERS, JUNK),
       st.fixed_dictionaries({}, optional={
           "idle_fraction": st.floats(0, 1) | NUMBERS | JUNK,
           "idle_us": st.floats(1, 3000) | NUMBERS | JUNK,
           "interrupt_rate": st.floats(0, 50_000) | NUMBERS | JUNK,
           "idle_vcpus": st.lists(st.integers(-1, 4), max_size=3) | JUNK,
           "seed": st.integers(0, 2**70) | JUNK}))
def test_random_workload_returns_or_raises_value_error(cfg, duration, kw):
    wl = _ok_or_value_error(random_workload, cfg, duration, **kw)
    if isinstance(wl, Workload) and duration <= 5000:
        _ok_or_value_error(simulate, cfg, wl, duration, record="metrics", max_steps=50_000)


# ---- the explorer ---------------------------------------------------------------------------------

BUDGET = st.one_of(st.integers(0, 2), NUMBERS, JUNK)


@_fuzz(30)
@given(st.sampled_from([(1, 1), (2, 1), (2, 2)]), st.sampled_from(["sc", "store_buffer"]),
       st.fixed_dictionaries({}, optional={
           "interrupts": BUDGET, "dec_expiries": BUDGET | st.none(), "prods": BUDGET,
           "host_ticks": BUDGET, "signals": BUDGET}),
       st.one_of(st.integers(1, 300), st.sampled_from([0, -1, 1.5, math.nan, "10", None])))
def test_explore_returns_or_raises_value_error(shape, memory, budgets, max_states):
    explore = _explore_fn()
    cfg = Config(threads_per_core=shape[0], vcpus=shape[1], memory=memory)
    _ok_or_value_error(explore, cfg, None, max_states=max_states, progress=False, **budgets)


# ---- the command line -----------------------------------------------------------------------------

BAD_ARGS = st.one_of(st.sampled_from(["0", "-1", "1e300", "nan", "inf", "x", "", "2.5"]),
                    st.text(alphabet="0123456789.e-", max_size=5))
GOOD_ARGS = {
    "--threads": ["1", "2", "4"], "--threads-per-core": ["1", "2", "4"],
    "--vcpus": ["1", "2", "4"], "--policy": ["realmode", "host"],
    "--cpu": ["POWER7", "PPC970"], "--memory": ["sc", "store_buffer"],
    "--ablation": sorted(ABLATIONS), "--change": sorted(CHANGES),
    "--kernel": ["3.4", "3.6", "4.10"], "--idle-fraction": ["0", "0.5", "1"],
    "--idle-us": ["50", "1000"], "--interrupt-rate": ["0", "5000"], "--seed": ["0", "7"],
    "--seeds": ["0", "1"], "--scenario": ["S4", "mmio", "nope"], "--interrupts": ["0", "1"],
    "--dec-expiries": ["0", "1"], "--prods": ["0", "1"], "--host-ticks": ["0", "1"],
    "--signals": ["0", "1"], "--property": ["prod_not_lost", "nope"],
    "--workload": ["default", "idle"], "--bogus": ["1"],
}
RUN_OPTS = ["--threads", "--vcpus", "--policy", "--cpu", "--memory", "--ablation",
            "--change", "--kernel", "--idle-fraction", "--idle-us", "--interrupt-rate",
            "--seed", "--scenario", "--bogus"]
EXPLORE_OPTS = ["--vcpus", "--threads-per-core", "--policy", "--memory", "--ablation",
                "--interrupts", "--dec-expiries", "--prods", "--host-ticks", "--signals",
                "--property", "--workload"]
SWEEP_OPTS = ["--threads", "--vcpus", "--policy", "--memory", "--ablation",
              "--idle-fraction", "--idle-us", "--interrupt-rate", "--seeds"]


def _cli(argv: list[str]) -> int:
    from kvmcede.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            return main(argv)
        except SystemExit as exc:
            assert exc.code == 2, (argv, exc.code, err.getvalue())
            return 2


@st.composite
def cli_args(draw) -> list[str]:
    cmd = draw(st.sampled_from(["run", "explore", "sweep"]))
    opts = {"run": RUN_OPTS, "explore": EXPLORE_OPTS, "sweep": SWEEP_OPTS}[cmd]
    argv = [cmd]
    for _ in range(draw(st.integers(0, 4))):
        opt = draw(st.sampled_from(opts))
        argv += [opt, draw(_mostly(st.sampled_from(GOOD_ARGS[opt]), BAD_ARGS, 7))]
    # small budgets: every accepted command line finishes fast
    if cmd == "run":
        argv += ["--duration-us", draw(st.sampled_from(["300", "1000", "0", "nan", "1e300"]))]
    elif cmd == "explore":
        argv += ["--max-states", draw(st.sampled_from(["200", "0", "-5", "x"])),
                 "--no-progress", "--no-events"]
    else:
        argv += ["--duration-us", "300", "--executor", "serial", "--no-progress"]
    return argv


@_fuzz(60)
@given(cli_args())
def test_cli_returns_an_exit_code_or_a_usage_error(argv):
    rc = _cli(argv)
    assert isinstance(rc, int) and rc in (0, 1, 2, 3), (argv, rc)
    event(f"{argv[0]}: exit {rc}")
