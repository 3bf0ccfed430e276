"""Model.enabled caches each actor's step until a part of the state it reads changes.

What a step reads is declared next to the guards: THREAD_READS_SHARED (realmode.py) and
TASK_READS_SHARED (host.py) list the locations whose step reads the vcore and the store
buffers / thread 0.  These tests check the declarations against the guards themselves,
and the cached answers against uncached ones, on states the simulator and a small
breadth-first search reach.
"""

from __future__ import annotations

import random
from collections import deque

import pytest

from kvmcede import Config, Model, random_workload, simulate
from kvmcede.host import TASK_READS_SHARED, task_step
from kvmcede.realmode import THREAD_READS_SHARED, thread_step
from kvmcede.scenarios import SCENARIOS


def _simulated_states() -> list[tuple[Model, list]]:
    out = []
    runs = [(sc.config, sc.workload, sc.until_us) for sc in SCENARIOS.values()]
    for policy in ("realmode", "host"):
        for memory in ("sc", "store_buffer"):
            # no_cede_sync has an effect only in real mode with store buffers.
            abl = ({"no_cede_sync"} if (policy, memory) == ("realmode", "store_buffer")
                   else frozenset())
            cfg = Config(policy=policy, memory=memory, ablations=abl)
            runs.append((cfg, random_workload(cfg, 3000, idle_fraction=0.5, idle_us=200,
                                              interrupt_rate=5000, seed=3), 3000))
    for cfg, wl, until in runs:
        tr = simulate(cfg, wl, until=until)
        out.append((tr._model, [s for _, _, s in tr.states()]))
    return out


def _explored_states(limit: int = 3000) -> tuple[Model, list]:
    """States of a breadth-first search with the environment on (the explorer's order)."""
    cfg = Config(threads_per_core=2, vcpus=2, memory="store_buffer")
    wl = random_workload(cfg, 50, idle_fraction=0.5, idle_us=5, seed=1)
    m = Model(cfg, wl)
    s0 = m.initial((1, 1, 1, 1, 1))
    seen, queue, states = {s0}, deque([s0]), []
    while queue and len(states) < limit:
        s = queue.popleft()
        states.append(s)
        for st in m.enabled(s):
            nxt, _ = m.apply(s, st)
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return m, states


@pytest.fixture(scope="module")
def reached() -> list[tuple[Model, list]]:
    return [*_simulated_states(), _explored_states()]


def test_steps_outside_the_shared_locations_ignore_the_vcore_and_the_rest(reached):
    rng = random.Random(0)
    checked = 0
    for m, states in reached:
        if m.config.cpu == "POWER9":
            continue  # the P9 path's guards are kvmcede.p9's (tests/test_p9.py)
        for s in states:
            for o in rng.sample(states, min(3, len(states))):
                for i, t in enumerate(s.threads):
                    if t.loc not in THREAD_READS_SHARED:
                        other = s._replace(vcore=o.vcore, stores=o.stores)
                        assert thread_step(other, i, m) == thread_step(s, i, m), (t.loc, s, o)
                        checked += 1
                for v, k in enumerate(s.tasks):
                    if k.loc not in TASK_READS_SHARED:
                        other = s._replace(vcore=o.vcore, threads=(o.threads[0],) + s.threads[1:])
                        assert task_step(other, v, m) == task_step(s, v, m), (k.loc, s, o)
                        checked += 1
    assert checked > 10_000


def test_cached_enabled_steps_equal_uncached_ones_in_any_order(reached):
    rng = random.Random(1)
    for m, states in reached:
        order = states[:]
        rng.shuffle(order)
        cached = Model(m.config, m.workload)
        for s in states + order:
            assert cached.enabled(s) == Model(m.config, m.workload).enabled(s)
