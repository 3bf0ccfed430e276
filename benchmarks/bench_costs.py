"""How the headline figures move when each cost moves (a sensitivity study, not a test).

For each cost in ``COSTS`` the script scales it by 0.25, 1 and 4 (all other costs at
their defaults) and simulates the ``headline`` scenario under both policies and a small
idle-fraction sweep (random workloads, as in chapter 10).  It prints, per setting:
whole-core exits, IPIs (to nappers + host kicks), guest time lost to idleness, H_CEDE
exits taken by a primary that was still alone in the guest (entry count 1: the
thread-start race), and the mean wake-up latency of a decrementer delivered to a napping
vcpu next to ``cede_latency`` (the 10 us a Linux guest's cpuidle assumes).

The conclusion to check: real-mode cede keeps the busy vcpu in the guest (its lost time
a small fraction of policy "host"'s) at every setting, not only at the defaults.

    python benchmarks/bench_costs.py            # about a minute
    python benchmarks/bench_costs.py --quick    # headline only
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kvmcede import Config, random_workload, simulate
from kvmcede.scenarios import scenario

COSTS = ("thread_start", "nap_wakeup", "ipi_latency", "guest_entry", "partition_switch",
         "host_wakeup", "hrtimer_latency")
FACTORS = (0.25, 1.0, 4.0)
IDLE = (0.3, 0.5, 0.7, 0.9)
SEEDS = (0, 1, 2)


def figures(cfg: Config, wl, until: float) -> dict[str, float]:
    tr = simulate(cfg, wl, until=until)
    m = tr.metrics
    lonely = sum(1 for e in tr.kernel_events() if e.kind == "kvmppc_h_cede"
                 and "H_TOO_HARD" in e.detail and "entry count 1:" in e.detail
                 and cfg.vcpus > 1)
    raised: dict[int, int] = {}
    lat: list[int] = []
    woke: set[int] = set()
    for e in tr.kernel_events():
        if e.kind == "raise" and e.arg == 0x900:
            raised[e.vcpu] = e.time
        elif e.kind == "wake" and e.detail == "decrementer":
            woke.add(e.vcpu)
        elif e.kind == "deliver" and e.arg == 0x900 and e.vcpu in raised:
            t0 = raised.pop(e.vcpu)
            if e.vcpu in woke:
                lat.append(e.time - t0)
                woke.discard(e.vcpu)
    return {"exits": m.whole_core_exits, "ipis": m.ipis_to_nappers + m.host_ipis,
            "lost_us": m.lost_guest_us, "lonely_cedes": lonely,
            "nap_wake_us": tr.us(sum(lat) // len(lat)) if lat else 0.0}


def with_cost(cfg: Config, name: str, factor: float) -> Config:
    c = cfg.costs
    return cfg.replace(costs=c.replace(**{name: max(1, round(getattr(c, name) * factor))}))


def headline(name: str, factor: float) -> str:
    out = []
    for sc_name in ("headline", "headline-host"):
        sc = scenario(sc_name)
        f = figures(with_cost(sc.config, name, factor), sc.workload, sc.until_us)
        out.append(f"{f['exits']:>4} {f['ipis']:>4} {f['lost_us']:>8.1f}")
    real = figures(with_cost(scenario("headline").config, name, factor),
                   scenario("headline").workload, scenario("headline").until_us)
    return "  ".join(out) + f"   {real['nap_wake_us']:>6.1f}"


def sweep(name: str, factor: float) -> str:
    cells = []
    for f in IDLE:
        acc = {"realmode": [0.0, 0.0, 0.0], "host": [0.0, 0.0, 0.0]}
        for pol in acc:
            for seed in SEEDS:
                cfg = with_cost(Config(policy=pol, seed=seed), name, factor)
                wl = random_workload(cfg, 10_000, idle_fraction=f, seed=seed)
                r = figures(cfg, wl, 10_000)
                acc[pol][0] += r["exits"] / len(SEEDS)
                acc[pol][1] += r["lost_us"] / len(SEEDS)
                acc[pol][2] += r["lonely_cedes"] / len(SEEDS)
        rm, h = acc["realmode"], acc["host"]
        cells.append(f"{rm[0]:5.1f}/{h[0]:5.1f} {rm[1]:6.1f}/{h[1]:6.1f} {rm[2]:3.1f}")
    return " | ".join(cells)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="headline scenario only")
    args = ap.parse_args(argv)
    cede = Config().us(Config().costs.cede_latency)
    print(f"headline scenario (20 ms): realmode [exits ipis lost_us]  host [exits ipis "
          f"lost_us]  mean DEC wake of a napper (us; guest cpuidle assumes {cede:.0f})")
    for name in COSTS:
        for k in FACTORS:
            print(f"  {name:<17} x{k:<5} {headline(name, k)}")
    if args.quick:
        return 0
    print("\nidle-fraction sweep, 10 ms x 3 seeds, per idle fraction "
          f"{IDLE}: exits realmode/host, lost_us realmode/host, realmode H_CEDE exits by a "
          "primary alone in the guest")
    for name in COSTS:
        for k in FACTORS:
            print(f"  {name:<17} x{k:<5} {sweep(name, k)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
