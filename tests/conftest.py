"""Shared fixtures: the named scenarios' traces, simulated once per test session."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kvmcede import Trace


@pytest.fixture(scope="session")
def scenario_trace() -> Callable[[str], Trace]:
    """``scenario_trace(name)``: the scenario's trace, invariants checked after every
    step (cached: traces are immutable in practice and the tests only read them)."""
    from kvmcede.scenarios import scenario

    cache: dict[str, Trace] = {}

    def get(name: str) -> Trace:
        if name not in cache:
            cache[name] = scenario(name).run(check_invariants=True)
        return cache[name]

    return get
