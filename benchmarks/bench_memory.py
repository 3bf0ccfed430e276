"""Memory of a simulation: a full trace against ``simulate(..., record="metrics")``.

For 1 s and 10 s of simulated time of the default random workload (4 vcpus on an SMT4
core, each idle half of the time in periods of about 1 ms; policy "realmode" and
"host"), measures with ``tracemalloc`` the peak memory the simulation allocates (the
workload is built before tracing starts, and is not counted) and the memory still held
by what the call returns.  Target: in metrics-only mode the peak does not grow with
the simulated time (10 s within 1.5x of 1 s, and under 5 MB); a full trace grows in
proportion (it keeps every event and step).

Run from the repository root::

    python benchmarks/bench_memory.py               # about a minute
    python benchmarks/bench_memory.py --seconds 1 2 --no-trace   # metrics only
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kvmcede import Config, random_workload, simulate

MB = 1024 * 1024


def measure(policy: str, seconds: float, record: str, seed: int = 0) -> dict:
    """Peak and retained memory (bytes) of one simulation of ``seconds`` simulated."""
    cfg = Config(policy=policy)
    until = seconds * 1_000_000
    wl = random_workload(cfg, until, idle_fraction=0.5, idle_us=1000, seed=seed)
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    out = simulate(cfg, wl, until=until, record=record)
    wall = time.perf_counter() - t0
    if record == "trace":
        steps = len(out.steps)
        out.metrics  # noqa: B018 (the cached metrics are part of what a trace holds)
    else:
        steps = out.steps
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del out
    return {"policy": policy, "seconds": seconds, "record": record, "steps": steps,
            "peak_mb": peak / MB, "held_mb": held / MB, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, nargs="+", default=[1.0, 10.0],
                   help="simulated seconds to measure (default: 1 10)")
    p.add_argument("--policies", nargs="+", default=["realmode", "host"],
                   choices=["realmode", "host"])
    p.add_argument("--no-trace", action="store_true",
                   help="measure only the metrics-only mode (the full traces are slow "
                        "under tracemalloc and take hundreds of MB at 10 s)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    records = ["metrics"] if args.no_trace else ["metrics", "trace"]
    rows = []
    print(f"{'policy':<9} {'record':<8} {'sim s':>6} {'steps':>10} {'peak MB':>9} "
          f"{'held MB':>9} {'wall s':>7}")
    for policy in args.policies:
        for record in records:
            for sec in args.seconds:
                r = measure(policy, sec, record)
                rows.append(r)
                print(f"{policy:<9} {record:<8} {sec:>6g} {r['steps']:>10,} "
                      f"{r['peak_mb']:>9.2f} {r['held_mb']:>9.2f} {r['wall_s']:>7.1f}",
                      flush=True)
    for policy in args.policies:
        m = sorted((r for r in rows if r["policy"] == policy and r["record"] == "metrics"),
                   key=lambda r: r["seconds"])
        if len(m) >= 2:
            lo, hi = m[0], m[-1]
            ok = hi["peak_mb"] <= max(1.5 * lo["peak_mb"], lo["peak_mb"] + 0.5) \
                and hi["peak_mb"] < 5
            print(f"{policy}: metrics-only peak {lo['peak_mb']:.2f} MB at {lo['seconds']:g} s"
                  f" -> {hi['peak_mb']:.2f} MB at {hi['seconds']:g} s: "
                  f"{'PASS' if ok else 'MISS'} (flat, under 5 MB)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
