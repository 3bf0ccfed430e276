"""Speed of the interleaving explorer (kvmcede.explorer).

Measurements (each printed with states, transitions, states per second, wall time):

1. **Shortest counterexample for the no-IPI ablation**: ``explore(*setup("no_ipi_on_exit"))``
   — the whole graph is explored (a liveness property needs it), so this is the time a
   reader waits for "why is this IPI needed?".  Also with ``stop_at_first=True``.
2. **Every ready-made exploration** (``setup(name)`` for "protocol", each ablation, each
   bug): states, states/s, verdict.
3. **The full protocol on bigger vcores**: policy realmode, bugs and ablations off, the
   default workload, one DEC expiry and no other environment event, on SMT4 with 2, 3
   and 4 vcpus, each on the full graph and with partial-order reduction
   (``reduction=True``).  Symmetry is on (interchangeable vcpus, and the secondary
   threads with the vcpus they run) and dead values are always cleared; 3 vcpus also run
   without symmetry.  The 2- and 3-vcpu runs are timed best of ``--repeat`` (the wall
   time on a shared machine varies by a third from run to run); 4 vcpus once.  Then
   smaller variants: every vcpu idle with no environment event (the cede protocol up to
   the last-one-out exit and its IPIs), 3 and 4 vcpus; policy host.  These runs are
   capped by ``--max-states``; a capped run reports "not finished" and its rate.
4. ``--profile``: where the time goes (cProfile of part of the 3-vcpu run), summed per
   module: the explorer itself versus the model's step semantics and the invariants.

Targets (PASS / MISS): no-IPI counterexample in under 1 s; 3 vcpus SMT4 full protocol
finished in under 5 s ("a few seconds"); 4 vcpus SMT4 full protocol finished in under
10 s (judged on the faster of the full and the reduced run).

Run:  python benchmarks/bench_explore.py [--max-states N] [--profile] [--json PATH]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from kvmcede import Config, Workload
from kvmcede.explorer import SETUPS, default_workload, explore, setup

TARGET_NO_IPI_S = 1.0
TARGET_3_VCPUS_S = 5.0
TARGET_4_VCPUS_S = 10.0


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _row(label: str, r, wall: float) -> dict:
    rate = r.states / wall if wall > 0 else float("inf")
    print(f"  {label:<34} {r.states:>10,} states {r.transitions:>11,} transitions "
          f"{rate:>9,.0f} states/s {wall:>8.2f} s  depth {r.depth:>3}  "
          f"{'finished' if r.finished else 'NOT FINISHED'}", flush=True)
    v = r.violation
    print(f"  {'':<34} {r.verdict().split(' [')[0][:110]}")
    return {"label": label, "states": r.states, "transitions": r.transitions,
            "seconds": wall, "states_per_s": rate, "finished": r.finished, "ok": r.ok,
            "depth": r.depth, "violation": v.name if v else None,
            "violation_depth": v.depth if v else None}


def _timed(*args, repeat: int = 1, **kwargs):
    """``(result, wall seconds)`` of the fastest of ``repeat`` explorations."""
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = explore(*args, progress=False, **kwargs)
        wall = time.perf_counter() - t0
        if best is None or wall < best[1]:
            best = (r, wall)
    return best


def bench_no_ipi(repeat: int) -> dict:
    print(f"1. shortest counterexample for the no-IPI ablation (setup 'no_ipi_on_exit'; "
          f"best of {repeat})")
    cfg, wl, kw = setup("no_ipi_on_exit")
    _timed(cfg, wl, max_states=2000, **kw)  # warm up (imports, first allocations)
    rows = {}
    for label, extra in (("full graph, all properties", {}),
                         ("full graph, core_can_leave only", {"properties": ["core_can_leave"]}),
                         ("stop_at_first=True", {"stop_at_first": True})):
        rows[label] = _row(label, *_timed(cfg, wl, repeat=repeat, **extra, **kw))
    best_full = rows["full graph, all properties"]
    v_depth = best_full["violation_depth"]
    wall = best_full["seconds"]
    ok = best_full["violation"] is not None and wall < TARGET_NO_IPI_S
    print(f"  shortest counterexample ({v_depth} steps), with liveness decided on the whole "
          f"graph, in {wall:.2f} s (target < {TARGET_NO_IPI_S:.0f} s): {_verdict(ok)}")
    return {**rows, "target_s": TARGET_NO_IPI_S, "pass": ok}


def bench_setups() -> list[dict]:
    print("\n2. every ready-made exploration")
    rows = []
    for name in SETUPS:
        cfg, wl, kw = setup(name)
        r, wall = _timed(cfg, wl, **kw)
        rows.append(_row(name, r, wall))
    return rows


def _protocol(vcpus: int, max_states: int, symmetry: bool = True, policy: str = "realmode",
              idle: bool = False, reduction: bool = False, repeat: int = 1):
    cfg = Config(threads_per_core=4, vcpus=vcpus, policy=policy)
    wl = Workload(((),) * vcpus, name="idle") if idle else default_workload(cfg)
    return _timed(cfg, wl, repeat=repeat, interrupts=0, dec_expiries=0 if idle else 1,
                  max_states=max_states, symmetry=symmetry, reduction=reduction)


def bench_big(max_states: int, repeat: int) -> list[dict]:
    print(f"\n3. full protocol, SMT4, default workload, 1 DEC expiry (cap: {max_states:,} "
          f"states; 2 and 3 vcpus best of {repeat})")
    rows = []
    for vcpus, target in ((2, None), (3, TARGET_3_VCPUS_S), (4, TARGET_4_VCPUS_S)):
        pair = []
        for reduction in (False, True):
            r, wall = _protocol(vcpus, max_states, reduction=reduction,
                                repeat=repeat if vcpus < 4 else 1)
            row = _row(f"{vcpus} vcpus{', reduction' if reduction else ''}", r, wall)
            row["reduction"] = reduction
            rows.append(row)
            pair.append((r, wall, row))
        if target is not None:
            ok = any(r.finished and r.ok and wall < target for r, wall, _ in pair)
            for _, _, row in pair:
                row["target_s"] = target
                row["pass"] = ok
            print(f"  {'':<34} target: finished in < {target:.0f} s: {_verdict(ok)}")
    r, wall = _protocol(3, min(max_states, 200_000), symmetry=False)
    rows.append(_row("3 vcpus, symmetry off", r, wall))
    print("  smaller variants: every vcpu idle with no timer and no environment event; "
          "policy host")
    for label, kw in (("3 vcpus, all idle", {"vcpus": 3, "idle": True}),
                      ("3 vcpus, all idle, reduction",
                       {"vcpus": 3, "idle": True, "reduction": True}),
                      ("4 vcpus, all idle", {"vcpus": 4, "idle": True}),
                      ("4 vcpus, all idle, reduction",
                       {"vcpus": 4, "idle": True, "reduction": True}),
                      ("3 vcpus, policy host", {"vcpus": 3, "policy": "host"}),
                      ("3 vcpus, all idle, policy host",
                       {"vcpus": 3, "idle": True, "policy": "host"}),
                      ("4 vcpus, all idle, policy host",
                       {"vcpus": 4, "idle": True, "policy": "host"})):
        r, wall = _protocol(max_states=max_states, **kw)
        rows.append(_row(label, r, wall))
    return rows


def bench_profile(states: int) -> dict:
    print(f"\n4. profile: first {states:,} states of the 3-vcpu protocol, time by module")
    prof = cProfile.Profile()
    prof.enable()
    _protocol(3, states)
    prof.disable()
    st = pstats.Stats(prof)
    by_module: dict[str, float] = {}
    total = 0.0
    for (filename, _, _), (_, _, tottime, _, _) in st.stats.items():
        name = Path(filename).name if "kvmcede" in filename else "python/builtins"
        by_module[name] = by_module.get(name, 0.0) + tottime
        total += tottime
    for name, t in sorted(by_module.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<20} {t:6.2f} s  {100 * t / total:5.1f} %")
    return {k: round(v, 3) for k, v in by_module.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--max-states", type=int, default=2_000_000,
                   help="cap of the 3- and 4-vcpu runs (default 2000000)")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of part 1 and of the 2- and 3-vcpu runs of part 3; the best "
                        "counts (default 3)")
    p.add_argument("--profile", action="store_true", help="also profile (part 4)")
    p.add_argument("--profile-states", type=int, default=30_000,
                   help="states to profile (default 30000)")
    p.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    args = p.parse_args(argv)
    print(f"kvmcede explorer benchmark — Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}\n")
    out = {"no_ipi": bench_no_ipi(args.repeat), "setups": bench_setups(),
           "protocol": bench_big(args.max_states, args.repeat)}
    if args.profile:
        out["profile"] = bench_profile(args.profile_states)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
