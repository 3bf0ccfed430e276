"""Speed of the widgets: from a control's change to the finished picture.

What a reader waits for after moving a control, measured end to end as the widget's
own callback runs it (the widget's value is set from Python, as the browser would):

1. **Comparison dashboard** — a slider moves to a position not seen before: the random
   workload is built, both policies simulated (20 ms of machine time each by default),
   the metrics computed, the bars redrawn on the Agg canvas and encoded as PNG.  The
   simulation and the redraw are also timed apart (the redraw from cached runs).
2. **Timeline** — (a) the timeline widget's window moves over a 50 ms trace
   (draw + PNG); (b) ``plots.timeline`` + ``plots.to_png`` from scratch for a 50 µs and a
   50 ms window (what the book's static figures cost).
3. **Step player** — one step forward through a trace (replay one step, state view,
   timeline mark, two PNGs), and a step that turns to a new timeline page.

Targets (printed next to each figure as PASS / MISS): dashboard and timeline under
100 ms, a step under 50 ms — medians, wall time.  Wall time on a shared machine
includes other programs' load: the process CPU time of the same runs is printed next
to it, and the load average is printed first.

Run:  python benchmarks/bench_widgets.py [--runs 15] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import matplotlib

matplotlib.use("Agg")

from kvmcede import Config, plots, random_workload, simulate, widgets

TARGET_SLIDER_MS = 100.0
TARGET_STEP_MS = 50.0


def _timed(fn) -> tuple[float, float]:
    """Wall and CPU milliseconds of ``fn()``."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - w0) * 1000, (time.process_time() - c0) * 1000


def _median(pairs: list[tuple[float, float]]) -> dict:
    return {"wall_ms": round(statistics.median(p[0] for p in pairs), 1),
            "cpu_ms": round(statistics.median(p[1] for p in pairs), 1),
            "runs": len(pairs)}


def _line(name: str, r: dict, target: float | None) -> str:
    verdict = "" if target is None else (
        f"  target < {target:.0f} ms: {'PASS' if r['wall_ms'] < target else 'MISS'}")
    return (f"{name:<52} {r['wall_ms']:8.1f} ms wall {r['cpu_ms']:8.1f} ms cpu"
            f"  (median of {r['runs']}){verdict}")


def bench_dashboard(runs: int) -> dict:
    widgets._simulate_pair.cache_clear()
    d = widgets.ComparisonDashboard()
    # New positions every time (no cache hit): idle fractions, then interrupt rates.
    positions = [("idle_fraction", round(0.05 * k, 2)) for k in range(1, 20) if k != 10]
    positions += [("interrupt_rate", r) for r in (250, 750, 1250, 1750, 2250)]
    fresh = []
    for control, value in positions[:runs]:
        fresh.append(_timed(lambda c=control, v=value: setattr(getattr(d, c), "value", v)))
    # The same positions again: the runs are cached, only the redraw remains.
    redraw = []
    for control, value in positions[:runs]:
        redraw.append(_timed(lambda c=control, v=value: setattr(getattr(d, c), "value", v)))
    widgets._simulate_pair.cache_clear()
    sims = [_timed(lambda f=f: widgets._simulate_pair(4, 4, f, 500.0, d.duration_us,
                                                      d.idle_us, 1))
            for f in (0.15, 0.3, 0.45, 0.6, 0.75)]
    return {"slider": _median(fresh), "redraw_only": _median(redraw),
            "simulate_both_policies": _median(sims), "duration_us": d.duration_us}


def bench_timeline(runs: int) -> dict:
    cfg = Config()
    tr = simulate(cfg, random_workload(cfg, 50_000, idle_fraction=0.5, idle_us=1000,
                                       interrupt_rate=500, seed=0), until=50_000)
    w = widgets.TimelineWidget(tr, width_us=50.0)
    starts = [k * 49_000 / runs for k in range(1, runs + 1)]
    moves = [_timed(lambda s=s: setattr(w.start, "value", s)) for s in starts]
    w.start.value = 0.0
    widths = [o[1] for o in w.width.options]
    zooms = [_timed(lambda v=v: setattr(w.width, "value", v)) for v in widths[:runs]]
    short = [_timed(lambda s=s: plots.to_png(plots.timeline(tr, s, s + 50)))
             for s in starts[: max(3, runs // 3)]]
    whole = [_timed(lambda: plots.to_png(plots.timeline(tr))) for _ in range(3)]
    return {"widget_move_50us_window": _median(moves),
            "widget_change_width": _median(zooms),
            "figure_50us": _median(short), "figure_50ms": _median(whole)}


def bench_player(runs: int) -> dict:
    cfg = Config()
    tr = simulate(cfg, random_workload(cfg, 2000, idle_fraction=0.5, idle_us=100,
                                       interrupt_rate=1000, seed=0), until=2000)
    p = widgets.StepPlayer(tr, page_steps=50)
    forward = []
    for k in range(2, 2 + runs * 3):
        if k % 50 == 1:  # a page turn: timed apart below
            continue
        forward.append(_timed(lambda k=k: p.show(k)))
    turns = [_timed(lambda k=k: p.show(k)) for k in (101, 151, 201, 251, 301)]
    return {"step_forward": _median(forward), "step_to_new_page": _median(turns),
            "steps_in_trace": len(tr.steps)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="changes timed per measurement")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if args.runs < 3:
        ap.error("--runs must be at least 3")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"python {platform.python_version()}, matplotlib {matplotlib.__version__}, "
          f"{os.cpu_count()} cpus, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    out = {"dashboard": bench_dashboard(args.runs), "timeline": bench_timeline(args.runs),
           "player": bench_player(args.runs)}
    dsh, tl, pl = out["dashboard"], out["timeline"], out["player"]
    print(_line("dashboard: slider -> new picture (simulate + draw)", dsh["slider"],
                TARGET_SLIDER_MS))
    print(_line(f"  of which: simulate both policies "
                f"({dsh['duration_us'] / 1000:g} ms each)",
                dsh["simulate_both_policies"], None))
    print(_line("  of which: redraw + PNG (cached runs)", dsh["redraw_only"], None))
    print(_line("timeline widget: move the 50 µs window", tl["widget_move_50us_window"],
                TARGET_SLIDER_MS))
    print(_line("timeline widget: change the window width", tl["widget_change_width"],
                TARGET_SLIDER_MS))
    print(_line("plots.timeline + to_png, 50 µs window", tl["figure_50us"], None))
    print(_line("plots.timeline + to_png, 50 ms (aggregated)", tl["figure_50ms"], None))
    print(_line(f"step player: one step ({pl['steps_in_trace']} steps)",
                pl["step_forward"], TARGET_STEP_MS))
    print(_line("step player: step onto a new timeline page", pl["step_to_new_page"], None))
    if args.json:
        out["load_average"] = load
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
