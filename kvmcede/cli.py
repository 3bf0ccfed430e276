"""The command line: ``python -m kvmcede`` (or the ``kvmcede`` console script).

Subcommands::

    kvmcede run        simulate a named scenario or a random workload, print its metrics
    kvmcede scenarios  list the named scenarios
    kvmcede sweep      simulate a small grid of configurations, print one row per run
    kvmcede explore    explore every interleaving of a small configuration

Every time on the command line is in microseconds of simulated machine time.  The
exit codes are listed in :data:`EXIT_CODES` (and in ``kvmcede --help``).

Every input is checked before any work starts: each numeric flag has an explicit upper
bound (:data:`LIMITS`, also in each flag's help), so that no accepted command line runs
unbounded, and every output path (``--json``, ``--perfetto``, ``--png``, ``--csv``) must
name a file in an existing, writable directory.  If a write still fails after the run,
the output goes to a fallback file in the current directory (or the system's temporary
directory) and the message says where.

Scenarios (:mod:`kvmcede.scenarios`), timeline plots (:mod:`kvmcede.plots`, needs
matplotlib) and the explorer (:mod:`kvmcede.explorer`) are imported lazily: if one of
them cannot be imported, only the subcommand or option that needs it fails, with a
message saying why, and everything else still works.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import itertools
import os
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TextIO

from . import __version__
from .config import ABLATIONS, BASE_KERNEL, BUGS, CHANGES, CPUS, MEMORY_MODES, POLICIES, Config
from .guest import random_workload
from .sim import InvariantViolation, simulate
from .trace import Trace

__all__ = ["EXIT_CODES", "LIMITS", "build_parser", "check_output_path", "main",
           "write_output"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FINISHED = 3
EXIT_UNAVAILABLE = 4
EXIT_OUTPUT = 5
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141

#: What each exit status of ``kvmcede`` means.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success; for `explore`: every property holds in every reachable state",
    EXIT_FAILED: "the model found a problem: `explore` found a violation, or an invariant "
                 "broke during `run --check-invariants`",
    EXIT_USAGE: "bad input: bad command line or invalid configuration (the message names "
                "the flag or field, the value and what is allowed); nothing was run",
    EXIT_NOT_FINISHED: "not finished: `explore` reached --max-states or --max-seconds "
                       "before visiting every state, and found no violation so far (not a "
                       "proof; the counts reached are printed)",
    EXIT_UNAVAILABLE: "an optional part is not installed: matplotlib / kvmcede.plots for "
                      "--png, kvmcede.scenarios, kvmcede.explorer",
    EXIT_OUTPUT: "the run finished but an output file could not be written; it was saved "
                 "to the fallback file the message names (a verdict of 1 or 3 takes "
                 "precedence)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); `explore` first prints the counts it reached",
    EXIT_PIPE: "standard output was closed early (e.g. `kvmcede run --events | head`)",
}

#: Upper bounds of the command line's numbers, so that every accepted input finishes.
#: Simulated time: 10 s.  A random workload: at most this many idle periods plus device
#: interrupts per run, all vcpus together (an idle period costs about 15 model steps: at
#: the limit about 750,000 steps, under a minute and 0.5 GB).
MAX_DURATION_US = 1e7
MAX_IDLE_US = 1e7
MAX_INTERRUPT_RATE = 1e6
MAX_WORKLOAD_EVENTS = 50_000
#: A sweep: at most this many runs, and this many workload events over all of them.
MAX_SWEEP_RUNS = 10_000
MAX_SWEEP_EVENTS = 2_000_000
MAX_WORKERS = 64

#: The limits, in words (printed under "limits" in every --help).
LIMITS: dict[str, str] = {
    "--duration-us": f"simulated time per run, > 0 and <= {MAX_DURATION_US:g} us (10 s)",
    "--idle-us": f"mean idle period, > 0 and <= {MAX_IDLE_US:g} us",
    "--interrupt-rate": f"device interrupts per second per vcpu, 0 .. {MAX_INTERRUPT_RATE:g}",
    "workload size": f"a random workload has at most {MAX_WORKLOAD_EVENTS:,} idle periods "
                     "and interrupts per run (about vcpus x duration x (idle fraction / "
                     "idle-us + rate / 1e6))",
    "sweep": f"at most {MAX_SWEEP_RUNS:,} runs and {MAX_SWEEP_EVENTS:,} workload events in "
             "all",
    "--workers": f"1 .. {MAX_WORKERS}",
    "explore": "--max-states 1 .. 5,000,000 (about 4 GB), --max-seconds > 0 .. 3600, "
               "each budget (--interrupts ...) 0 .. 100",
}

#: Defaults of a random workload run from the command line.
RANDOM_DURATION_US = 20_000.0
SWEEP_DURATION_US = 20_000.0
#: Metric columns `kvmcede sweep` prints unless --metrics says otherwise.
SWEEP_METRICS = ("whole_core_exits", "cede_exits", "ipis_to_nappers", "naps",
                 "vcore_sleeps", "lost_guest_fraction", "guest_fraction", "latency_mean_us")



#: One line per later kernel change, for --help.
_CHANGE_TEXT = {c: f"Linux {v}: {title}. {what}" for c, (v, title, what) in CHANGES.items()}


def add_kernel_arguments(g) -> None:
    """The options that say which kernel runs: ``--change ID`` (repeatable) and
    ``--kernel VERSION`` (shared by ``run`` and ``explore``)."""
    g.add_argument("--change", action="append", choices=sorted(CHANGES), default=[],
                   metavar="ID", help="switch on a later kernel change by commit id "
                   "(repeatable; listed below): " + ", ".join(sorted(CHANGES)))
    g.add_argument("--kernel", metavar="VERSION", default=None, type=_kernel_version,
                   help=f"every change up to this kernel version (default {BASE_KERNEL}, "
                        "as shipped), e.g. 4.10")


def _kernel_version(text: str) -> str:
    try:
        Config.linux(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def changes_from_args(args: argparse.Namespace) -> frozenset[str]:
    """The changes ``--change`` and ``--kernel`` ask for (ValueError on a bad version)."""
    changes = frozenset(args.change)
    if args.kernel is not None:
        changes |= Config.linux(args.kernel).changes
    return changes


def _described(names: dict[str, str], width: int = 18) -> str:
    """``name  description`` lines, the description wrapped with a hanging indent."""
    return "\n".join(textwrap.fill(d, 79, initial_indent=f"  {n:<{width}} ",
                                    subsequent_indent=" " * (width + 3),
                                    break_on_hyphens=False)
                      for n, d in sorted(names.items(), key=lambda kv: str(kv[0])))


KERNEL_EPILOG = (f"kernel: Linux {BASE_KERNEL} as shipped by default, with its bugs ("
                 + ", ".join(sorted(BUGS)) + "); --change ID switches a later change on, "
                 "--kernel VERSION every change up to that version:\n"
                 + _described(_CHANGE_TEXT))

_EPILOG_EXIT = ("limits (every input within them finishes):\n"
                + _described(LIMITS, width=17) + "\n\nexit status:\n" + _described(
                    {str(code).rjust(3): text for code, text in EXIT_CODES.items()}, width=3))


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the hand-wrapped descriptions and epilogs; wider option column."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


# ============================================================================================
# Optional modules (written separately; imported lazily)
# ============================================================================================

def _optional(name: str) -> tuple[ModuleType | None, str]:
    """Import ``name``; return (module, "") or (None, why it is not available)."""
    try:
        return importlib.import_module(name), ""
    except Exception as e:  # a missing *or* broken module disables only what needs it
        return None, f"{type(e).__name__}: {e}"


# ============================================================================================
# Argument types (argparse turns their ArgumentTypeError into "argument --flag: ...")
# ============================================================================================

def _number(text: str, ok: Callable[[float], bool], what: str) -> float:
    """Parse a float that ``ok`` accepts, else an error saying it must be ``what``."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return v


def _duration_us(text: str) -> float:
    return _number(text, lambda v: 0 < v <= MAX_DURATION_US,
                   f"a positive number of microseconds, at most {MAX_DURATION_US:g} (10 s "
                   "of simulated time)")


def _idle_us(text: str) -> float:
    return _number(text, lambda v: 0 < v <= MAX_IDLE_US,
                   f"a positive number of microseconds, at most {MAX_IDLE_US:g}")


def _fraction(text: str) -> float:
    return _number(text, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1")


def _rate(text: str) -> float:
    return _number(text, lambda v: 0.0 <= v <= MAX_INTERRUPT_RATE,
                   f"a number >= 0 and <= {MAX_INTERRUPT_RATE:g} (interrupts per second "
                   "per vcpu)")


def _bounded_int(text: str, low: int, high: int) -> int:
    try:
        v: int | None = int(text)
    except ValueError:
        v = None
    if v is None or not low <= v <= high:
        raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high:,}, got "
                                         f"{text!r}")
    return v


def _workers(text: str) -> int:
    try:
        return _bounded_int(text, 1, MAX_WORKERS)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, at most "
                                         f"{MAX_WORKERS}, got {text!r}") from None


def _workload_events(vcpus: int, duration_us: float, idle_fraction: float, idle_us: float,
                     interrupt_rate: float) -> float:
    """About how many idle periods and device interrupts a random workload has."""
    periods = 0.0 if idle_fraction in (0.0, 1.0) else duration_us * idle_fraction / idle_us
    return vcpus * (periods + interrupt_rate * duration_us / 1e6)


def _count(n: float) -> str:
    return f"{n:,.0f}" if n < 1e12 else f"{n:.3g}"


def _workload_too_big(vcpus: int, duration_us: float, idle_fraction: float, idle_us: float,
                      interrupt_rate: float) -> str:
    """Why a random workload is too big for one run ("" if it is not)."""
    n = _workload_events(vcpus, duration_us, idle_fraction, idle_us, interrupt_rate)
    if n <= MAX_WORKLOAD_EVENTS:
        return ""
    return (f"--duration-us {duration_us:g} with --idle-fraction {idle_fraction:g}, "
            f"--idle-us {idle_us:g} and --interrupt-rate {interrupt_rate:g} on {vcpus} vcpus "
            f"makes about {_count(n)} idle periods and interrupts per run; at most "
            f"{MAX_WORKLOAD_EVENTS:,} are allowed (shorten --duration-us, lower "
            "--interrupt-rate or lengthen --idle-us)")


# ============================================================================================
# Output files: checked before the run; a write that fails after it goes to a fallback
# ============================================================================================

def check_output_path(flag: str, path: str) -> str:
    """Why ``path`` cannot be written as the output of ``flag`` ("" if it can): it must
    name a file (not a directory) in an existing directory we may write to."""
    if not path:
        return f"{flag}: the path is empty"
    if os.path.isdir(path):
        return f"{flag} {path!r}: is a directory; give a file name"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"{flag} {path!r}: the directory {parent!r} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{flag} {path!r}: the directory {parent!r} is not writable"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return f"{flag} {path!r}: the file exists and is not writable"
    return ""


def check_outputs(args: argparse.Namespace, flags: Sequence[str]) -> str:
    """Check every output flag given in ``args``; the first problem ("" if none)."""
    seen: dict[str, str] = {}
    for flag in flags:
        path = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if path is None:
            continue
        why = check_output_path(flag, path)
        if why:
            return why
        key = os.path.realpath(path)
        if key in seen:
            return f"{flag} {path!r}: the same file as {seen[key]}; give each its own"
        seen[key] = flag
    return ""


def write_output(prog: str, flag: str, path: str, write: Callable[[str], None],
                 what: str, out: TextIO) -> bool:
    """``write(path)``; if that fails, ``write`` a fallback file in the current directory
    (or the temporary directory) instead, and say where on stderr.  Return True if
    ``path`` itself was written."""
    try:
        write(path)
    except Exception as e:
        reason = f"{type(e).__name__}: {e}"
    else:
        print(f"wrote {what}: {path}", file=out)
        return True
    name = f"kvmcede-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{os.path.basename(path)}"
    for directory in (os.getcwd(), tempfile.gettempdir()):
        fallback = os.path.join(directory, name)
        try:
            write(fallback)
        except Exception:
            continue
        print(f"{prog}: error: could not write {flag} {path!r} ({reason}); wrote the "
              f"{what} to {fallback!r} instead", file=sys.stderr)
        return False
    print(f"{prog}: error: could not write {flag} {path!r} ({reason}), nor a fallback "
          f"copy in {os.getcwd()!r} or {tempfile.gettempdir()!r}; the {what} is lost",
          file=sys.stderr)
    return False


# ============================================================================================
# The parser
# ============================================================================================

def build_parser() -> argparse.ArgumentParser:
    """The ``kvmcede`` argument parser, with every subcommand."""
    scen_mod, scen_err = _optional("kvmcede.scenarios")
    scen_names = list(getattr(scen_mod, "SCENARIOS", {})) if scen_mod else []

    parser = argparse.ArgumentParser(
        prog="kvmcede", formatter_class=_Formatter,
        description=(
            "kvmcede: an executable model of KVM on POWER7 ceding an idle vcpu's hardware\n"
            "thread in real mode (H_CEDE; Linux commit 19ccb76a1938).  It simulates one\n"
            "POWER7 core running one vcore of a guest, step by step at the grain of the\n"
            "kernel code, under the commit's policy ('realmode') or the one before it\n"
            "('host'), and reports what the protocol cost: whole-core exits, IPIs to\n"
            "napping threads, naps, vcore sleeps, interrupt latency and the guest time\n"
            "busy vcpus lost to other vcpus' idleness.\n\n"
            "All times are microseconds of simulated machine time.\n"
            "Run `kvmcede SUBCOMMAND --help` for the options of each subcommand."),
        epilog=(
            "examples:\n"
            "  kvmcede run --random --policy host --idle-fraction 0.75\n"
            "  kvmcede run --scenario NAME --events --perfetto trace.json\n"
            "  kvmcede sweep --policy realmode host --idle-fraction 0.25 0.5 0.75\n\n"
            + _EPILOG_EXIT))
    parser.add_argument("--version", action="version", version=f"kvmcede {__version__}")
    sub = parser.add_subparsers(title="subcommands", dest="command", metavar="SUBCOMMAND")
    sub.required = True

    _add_run(sub, scen_names, scen_err)
    _add_scenarios(sub, scen_err)
    _add_sweep(sub)
    _add_explore(sub)
    return parser


def _add_machine_options(p: argparse.ArgumentParser, *, many: bool) -> None:
    """--vcpus --threads --policy --cpu --memory (one value each, or lists for sweeps)."""
    nargs = "+" if many else None
    each = " (one or more values)" if many else ""
    g = p.add_argument_group("machine and protocol variant")
    g.add_argument("--threads", type=int, choices=(1, 2, 4), nargs=nargs, metavar="N",
                   help=f"SMT mode: hardware threads per core, 1, 2 or 4{each} "
                        "(default: 4, POWER7 SMT4)")
    g.add_argument("--vcpus", type=int, choices=(1, 2, 3, 4), nargs=nargs, metavar="N",
                   help=f"vcpus in the vcore, 1..threads{each} (default: as many as "
                        "threads when --threads is given, else 4)")
    g.add_argument("--policy", choices=POLICIES, nargs=nargs, metavar="POLICY",
                   help=f"how H_CEDE is handled{each}: 'realmode' = the commit (nap in the "
                        "guest partition), 'host' = before it (every H_CEDE takes the "
                        "whole core out to the host; details inferred) " +
                        ("(default: both)" if many else "(default: realmode)"))
    g.add_argument("--cpu", choices=CPUS, nargs=nargs, metavar="CPU",
                   help=f"processor{each}: POWER7, or PPC970 (SMT1, no nap in the "
                        "guest) (default: POWER7)")
    g.add_argument("--memory", choices=MEMORY_MODES, nargs=nargs, metavar="MODE",
                   help=f"memory model{each}: 'sc' sequentially consistent, or "
                        "'store_buffer' (per-thread store FIFOs drained by sync) "
                        "(default: sc)")


def _add_run(sub, scen_names: list[str], scen_err: str) -> None:
    scen_help = ("scenarios: " + ", ".join(scen_names)) if scen_names else (
        f"(no scenarios available: {scen_err})" if scen_err else "(no scenarios defined)")
    p = sub.add_parser(
        "run", formatter_class=_Formatter,
        help="simulate a named scenario or a random workload and print its metrics",
        description=(
            "Simulate one workload on one configuration and print the metrics table:\n"
            "whole-core exits (by the first exiter's reason), IPIs to napping threads,\n"
            "host IPIs (kicks), naps in H_CEDE, vcore sleeps, host wake-ups, the guest\n"
            "time busy vcpus lost to other vcpus' idleness, interrupt delivery latency\n"
            "(raised -> executing at its vector) and each vcpu's time split\n"
            "(guest / nap / ceded / out / stopped).  All times in microseconds.\n\n"
            "The workload is a named scenario (--scenario; see `kvmcede scenarios`) or,\n"
            "by default, a random one (--random): every vcpu alternates busy bursts and\n"
            "idle periods (H_CEDE) with exponential lengths, plus Poisson device\n"
            "interrupts.  The machine options override a scenario's configuration;\n"
            "--ablation and --change add to it."),
        epilog=("ablations (remove one line's worth of the protocol):\n"
                + _described(ABLATIONS) + "\n\n" + KERNEL_EPILOG + "\n\n" + _EPILOG_EXIT))
    src = p.add_argument_group("workload (one of)").add_mutually_exclusive_group()
    src.add_argument("--scenario", metavar="NAME", choices=scen_names or None,
                     help=f"run a named scenario for its own duration; {scen_help}")
    src.add_argument("--random", action="store_true",
                     help="run a random workload (the default when --scenario is absent)")
    _add_machine_options(p, many=False)
    g = p.add_argument_group("protocol changes (repeatable)")
    g.add_argument("--ablation", action="append", choices=sorted(ABLATIONS), default=[],
                   metavar="NAME", help="apply a teaching ablation (listed below); repeat "
                                        "the flag for several")
    add_kernel_arguments(g)
    r = p.add_argument_group("random workload (only with --random)")
    r.add_argument("--idle-fraction", type=_fraction, metavar="F",
                   help="fraction of time each vcpu is idle, 0..1 (default: 0.5)")
    r.add_argument("--idle-us", type=_idle_us, metavar="US",
                   help=f"mean idle period in microseconds, > 0 and <= {MAX_IDLE_US:g} "
                        "(default: 1000)")
    r.add_argument("--interrupt-rate", type=_rate, metavar="R",
                   help="device interrupts per second per vcpu, 0 .. "
                        f"{MAX_INTERRUPT_RATE:g} (default: 0)")
    r.add_argument("--seed", type=int, metavar="N",
                   help="seed of the random workload (default: 0); the same seed gives "
                        "the same trace")
    t = p.add_argument_group("time and checks")
    t.add_argument("--duration-us", type=_duration_us, metavar="US",
                   help=f"simulated time in microseconds, > 0 and <= {MAX_DURATION_US:g} "
                        "(10 s) (default: the scenario's own duration, or "
                        f"{RANDOM_DURATION_US:,.0f} for --random)")
    t.add_argument("--check-invariants", action="store_true",
                   help="check the invariants of reference section 10 after every step; "
                        "exit 1 on the first violation (slower)")
    o = p.add_argument_group("output")
    o.add_argument("--metrics-only", action="store_true",
                   help="keep no events, only the metrics (memory stays flat however long "
                        "the run; not with --events, --json, --perfetto or --png)")
    o.add_argument("--events", action="store_true",
                   help="print the kernel events step by step (time in us, hardware "
                        "thread, vcpu, kernel function or label, detail) before the metrics")
    o.add_argument("--json", metavar="PATH",
                   help="write the trace as JSON (lossless; load with Trace.from_json)")
    o.add_argument("--perfetto", metavar="PATH",
                   help="write the trace in Chrome trace-event JSON (open in "
                        "ui.perfetto.dev)")
    o.add_argument("--png", metavar="PATH",
                   help="write a timeline figure as PNG (needs matplotlib)")
    p.set_defaults(_kvmcede_cmd=_cmd_run, _parser=p)


def _add_scenarios(sub, scen_err: str) -> None:
    p = sub.add_parser(
        "scenarios", formatter_class=_Formatter,
        help="list the named scenarios (for `kvmcede run --scenario NAME`)",
        description=("List the named scenarios: the worked examples of the reference\n"
                     "(section 9) and the book's chapters, each a configuration, a\n"
                     "scripted workload and a duration.  Run one with\n"
                     "`kvmcede run --scenario NAME`."),
        epilog=_EPILOG_EXIT)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also print each scenario's description, configuration and "
                        "duration (us)")
    p.set_defaults(_kvmcede_cmd=_cmd_scenarios, _parser=p, _scen_err=scen_err)


def _add_sweep(sub) -> None:
    from .sweep import metric_names
    try:
        metrics = list(metric_names())
    except Exception:  # the simulator is broken: let `sweep` itself report it
        metrics = None
    p = sub.add_parser(
        "sweep", formatter_class=_Formatter,
        help="simulate a grid of configurations and random workloads; one row per run",
        description=(
            "Simulate the cartesian product of the values given (each flag takes one or\n"
            "more values) times the seeds, with random workloads, and print one row per\n"
            "run: the parameters that vary, then the metrics.  Runs go to a process pool\n"
            "by default.  Fractions are of the vcpus' total time; times in microseconds.\n"
            "Without --policy both policies are compared."),
        epilog=("metrics (--metrics): the keys of Metrics.summary() and the model's step "
                "count;\n*_fraction = share of the vcpus' total time, *_us = microseconds:\n"
                + textwrap.fill(", ".join(metrics or ["(unavailable)"]), 79,
                                initial_indent="  ", subsequent_indent="  ")
                + "\n\nablation values: 'none' or one of\n"
                + _described(ABLATIONS) + "\n\nchange values: 'none' or one of\n"
                + _described(_CHANGE_TEXT) + "\n\n"
                "example:\n  kvmcede sweep --policy realmode host --idle-fraction 0.25 0.75 "
                "--seeds 0 1 --csv out.csv\n\n" + _EPILOG_EXIT))
    _add_machine_options(p, many=True)
    g = p.add_argument_group("protocol changes")
    g.add_argument("--ablation", nargs="+", choices=["none", *sorted(ABLATIONS)],
                   metavar="NAME", help="ablation axis: each value is one point ('none': no "
                                        "ablation) (default: none)")
    g.add_argument("--change", nargs="+", choices=["none", *sorted(CHANGES)], metavar="ID",
                   help="kernel-change axis: each value is one point, a later change "
                        "switched on ('none': Linux 3.4 as shipped) (default: none)")
    r = p.add_argument_group("random workload")
    r.add_argument("--idle-fraction", type=_fraction, nargs="+", metavar="F",
                   help="fractions of time each vcpu is idle, 0..1 (default: 0.5)")
    r.add_argument("--idle-us", type=_idle_us, nargs="+", metavar="US",
                   help=f"mean idle periods in microseconds, > 0 and <= {MAX_IDLE_US:g} "
                        "(default: 1000)")
    r.add_argument("--interrupt-rate", type=_rate, nargs="+", metavar="R",
                   help="device interrupts per second per vcpu, 0 .. "
                        f"{MAX_INTERRUPT_RATE:g} (default: 0)")
    r.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="N",
                   help="seeds; every grid point runs once per seed (default: 0)")
    r.add_argument("--duration-us", type=_duration_us, default=SWEEP_DURATION_US,
                   metavar="US", help="simulated time of each run in microseconds, > 0 "
                                      f"and <= {MAX_DURATION_US:g} (default: "
                                      f"{SWEEP_DURATION_US:,.0f})")
    x = p.add_argument_group("execution and output")
    x.add_argument("--executor", choices=("process", "thread", "serial"), default="process",
                   help="where the runs go: a process pool, a thread pool, or one after "
                        "the other in this process (default: process)")
    x.add_argument("--workers", type=_workers, metavar="N",
                   help=f"pool size, 1 .. {MAX_WORKERS} (default: the CPUs available)")
    x.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar on stderr (needs tqdm) (default: when stderr "
                        "is a terminal)")
    x.add_argument("--metrics", nargs="+", choices=metrics, metavar="NAME",
                   help="metric columns to print (listed below) (default: "
                        + " ".join(SWEEP_METRICS) + ")")
    x.add_argument("--csv", metavar="PATH",
                   help="also write every column of every run as CSV")
    p.set_defaults(_kvmcede_cmd=_cmd_sweep, _parser=p)


def _add_explore(sub) -> None:
    ex, err = _optional("kvmcede.explorer")
    p = sub.add_parser(
        "explore", formatter_class=_Formatter,
        help="explore every interleaving of a small configuration; check the invariants",
        description=(
            "Ignore time and explore every order of the enabled steps of a small\n"
            "configuration (breadth-first over the machine states), checking the\n"
            "invariants of reference section 10 and liveness; report 'holds for all N\n"
            "states' or the shortest counterexample.")
        + ("" if ex else f"\n\nNot available in this installation: {err}"),
        epilog=_EPILOG_EXIT)
    if ex is not None:
        try:
            ex.add_cli_arguments(p)
        except Exception as e:
            ex, err = None, f"kvmcede.explorer.add_cli_arguments failed: {type(e).__name__}: {e}"
    p.set_defaults(_kvmcede_cmd=_cmd_explore, _parser=p, _explore=ex, _explore_err=err)


# ============================================================================================
# Subcommands
# ============================================================================================

def _error(args: argparse.Namespace, message: str, code: int) -> int:
    """Print ``usage`` and ``prog: error: message`` to stderr, as argparse does."""
    p: argparse.ArgumentParser = args._parser
    if code == EXIT_USAGE:
        p.print_usage(sys.stderr)
    print(f"{p.prog}: error: {message}", file=sys.stderr)
    return code


def _config_summary(c: Config) -> str:
    parts = [f"policy={c.policy}", f"SMT{c.threads_per_core}",
             f"{c.vcpus} vcpu{'' if c.vcpus == 1 else 's'}",
             f"cpu={c.cpu}", f"memory={c.memory}",
             "ablations=" + (",".join(sorted(c.ablations)) or "none"),
             f"kernel={c.kernel}"]
    return ", ".join(parts)


def _cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    random_only = [f for f, v in (("--idle-fraction", args.idle_fraction),
                                  ("--idle-us", args.idle_us),
                                  ("--interrupt-rate", args.interrupt_rate),
                                  ("--seed", args.seed)) if v is not None]
    why = check_outputs(args, ("--json", "--perfetto", "--png"))
    if why:
        return _error(args, why, EXIT_USAGE)
    if args.png is not None:
        why = _png_unavailable()
        if why:
            return _error(args, f"--png: {why}", EXIT_UNAVAILABLE)

    overrides: dict[str, object] = {}
    for flag, field in (("threads", "threads_per_core"), ("vcpus", "vcpus"),
                        ("policy", "policy"), ("cpu", "cpu"), ("memory", "memory")):
        v = getattr(args, flag)
        if v is not None:
            overrides[field] = v
    try:
        if args.scenario is not None:
            if random_only:
                return _error(args, f"{', '.join(random_only)}: only with --random, not "
                                    "with --scenario", EXIT_USAGE)
            scen_mod, err = _optional("kvmcede.scenarios")
            if scen_mod is None:
                return _error(args, f"--scenario: kvmcede.scenarios is not available "
                                    f"({err})", EXIT_UNAVAILABLE)
            sc = scen_mod.scenario(args.scenario)
            base = sc.config
            config = base.replace(
                **overrides, ablations=base.ablations | set(args.ablation),
                changes=base.changes | changes_from_args(args))
            workload = sc.workload
            until = args.duration_us if args.duration_us is not None else sc.until_us
            header = f"scenario {sc.name}: {sc.title}"
        else:
            if "threads_per_core" in overrides and "vcpus" not in overrides:
                overrides["vcpus"] = overrides["threads_per_core"]  # a full vcore
            seed = args.seed if args.seed is not None else 0
            config = Config(**overrides, ablations=args.ablation,
                            changes=changes_from_args(args), seed=seed)
            until = args.duration_us if args.duration_us is not None else RANDOM_DURATION_US
            wl_args = {"idle_fraction": 0.5 if args.idle_fraction is None
                       else args.idle_fraction,
                       "idle_us": 1000.0 if args.idle_us is None else args.idle_us,
                       "interrupt_rate": 0.0 if args.interrupt_rate is None
                       else args.interrupt_rate}
            why = _workload_too_big(config.vcpus, until, **wl_args)
            if why:
                return _error(args, why, EXIT_USAGE)
            workload = random_workload(config, until, seed=seed, **wl_args)
            header = ("random workload: " + ", ".join(f"{k}={v:g}" for k, v in wl_args.items())
                      + f", seed={seed}")
        if args.metrics_only:
            clash = [f for f, v in (("--events", args.events), ("--json", args.json),
                                    ("--perfetto", args.perfetto), ("--png", args.png)) if v]
            if clash:
                return _error(args, f"--metrics-only keeps no events, so it cannot go with "
                                    f"{', '.join(clash)}", EXIT_USAGE)
            metrics = simulate(config, workload, until=until, record="metrics",
                               check_invariants=args.check_invariants)
            trace = None
        else:
            trace = simulate(config, workload, until=until,
                             check_invariants=args.check_invariants)
            metrics = trace.metrics
    except InvariantViolation as e:
        print(f"{args._parser.prog}: invariant violated: {e}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as e:
        return _error(args, str(e), EXIT_USAGE)

    print(header, file=out)
    print(f"config: {_config_summary(config)}", file=out)
    checked = ", invariants checked after every step" if args.check_invariants else ""
    if trace is None:
        print(f"simulated {metrics.duration_us:,.1f} us: {metrics.steps} steps (metrics "
              f"only, no events kept){checked}", file=out)
    else:
        print(f"simulated {trace.us(trace.end):,.1f} us: {len(trace.steps)} steps, "
              f"{len(trace.events)} events{checked}", file=out)
    if args.events:
        print("", file=out)
        _print_events(trace, out)
    print("", file=out)
    print(metrics.table(), file=out)
    if trace is None:
        return EXIT_OK

    outputs = [(flag, path, write, what) for flag, path, write, what in (
        ("--json", args.json, lambda p: _write_text(p, trace.to_json()), "trace JSON"),
        ("--perfetto", args.perfetto, trace.write_perfetto, "Perfetto trace"),
        ("--png", args.png, lambda p: _write_png(trace, p), "timeline PNG"),
    ) if path]
    if outputs:
        print("", file=out)
    ok = True
    for o in outputs:  # (every one, even after one failed)
        ok = write_output(args._parser.prog, *o, out=out) and ok
    return EXIT_OK if ok else EXIT_OUTPUT


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _print_events(trace: Trace, out: TextIO) -> None:
    """One line per kernel event: time (us), thread, vcpu, kernel name, detail."""
    print(trace.format_events(), file=out)


def _png_unavailable() -> str:
    """Why a timeline PNG cannot be drawn here ("" if it can)."""
    if importlib.util.find_spec("matplotlib") is None:
        return ("matplotlib is not installed; install it with `pip install matplotlib` "
                "(or `pip install kvmcede[plots]`)")
    plots, err = _optional("kvmcede.plots")
    if plots is None:
        return f"kvmcede.plots is not available ({err})"
    if not callable(getattr(plots, "timeline", None)):
        return "kvmcede.plots has no timeline() function"
    return ""


def _write_png(trace: Trace, path: str) -> None:
    plots = importlib.import_module("kvmcede.plots")
    drawn = plots.timeline(trace)
    fig = drawn if hasattr(drawn, "savefig") else drawn.figure  # a Figure or an Axes
    fig.savefig(path, format="png")
    import matplotlib.pyplot as plt
    plt.close(fig)


def _cmd_scenarios(args: argparse.Namespace, out: TextIO) -> int:
    scen_mod, err = _optional("kvmcede.scenarios")
    if scen_mod is None:
        return _error(args, f"kvmcede.scenarios is not available ({err})", EXIT_UNAVAILABLE)
    scens = scen_mod.SCENARIOS
    if not scens:
        print("(no scenarios defined)", file=out)
        return EXIT_OK
    w = max(len(n) for n in scens)
    indent = " " * (w + 4)
    for name, sc in scens.items():  # in the module's order (the reference's)
        print(f"{name:<{w}}  {sc.title}", file=out)
        if args.verbose:
            for para in str(sc.description).strip().split("\n\n"):
                print(textwrap.fill(" ".join(para.split()), 79, initial_indent=indent,
                                    subsequent_indent=indent, break_on_hyphens=False),
                      file=out)
            print(textwrap.fill(f"config: {_config_summary(sc.config)}; duration "
                                f"{sc.until_us:,.1f} us", 79, initial_indent=indent,
                                subsequent_indent=indent + "  ", break_on_hyphens=False),
                  file=out)
            print("", file=out)
    return EXIT_OK


def _cmd_sweep(args: argparse.Namespace, out: TextIO) -> int:
    import concurrent.futures as cf

    from .sweep import SerialExecutor, sweep

    grid: dict[str, list] = {"policy": args.policy or list(POLICIES)}
    for flag, key in (("threads", "threads_per_core"), ("vcpus", "vcpus"), ("cpu", "cpu"),
                      ("memory", "memory"), ("idle_fraction", "idle_fraction"),
                      ("idle_us", "idle_us"), ("interrupt_rate", "interrupt_rate")):
        v = getattr(args, flag)
        if v is not None:
            grid[key] = list(dict.fromkeys(v))
    for flag in ("ablation", "change"):
        v = getattr(args, flag)
        if v is not None:
            grid[f"{flag}s"] = [None if n == "none" else n for n in dict.fromkeys(v)]
    seeds = list(dict.fromkeys(args.seeds))
    why = check_outputs(args, ("--csv",)) or _sweep_too_big(grid, seeds, args.duration_us)
    if why:
        return _error(args, why, EXIT_USAGE)
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    executor: cf.Executor | None
    if args.executor == "serial":
        executor = SerialExecutor()
    elif args.executor == "thread":
        executor = cf.ThreadPoolExecutor(max_workers=args.workers)
    else:
        executor = None  # sweep() makes (and shuts down) its own process pool
    try:
        res = sweep(grid, seeds=seeds, duration_us=args.duration_us, executor=executor,
                    progress=progress, max_workers=args.workers)
    except ValueError as e:
        return _error(args, str(e), EXIT_USAGE)
    finally:
        if executor is not None:
            executor.shutdown()
    shape = " x ".join(f"{k} ({len(v)})" for k, v in grid.items())
    print(f"sweep: {len(res)} runs = {shape} x seeds ({len(seeds)}), "
          f"{args.duration_us:,.0f} us each", file=out)
    print("", file=out)
    cols = [*(res.varied() or ("policy",)), *(args.metrics or SWEEP_METRICS)]
    print(res.table(cols), file=out)
    if args.csv:
        print("", file=out)
        if not write_output(args._parser.prog, "--csv", args.csv, res.to_csv,
                            f"CSV ({len(res.columns)} columns)", out):
            return EXIT_OUTPUT
    return EXIT_OK


def _sweep_too_big(grid: dict[str, list], seeds: list[int], duration_us: float) -> str:
    """Why a sweep is too big to run ("" if it is not): too many runs, or a run (or all
    of them) with too many workload events."""
    runs = len(seeds)
    for values in grid.values():
        runs *= len(values)
    if runs > MAX_SWEEP_RUNS:
        return (f"the sweep has {runs:,} runs (the product of the number of values of each "
                f"flag and of --seeds); at most {MAX_SWEEP_RUNS:,} are allowed")
    keys = list(grid)
    total = 0.0
    for values in itertools.product(*grid.values()):
        point = dict(zip(keys, values, strict=True))
        vcpus = point.get("vcpus") or point.get("threads_per_core") or 4
        size = (vcpus, duration_us, point.get("idle_fraction", 0.5),
                point.get("idle_us", 1000.0), point.get("interrupt_rate", 0.0))
        why = _workload_too_big(*size)
        if why:
            return why
        total += _workload_events(*size) * len(seeds)
    if total > MAX_SWEEP_EVENTS:
        return (f"the sweep's {runs:,} runs of --duration-us {duration_us:g} make about "
                f"{_count(total)} idle periods and interrupts in all; at most "
                f"{MAX_SWEEP_EVENTS:,} are allowed (fewer values or seeds, or a shorter "
                "--duration-us)")
    return ""


def _cmd_explore(args: argparse.Namespace, out: TextIO) -> int:
    ex = args._explore
    if ex is None:
        return _error(args, "the interleaving explorer (kvmcede.explorer) is not available "
                            f"in this installation: {args._explore_err}", EXIT_UNAVAILABLE)
    why = check_outputs(args, ("--json", "--perfetto"))
    if why:
        return _error(args, why, EXIT_USAGE)
    rc = ex.cli_main(args)
    return EXIT_OK if rc is None else int(rc)


# ============================================================================================
# Entry point
# ============================================================================================

def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kvmcede`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status
    (see :data:`EXIT_CODES`).  Command-line errors, ``--help`` and ``--version`` raise
    ``SystemExit`` from argparse, as usual."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not (args._kvmcede_cmd is _cmd_explore and args._explore is None):
        # (An unavailable explorer accepts anything, so that it can say why it can't run.)
        args._parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args._kvmcede_cmd(args, sys.stdout)
    except KeyboardInterrupt:
        print("kvmcede: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`kvmcede run --events | head`): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        with contextlib.suppress(OSError, ValueError):  # stdout without a file number
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
