"""Speed of the timed simulator, against SimPy's bare event loop.

Four measurements, for each policy ("realmode" = the commit, "host" = before it):

1. **One simulated second** of the default random workload — 4 vcpus on an SMT4 core,
   every vcpu idle half of the time in periods of about 1 ms:
   ``random_workload(Config(policy=...), 1_000_000, idle_fraction=0.5, idle_us=1000,
   seed=...)``.  Reported: wall time of :func:`kvmcede.simulate` (best of ``--repeat``),
   model steps per second, and simulated time per wall time (> 1 = faster than the
   machine it models).
2. **SimPy's floor**: a SimPy environment processing as many bare events as the model
   took steps — N timeouts scheduled and run, and one process yielding N timeouts —
   the least any Python discrete-event loop pays per event.  The ratio says how much
   a model step costs on top of a bare event.
3. **The 20 ms scenario** a widget re-simulates when a slider moves:
   ``random_workload(config, 20_000, ...)`` built, simulated and its metrics computed,
   median over ``--runs`` runs (each part reported separately too).
4. **The model alone**, with no scheduler around it: the steps of the one-second run
   replayed through :meth:`Model.apply`, and :meth:`Model.enabled` asked in every state
   they reach (best of ``--repeat``).  Any scheduler of this model pays at least their
   sum per step, so it bounds the steps per second; what :func:`simulate` adds on top
   is its own bookkeeping (ready times, activity events, the trace).

Targets (printed next to each figure as PASS / MISS): one simulated second in under
1 s of wall time; at least 200,000 model steps per second; the 20 ms scenario in
under 30 ms.

Run:  python benchmarks/bench_sim.py [--repeat 3] [--runs 15] [--seed 0] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from kvmcede import Config, Model, random_workload, simulate

SECOND_US = 1_000_000
WIDGET_US = 20_000
TARGET_SECOND_WALL_S = 1.0
TARGET_STEPS_PER_S = 200_000
TARGET_WIDGET_MS = 30.0


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def bench_second(policy: str, seed: int, repeat: int) -> dict:
    """Simulate one second of the default random workload; best of ``repeat``."""
    config = Config(policy=policy)
    t0 = time.perf_counter()
    wl = random_workload(config, SECOND_US, idle_fraction=0.5, idle_us=1000, seed=seed)
    build_s = time.perf_counter() - t0
    walls = []
    steps = events = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        tr = simulate(config, wl, until=SECOND_US)
        walls.append(time.perf_counter() - t0)
        steps, events = len(tr.steps), len(tr.events)
    wall = min(walls)
    return {"policy": policy, "workload_build_s": build_s, "wall_s": wall,
            "wall_runs_s": walls, "steps": steps, "events": events,
            "steps_per_s": steps / wall, "sim_per_wall": (SECOND_US / 1e6) / wall}


def bench_simpy(n: int, repeat: int) -> dict | None:
    """SimPy events per second for ``n`` bare events (None if SimPy is not installed)."""
    try:
        import simpy
    except ImportError:
        return None

    def bare() -> float:
        env = simpy.Environment()
        for i in range(n):
            env.timeout(i)
        t0 = time.perf_counter()
        env.run()
        return time.perf_counter() - t0

    def process() -> float:
        env = simpy.Environment()

        def ticker(env):
            for _ in range(n):
                yield env.timeout(1)

        env.process(ticker(env))
        t0 = time.perf_counter()
        env.run()
        return time.perf_counter() - t0

    bare_s = min(bare() for _ in range(repeat))
    proc_s = min(process() for _ in range(repeat))
    return {"version": simpy.__version__, "events": n,
            "bare_events_per_s": n / bare_s, "process_events_per_s": n / proc_s}


def bench_widget(policy: str, seed: int, runs: int) -> dict:
    """Median wall time of building, simulating and measuring a 20 ms workload."""
    config = Config(policy=policy)
    build, sim, metrics, total = [], [], [], []
    for k in range(runs):
        t0 = time.perf_counter()
        wl = random_workload(config, WIDGET_US, idle_fraction=0.5, idle_us=1000,
                             seed=seed + k)
        t1 = time.perf_counter()
        tr = simulate(config, wl, until=WIDGET_US)
        t2 = time.perf_counter()
        _ = tr.metrics
        t3 = time.perf_counter()
        build.append(t1 - t0)
        sim.append(t2 - t1)
        metrics.append(t3 - t2)
        total.append(t3 - t0)
    med = statistics.median
    return {"policy": policy, "runs": runs, "build_ms": med(build) * 1e3,
            "simulate_ms": med(sim) * 1e3, "metrics_ms": med(metrics) * 1e3,
            "total_ms": med(total) * 1e3, "max_total_ms": max(total) * 1e3}


def bench_model(policy: str, seed: int, repeat: int, sim_s: float) -> dict:
    """Model.apply and Model.enabled alone over the one-second run (best of ``repeat``);
    ``sim_s`` is simulate()'s wall time for the same run."""
    config = Config(policy=policy)
    wl = random_workload(config, SECOND_US, idle_fraction=0.5, idle_us=1000, seed=seed)
    tr = simulate(config, wl, until=SECOND_US)
    states = [s for _, _, s in tr.states()]
    apply_s = enabled_s = float("inf")
    paused = gc.isenabled()
    gc.disable()  # as simulate() runs
    try:
        for _ in range(repeat):
            m = Model(config, wl)
            s = m.initial()
            t0 = time.perf_counter()
            for t, st in tr.steps:
                s, _ = m.apply(s, st, t)
            apply_s = min(apply_s, time.perf_counter() - t0)
            m = Model(config, wl)  # a fresh cache, met in the simulator's order
            t0 = time.perf_counter()
            for s in states:
                m.enabled(s, False)
            enabled_s = min(enabled_s, time.perf_counter() - t0)
    finally:
        if paused:
            gc.enable()
    n = len(tr.steps)
    model_s = apply_s + enabled_s
    return {"policy": policy, "apply_us": apply_s / n * 1e6, "enabled_us": enabled_s / n * 1e6,
            "model_us": model_s / n * 1e6, "max_steps_per_s": n / model_s,
            "scheduler_us": (sim_s - model_s) / n * 1e6}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="See benchmarks/README.md.")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of the one-second simulation; the best counts (default: 3)")
    ap.add_argument("--runs", type=int, default=15,
                    help="runs of the 20 ms scenario; the median counts (default: 15)")
    ap.add_argument("--seed", type=int, default=0, help="workload seed (default: 0)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.runs < 1:
        ap.error("--repeat and --runs must be at least 1")

    print(f"kvmcede simulator benchmark — Python {platform.python_version()} on "
          f"{platform.machine()}, {os.cpu_count()} CPUs")
    print()
    out: dict = {"python": platform.python_version(), "seconds": [], "widget": []}

    print(f"1. one simulated second (4 vcpus, SMT4, idle_fraction 0.5, idle_us 1000, "
          f"seed {args.seed}); best of {args.repeat}")
    for policy in ("realmode", "host"):
        r = bench_second(policy, args.seed, args.repeat)
        out["seconds"].append(r)
        print(f"   {policy:<8}  {r['steps']:>7,} steps  {r['events']:>7,} events  "
              f"wall {r['wall_s']:7.3f} s  "
              f"[target < {TARGET_SECOND_WALL_S:g} s: "
              f"{_verdict(r['wall_s'] < TARGET_SECOND_WALL_S)}]")
        print(f"   {'':<8}  {r['steps_per_s']:>12,.0f} steps/s  "
              f"[target >= {TARGET_STEPS_PER_S:,}: "
              f"{_verdict(r['steps_per_s'] >= TARGET_STEPS_PER_S)}]  "
              f"simulated/wall {r['sim_per_wall']:.3f}x  "
              f"(workload built in {r['workload_build_s'] * 1e3:.1f} ms)")
    print()

    n = out["seconds"][0]["steps"]
    sp = bench_simpy(n, args.repeat)
    out["simpy"] = sp
    print(f"2. SimPy, the same number of bare events ({n:,}, as realmode's steps)")
    if sp is None:
        print("   SimPy is not installed (pip install simpy, or kvmcede[bench]): skipped")
    else:
        print(f"   simpy {sp['version']}: {sp['bare_events_per_s']:>12,.0f} events/s "
              f"(N timeouts, env.run())")
        print(f"   {'':<11}  {sp['process_events_per_s']:>12,.0f} events/s "
              f"(one process yielding N timeouts)")
        for r in out["seconds"]:
            r["ratio_to_simpy_bare"] = r["steps_per_s"] / sp["bare_events_per_s"]
            r["ratio_to_simpy_process"] = r["steps_per_s"] / sp["process_events_per_s"]
            print(f"   {r['policy']:<8}  model steps/s ÷ SimPy events/s = "
                  f"{r['ratio_to_simpy_bare']:.3f} (bare), "
                  f"{r['ratio_to_simpy_process']:.3f} (process)")
    print()

    print(f"3. the 20 ms scenario a widget re-simulates (random_workload {WIDGET_US:,} us): "
          f"median of {args.runs}")
    for policy in ("realmode", "host"):
        r = bench_widget(policy, args.seed, args.runs)
        out["widget"].append(r)
        print(f"   {policy:<8}  total {r['total_ms']:7.2f} ms  "
              f"[target < {TARGET_WIDGET_MS:g} ms: "
              f"{_verdict(r['total_ms'] < TARGET_WIDGET_MS)}]  = workload "
              f"{r['build_ms']:.2f} + simulate {r['simulate_ms']:.2f} + metrics "
              f"{r['metrics_ms']:.2f} ms  (max {r['max_total_ms']:.2f} ms)")

    print()

    print(f"4. the model alone, without a scheduler: the one-second run's steps; best of "
          f"{args.repeat}")
    out["model"] = []
    for r in out["seconds"]:
        b = bench_model(r["policy"], args.seed, args.repeat, r["wall_s"])
        out["model"].append(b)
        print(f"   {b['policy']:<8}  Model.apply {b['apply_us']:.2f} + Model.enabled "
              f"{b['enabled_us']:.2f} = {b['model_us']:.2f} us/step: at most "
              f"{b['max_steps_per_s']:,.0f} steps/s  [target >= {TARGET_STEPS_PER_S:,}: "
              f"{_verdict(b['max_steps_per_s'] >= TARGET_STEPS_PER_S)}]; simulate() adds "
              f"{b['scheduler_us']:.2f} us/step")

    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
