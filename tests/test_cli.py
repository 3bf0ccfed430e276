"""The command line: every subcommand in-process, `python -m kvmcede` once for real."""

from __future__ import annotations

import csv
import importlib
import json
import os
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

from kvmcede import Busy, Config, Idle, Trace, Workload, random_workload, simulate
from kvmcede.cli import EXIT_CODES, build_parser, main
from kvmcede.scenarios import Scenario

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--duration-us", "2000"]


def _has(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:
        return False
    return True


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _usage_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    assert e.value.code == 2
    return capsys.readouterr().err


# ---- help -----------------------------------------------------------------------------------

def test_top_level_help_lists_subcommands_units_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for word in ("run", "scenarios", "sweep", "explore", "microseconds", "exit status"):
        assert word in out
    for code in EXIT_CODES:
        assert f"{code} " in out


@pytest.mark.parametrize("command", ["run", "scenarios", "sweep", "explore"])
def test_every_subcommand_has_help(capsys, command):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: kvmcede {command}" in out
    assert "exit status" in out


def test_run_help_explains_values_and_units(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for word in ("realmode", "host", "1, 2 or 4", "microseconds", "no_ipi_on_exit",
                 "prodded_branch", "--perfetto", "--png", "--events", "store_buffer"):
        assert word in out


def test_python_dash_m_kvmcede_help_runs_as_a_process():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH",
                                                                             ""))
    p = subprocess.run([sys.executable, "-m", "kvmcede", "--help"], capture_output=True,
                       text=True, env=env, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert "usage: kvmcede" in p.stdout and "sweep" in p.stdout


def test_console_script_entry_point_is_cli_main():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    module, func = meta["project"]["scripts"]["kvmcede"].split(":")
    assert getattr(importlib.import_module(module), func) is main


# ---- run ------------------------------------------------------------------------------------

def test_run_random_prints_metrics_and_writes_json_and_perfetto(capsys, tmp_path):
    js, pf = tmp_path / "t.json", tmp_path / "p.json"
    rc, out, _ = _run(capsys, "run", "--random", "--policy", "host", "--idle-fraction", "0.75",
                      "--seed", "4", *SHORT, "--json", str(js), "--perfetto", str(pf))
    assert rc == 0
    assert "whole-core exits" in out and "policy=host" in out
    tr = Trace.from_json(js.read_text(encoding="utf-8"))
    config = Config(policy="host", seed=4)
    expected = simulate(config, random_workload(config, 2000, idle_fraction=0.75, seed=4),
                        until=2000)
    assert tr == expected
    assert tr.metrics.table() in out
    perfetto = json.loads(pf.read_text(encoding="utf-8"))
    assert perfetto["traceEvents"]
    assert {e["ph"] for e in perfetto["traceEvents"]} >= {"M", "X", "i"}


def test_run_without_a_workload_flag_runs_the_default_random_workload(capsys, tmp_path):
    js = tmp_path / "t.json"
    rc, out, _ = _run(capsys, "run", *SHORT, "--json", str(js))
    assert rc == 0 and "random workload: idle_fraction=0.5" in out
    tr = Trace.from_json(js.read_text(encoding="utf-8"))
    assert tr.config == Config()
    assert tr.us(tr.end) == 2000


def test_run_applies_repeated_ablations_and_changes(capsys, tmp_path):
    js = tmp_path / "t.json"
    rc, _, _ = _run(capsys, "run", "--ablation", "no_ipi_on_exit", "--ablation", "no_nv_save",
                    "--change", "8464c884", "--memory", "store_buffer", *SHORT,
                    "--json", str(js))
    assert rc == 0
    c = Trace.from_json(js.read_text(encoding="utf-8")).config
    assert c.ablations == {"no_ipi_on_exit", "no_nv_save"}
    assert c.bugs == {"prodded_branch"} and c.memory == "store_buffer"
    assert c.changes == {"8464c884"}


def test_run_kernel_version_switches_on_every_change_up_to_it(capsys, tmp_path):
    js = tmp_path / "t.json"
    rc, out, _ = _run(capsys, "run", "--kernel", "4.10", *SHORT, "--json", str(js))
    assert rc == 0 and "04f995a5" in out and "8464c884" in out
    assert Trace.from_json(js.read_text(encoding="utf-8")).config == Config.linux("4.10")


def test_run_threads_without_vcpus_uses_a_full_vcore(capsys, tmp_path):
    js = tmp_path / "t.json"
    assert main(["run", "--threads", "2", *SHORT, "--json", str(js)]) == 0
    c = Trace.from_json(js.read_text(encoding="utf-8")).config
    assert (c.threads_per_core, c.vcpus) == (2, 2)
    capsys.readouterr()


def test_run_events_prints_kernel_events_step_by_step(capsys):
    rc, out, _ = _run(capsys, "run", "--events", "--duration-us", "500", "--seed", "1")
    assert rc == 0
    lines = out.splitlines()
    start = next(k for k, line in enumerate(lines) if line.strip().startswith("time (us)"))
    events = lines[start + 1:lines.index("", start)]
    config = Config(seed=1)
    tr = simulate(config, random_workload(config, 500, seed=1), until=500)
    assert len(events) == len(tr.kernel_events())
    for ln, ev in zip(events, tr.kernel_events(), strict=True):
        assert float(ln.split()[0]) == pytest.approx(tr.us(ev.time), abs=1e-3)
        assert ln.split(None, 3)[3].startswith(ev.kind + " "), (ln, ev)
    assert any("kvmppc_h_cede" in ln for ln in events)


def test_run_check_invariants_passes_on_the_default_protocol(capsys):
    rc, out, _ = _run(capsys, "run", "--check-invariants", "--duration-us", "1000")
    assert rc == 0 and "invariants checked after every step" in out


def test_run_png_writes_a_png_or_says_what_is_missing(capsys, tmp_path):
    png = tmp_path / "t.png"
    rc, out, err = _run(capsys, "run", *SHORT, "--png", str(png))
    if _has("matplotlib") and _has("kvmcede.plots"):
        assert rc == 0, err
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"timeline PNG: {png}" in out
    else:
        assert rc == 4
        assert "--png" in err and ("matplotlib" in err or "kvmcede.plots" in err)
        assert not png.exists()


@pytest.mark.parametrize(("argv", "words"), [
    (["run", "--policy", "bogus"], ["--policy", "realmode", "host"]),
    (["run", "--threads", "3"], ["--threads", "1, 2, 4"]),
    (["run", "--vcpus", "5"], ["--vcpus", "1, 2, 3, 4"]),
    (["run", "--ablation", "nope"], ["--ablation", "no_ipi_on_exit"]),
    (["run", "--change", "nope"], ["--change", "04f995a5"]),
    (["run", "--kernel", "2.6"], ["--kernel", "3.4"]),
    (["run", "--memory", "tso"], ["--memory", "store_buffer"]),
    (["run", "--idle-fraction", "1.5"], ["--idle-fraction", "0 to 1"]),
    (["run", "--idle-us", "-3"], ["--idle-us", "positive"]),
    (["run", "--interrupt-rate", "x"], ["--interrupt-rate", ">= 0"]),
    (["run", "--duration-us", "0"], ["--duration-us", "positive"]),
    (["sweep", "--metrics", "nope"], ["--metrics", "whole_core_exits"]),
    (["sweep", "--executor", "gpu"], ["--executor", "process", "thread", "serial"]),
    (["sweep", "--workers", "0"], ["--workers", "positive"]),
    (["run", "--nope"], ["unrecognized arguments: --nope"]),
    (["frobnicate"], ["invalid choice", "run", "sweep"]),
    ([], ["required"]),
])
def test_bad_arguments_are_usage_errors_naming_the_flag(capsys, argv, words):
    err = _usage_error(capsys, *argv)
    for w in words:
        assert w in err, err


def test_scenario_and_random_are_mutually_exclusive(capsys):
    names = sorted(getattr(importlib.import_module("kvmcede.scenarios"), "SCENARIOS", {})) \
        if _has("kvmcede.scenarios") else []
    err = _usage_error(capsys, "run", "--scenario", names[0] if names else "x", "--random")
    assert "--random" in err and "not allowed with argument --scenario" in err


def test_invalid_configuration_is_exit_2_naming_the_field(capsys):
    rc, out, err = _run(capsys, "run", "--threads", "2", "--vcpus", "4", *SHORT)
    assert rc == 2 and out == ""
    assert "vcpus" in err and "threads_per_core" in err and "usage:" in err


def test_ppc970_needs_smt1(capsys):
    rc, _, err = _run(capsys, "run", "--cpu", "PPC970", *SHORT)
    assert rc == 2 and "PPC970" in err
    rc, out, _ = _run(capsys, "run", "--cpu", "PPC970", "--threads", "1", *SHORT)
    assert rc == 0 and "cpu=PPC970" in out


# ---- scenarios ------------------------------------------------------------------------------

def test_scenarios_lists_every_name_with_its_title(capsys):
    if not _has("kvmcede.scenarios"):
        rc, _, err = _run(capsys, "scenarios")
        assert rc == 4 and "kvmcede.scenarios" in err
        return
    from kvmcede.scenarios import SCENARIOS
    rc, out, _ = _run(capsys, "scenarios")
    assert rc == 0
    for name, sc in SCENARIOS.items():
        assert any(line.split()[0] == name and sc.title in line for line in out.splitlines())
    rc, verbose, _ = _run(capsys, "scenarios", "--verbose")
    assert rc == 0 and "config: policy=" in verbose and len(verbose) > len(out)


def test_run_scenario_prints_its_title_and_metrics(capsys, tmp_path):
    scenarios = pytest.importorskip("kvmcede.scenarios")
    name = sorted(scenarios.SCENARIOS)[0]
    sc = scenarios.scenario(name)
    js = tmp_path / "s.json"
    rc, out, err = _run(capsys, "run", "--scenario", name, "--json", str(js))
    assert rc == 0, err
    assert f"scenario {name}: {sc.title}" in out and "whole-core exits" in out
    tr = Trace.from_json(js.read_text(encoding="utf-8"))
    assert tr == simulate(sc.config, sc.workload, until=sc.until_us)


def test_run_scenario_with_policy_override(capsys, tmp_path):
    scenarios = pytest.importorskip("kvmcede.scenarios")
    name = sorted(scenarios.SCENARIOS)[0]
    js = tmp_path / "s.json"
    rc, _, err = _run(capsys, "run", "--scenario", name, "--policy", "host", "--json",
                      str(js))
    if rc == 0:
        assert Trace.from_json(js.read_text(encoding="utf-8")).config.policy == "host"
    else:  # a scenario that only makes sense under one policy may refuse; it must say so
        assert rc == 2 and "policy" in err


def test_run_scenario_rejects_random_workload_flags(capsys):
    scenarios = pytest.importorskip("kvmcede.scenarios")
    name = sorted(scenarios.SCENARIOS)[0]
    rc, _, err = _run(capsys, "run", "--scenario", name, "--idle-fraction", "0.3")
    assert rc == 2 and "--idle-fraction" in err and "--random" in err


@pytest.fixture
def fake_scenarios(monkeypatch):
    """A stand-in kvmcede.scenarios with one scenario (tests the CLI on its own)."""
    sc = Scenario("one_busy", "One busy vcpu, one idle", "vcpu 0 runs; vcpu 1 cedes.",
                  Config(threads_per_core=2, vcpus=2),
                  Workload(((Busy(300.0),), (Idle(None),)), name="one_busy"), 400.0)
    mod = types.ModuleType("kvmcede.scenarios")
    mod.SCENARIOS = {sc.name: sc}

    def scenario(name):
        if name not in mod.SCENARIOS:
            raise ValueError(f"scenario must be one of {sorted(mod.SCENARIOS)}, got {name!r}")
        return mod.SCENARIOS[name]

    mod.scenario = scenario
    monkeypatch.setitem(sys.modules, "kvmcede.scenarios", mod)
    return sc


def test_run_scenario_uses_its_config_workload_and_duration(capsys, tmp_path,
                                                            fake_scenarios):
    sc = fake_scenarios
    js = tmp_path / "s.json"
    rc, out, _ = _run(capsys, "run", "--scenario", "one_busy", "--ablation", "no_nv_save",
                      "--json", str(js))
    assert rc == 0
    assert "scenario one_busy: One busy vcpu, one idle" in out
    tr = Trace.from_json(js.read_text(encoding="utf-8"))
    config = sc.config.replace(ablations={"no_nv_save"})
    assert tr == simulate(config, sc.workload, until=sc.until_us)
    rc, _, _ = _run(capsys, "run", "--scenario", "one_busy", "--duration-us", "100",
                    "--json", str(js))
    assert rc == 0
    assert Trace.from_json(js.read_text(encoding="utf-8")).end == tr.config.ticks(100)


def test_run_scenario_choices_come_from_the_scenarios(capsys, fake_scenarios):
    err = _usage_error(capsys, "run", "--scenario", "nope")
    assert "--scenario" in err and "one_busy" in err


def test_scenarios_subcommand_with_a_stand_in_module(capsys, fake_scenarios):
    rc, out, _ = _run(capsys, "scenarios", "-v")
    assert rc == 0
    assert out.splitlines()[0].split(None, 1) == ["one_busy", "One busy vcpu, one idle"]
    assert "vcpu 0 runs; vcpu 1 cedes." in out and "duration 400.0 us" in out


def test_scenario_that_does_not_fit_an_override_is_exit_2(capsys, fake_scenarios):
    rc, _, err = _run(capsys, "run", "--scenario", "one_busy", "--threads", "1")
    assert rc == 2 and "vcpus" in err


def test_png_with_a_stand_in_timeline(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    def timeline(trace):
        fig = Figure()
        fig.add_subplot().plot([0, trace.us(trace.end)], [0, 1])
        return fig

    mod = types.ModuleType("kvmcede.plots")
    mod.timeline = timeline
    monkeypatch.setitem(sys.modules, "kvmcede.plots", mod)
    png = tmp_path / "t.png"
    rc, _, err = _run(capsys, "run", *SHORT, "--png", str(png))
    assert rc == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- sweep ----------------------------------------------------------------------------------

def test_sweep_prints_one_row_per_run_and_writes_csv(capsys, tmp_path):
    path = tmp_path / "s.csv"
    rc, out, _ = _run(capsys, "sweep", "--idle-fraction", "0.25", "0.75", "--seeds", "0",
                      "1", *SHORT, "--executor", "serial", "--no-progress", "--csv",
                      str(path))
    assert rc == 0
    assert "sweep: 8 runs" in out
    lines = out.splitlines()
    header = next(ln for ln in lines if ln.split()[:1] == ["policy"]).split()
    assert header[:3] == ["policy", "idle_fraction", "seed"]
    assert "whole_core_exits" in header and "lost_guest_fraction" in header
    body = lines[lines.index(next(ln for ln in lines if ln.startswith("--"))) + 1:]
    rows = [ln.split() for ln in body if ln.split()[:1] in (["realmode"], ["host"])]
    assert [r[0] for r in rows] == ["realmode"] * 4 + ["host"] * 4
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 8 and table[0]["duration_us"] == "2000.0"


def test_sweep_metrics_flag_selects_columns(capsys):
    rc, out, _ = _run(capsys, "sweep", "--policy", "realmode", "--threads", "1", "2",
                      *SHORT, "--executor", "thread", "--workers", "2", "--no-progress",
                      "--metrics", "naps", "steps")
    assert rc == 0
    header = next(ln for ln in out.splitlines() if "naps" in ln).split()
    assert header == ["threads_per_core", "vcpus", "naps", "steps"]


def test_sweep_with_the_default_process_pool(capsys):
    # An ablation of the real-mode protocol has no effect under policy host (an error):
    # the ablation axis is swept under policy realmode.
    rc, out, _ = _run(capsys, "sweep", "--policy", "realmode", "--ablation", "none",
                      "no_ipi_on_exit", *SHORT, "--workers", "2", "--no-progress")
    assert rc == 0 and "sweep: 2 runs" in out and "no_ipi_on_exit" in out


def test_sweep_invalid_combination_is_exit_2(capsys):
    rc, _, err = _run(capsys, "sweep", "--threads", "2", "--vcpus", "4", *SHORT,
                      "--executor", "serial")
    assert rc == 2 and "vcpus" in err and "grid point" in err


# ---- explore --------------------------------------------------------------------------------

def test_explore_delegates_arguments_and_exit_status_to_the_explorer(capsys, monkeypatch):
    mod = types.ModuleType("kvmcede.explorer")

    def add_cli_arguments(p):
        p.add_argument("--depth", type=int, default=3, help="how deep to look")

    def cli_main(args):
        print(f"explored to depth {args.depth}")
        return 1  # "found a violation"

    mod.add_cli_arguments, mod.cli_main = add_cli_arguments, cli_main
    monkeypatch.setitem(sys.modules, "kvmcede.explorer", mod)
    rc, out, _ = _run(capsys, "explore", "--depth", "7")
    assert rc == 1 and out == "explored to depth 7\n"
    with pytest.raises(SystemExit):
        main(["explore", "--help"])
    assert "how deep to look" in capsys.readouterr().out


def test_broken_explorer_disables_only_explore(capsys, monkeypatch):
    mod = types.ModuleType("kvmcede.explorer")

    def add_cli_arguments(p):
        raise RuntimeError("half-written")

    mod.add_cli_arguments = add_cli_arguments
    monkeypatch.setitem(sys.modules, "kvmcede.explorer", mod)
    rc, _, err = _run(capsys, "explore", "--anything")
    assert rc == 4 and "half-written" in err
    rc, _, _ = _run(capsys, "run", *SHORT)
    assert rc == 0


def test_explore_runs_or_explains_that_the_explorer_is_missing(capsys):
    if _has("kvmcede.explorer"):
        parser = build_parser()
        sub = next(a for a in parser._subparsers._group_actions)  # the subcommand action
        explore = sub.choices["explore"]
        # The explorer module owns its arguments; its own tests exercise them.
        assert explore.get_default("_explore") is importlib.import_module("kvmcede.explorer")
        return
    rc, _, err = _run(capsys, "explore")
    assert rc == 4
    assert "kvmcede.explorer" in err and "not available" in err


# ---- limits, output paths, exit codes ---------------------------------------------------------

def test_exit_codes_are_distinct_and_documented(capsys):
    from kvmcede import cli
    codes = [cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_NOT_FINISHED,
             cli.EXIT_UNAVAILABLE, cli.EXIT_OUTPUT, cli.EXIT_INTERRUPTED, cli.EXIT_PIPE]
    assert len(set(codes)) == len(codes) and set(codes) == set(EXIT_CODES)
    assert (cli.EXIT_NOT_FINISHED, cli.EXIT_UNAVAILABLE) == (3, 4)
    for sub in ("run", "sweep", "explore"):
        with pytest.raises(SystemExit):
            main([sub, "--help"])
        out = capsys.readouterr().out
        assert "exit status:" in out and "not finished" in out and "limits" in out


@pytest.mark.parametrize("argv, flag", [
    (["run", "--duration-us", "1e300"], "--duration-us"),
    (["run", "--duration-us", "1e12"], "--duration-us"),
    (["run", "--duration-us", "inf"], "--duration-us"),
    (["run", "--duration-us", "nan"], "--duration-us"),
    (["run", "--scenario", "headline", "--duration-us", "1e300"], "--duration-us"),
    (["run", "--interrupt-rate", "1e300"], "--interrupt-rate"),
    (["run", "--interrupt-rate", "inf"], "--interrupt-rate"),
    (["run", "--idle-us", "1e300"], "--idle-us"),
    (["run", "--idle-fraction", "nan"], "--idle-fraction"),
    (["sweep", "--duration-us", "1e300"], "--duration-us"),
    (["sweep", "--interrupt-rate", "0", "1e300"], "--interrupt-rate"),
    (["sweep", "--workers", "100000"], "--workers"),
])
def test_absurd_numbers_are_rejected_before_any_work(capsys, argv, flag):
    err = _usage_error(capsys, *argv)
    assert f"argument {flag}" in err
    assert any(w in err for w in ("at most", "<=", "0 to 1")), err


def test_a_random_workload_too_big_to_finish_is_rejected_up_front(capsys):
    rc, out, err = _run(capsys, "run", "--duration-us", "1e7", "--idle-us", "1e-6")
    assert rc == 2 and out == "" and "--idle-us" in err and "at most 50,000" in err
    rc, out, err = _run(capsys, "run", "--duration-us", "1e7", "--interrupt-rate", "1e6")
    assert rc == 2 and out == "" and "--interrupt-rate" in err


def test_a_sweep_too_big_to_finish_is_rejected_up_front(capsys):
    rc, out, err = _run(capsys, "sweep", "--seeds", *map(str, range(6000)))
    assert rc == 2 and out == "" and "runs" in err and "10,000" in err
    rc, out, err = _run(capsys, "sweep", "--duration-us", "1e7", "--idle-us", "1000",
                        "--seeds", *map(str, range(60)))
    assert rc == 2 and out == "" and "in all" in err


@pytest.mark.parametrize("flag", ["--json", "--perfetto", "--png"])
def test_run_checks_output_paths_before_the_run(capsys, tmp_path, flag):
    rc, out, err = _run(capsys, "run", *SHORT, flag, str(tmp_path / "missing" / "x"))
    assert rc == 2 and out == "" and flag in err and "does not exist" in err
    rc, out, err = _run(capsys, "run", *SHORT, flag, str(tmp_path))
    assert rc == 2 and out == "" and "is a directory" in err


def test_sweep_and_explore_check_output_paths_before_the_run(capsys, tmp_path):
    rc, out, err = _run(capsys, "sweep", *SHORT, "--executor", "serial", "--csv",
                        str(tmp_path / "no" / "x.csv"))
    assert rc == 2 and out == "" and "--csv" in err and "does not exist" in err
    if _has("kvmcede.explorer"):
        rc, out, err = _run(capsys, "explore", "no_nv_save", "--no-progress", "--json",
                            str(tmp_path / "no" / "x.json"))
        assert rc == 2 and out == "" and "--json" in err


def test_two_outputs_into_one_file_are_rejected(capsys, tmp_path):
    p = str(tmp_path / "t.json")
    rc, _, err = _run(capsys, "run", *SHORT, "--json", p, "--perfetto", p)
    assert rc == 2 and "the same file as --json" in err


def test_a_write_that_fails_after_the_run_goes_to_a_fallback_file(capsys, tmp_path,
                                                                  monkeypatch):
    from kvmcede import cli
    target = tmp_path / "t.json"
    real = cli._write_text

    def flaky(path, text):
        if path == str(target):
            raise OSError("disk full")
        real(path, text)

    monkeypatch.setattr(cli, "_write_text", flaky)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    rc, out, err = _run(capsys, "run", *SHORT, "--json", str(target))
    assert rc == cli.EXIT_OUTPUT and "disk full" in err and "instead" in err
    (fallback,) = cwd.iterdir()
    assert str(fallback) in err
    assert Trace.from_json(fallback.read_text()).source == "simulate"
    assert "whole-core exits" in out or out  # the metrics were printed all the same


def test_the_documented_explorer_limits_are_the_explorer_s():
    from kvmcede.cli import LIMITS
    from kvmcede.explorer import MAX_BUDGET, MAX_SECONDS_LIMIT, MAX_STATES_LIMIT
    text = LIMITS["explore"]
    assert f"{MAX_STATES_LIMIT:,}" in text and f"{MAX_SECONDS_LIMIT:g}" in text
    assert f"0 .. {MAX_BUDGET}" in text


def test_run_metrics_only_keeps_no_events_and_prints_the_same_metrics(capsys):
    rc, out, _ = _run(capsys, "run", *SHORT, "--metrics-only")
    assert rc == 0 and "metrics only, no events kept" in out
    rc, full, _ = _run(capsys, "run", *SHORT)
    assert rc == 0
    assert out.split("\n\n", 1)[1] == full.split("\n\n", 1)[1]  # the same metrics table
    rc, _, err = _run(capsys, "run", *SHORT, "--metrics-only", "--events")
    assert rc == 2 and "--metrics-only" in err and "--events" in err
