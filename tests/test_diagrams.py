"""The concept diagrams (kvmcede.diagrams) are drawn from the model and show its values."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmcede import Config, diagrams, scenarios
from kvmcede.plots import figure_strings
from kvmcede.realmode import THREAD_STEPS


@pytest.fixture(scope="module")
def s4():
    return scenarios.scenario("S4").run()


@pytest.fixture(scope="module")
def mmio():
    return scenarios.scenario("mmio").run()


def _gids(fig, prefix: str) -> list[str]:
    """The gids (without ``prefix``) of the figure's artists tagged ``prefix...``."""
    return [a.get_gid()[len(prefix):]
            for a in fig.findobj(lambda a: (a.get_gid() or "").startswith(prefix))]


# ---- thread_path ------------------------------------------------------------------------

def test_every_location_the_model_reaches_is_drawn_in_its_place():
    edges = diagrams.path_edges()
    reached = diagrams.path_locations(edges)
    fig = diagrams.thread_path()
    assert set(fig.kvmcede_path["locations"]) == reached
    # a new location must get a hand-tuned place, not just the fallback row
    assert fig.kvmcede_path["unplaced"] == [], "add these to diagrams.PATH_LAYOUT"
    assert set(_gids(fig, "loc:")) == reached


def test_every_location_with_a_step_function_is_reached():
    assert set(THREAD_STEPS) <= diagrams.path_locations()


def test_every_move_between_locations_is_an_arrow():
    edges = diagrams.path_edges()
    fig = diagrams.thread_path("cede")
    assert set(_gids(fig, "edge:")) == {f"{a}->{b}" for a, _, b in edges}
    assert ("guest", "H_CEDE", "kvmppc_h_cede.sync_prodded") in edges
    assert ("nap", "kvm_start_guest", "kvm_end_cede.check") in edges
    # Linux 3.4's prodded-case wrong branch (the default kernel) naps without the bit
    assert ("kvmppc_h_cede.sync_prodded", "kvmppc_h_cede: sync; test prodded", "nap") in edges


def test_a_location_the_layout_does_not_know_is_still_drawn():
    edges = diagrams.path_edges() | {("nap", "a new step", "kvm_new_label.part")}
    fig = diagrams.thread_path(edges=edges)
    assert fig.kvmcede_path["unplaced"] == ["kvm_new_label.part"]
    assert ".part" in figure_strings(fig)


def test_every_named_path_follows_the_models_moves():
    for name in diagrams.PATHS:
        diagrams.thread_path(name)  # raises if a pair is not an edge


def test_a_highlight_the_model_cannot_take_is_refused():
    with pytest.raises(ValueError, match="never moves a thread"):
        diagrams.thread_path(("guest", "nap"))
    with pytest.raises(ValueError, match="highlight"):
        diagrams.thread_path("no such path")


def test_path_labels_name_the_kernel_steps():
    strings = figure_strings(diagrams.thread_path("cede"))
    for s in ("kvmppc_h_cede", ".napping_threads", "kvm_end_cede", "kvmppc_cede_reentry",
              "hdec_soon", "sc 1: H_CEDE", "then kvm_start_guest", "path: cede"):
        assert s in strings


# ---- core_diagram -----------------------------------------------------------------------

def test_core_diagram_of_a_config_shows_every_thread_and_vcpu():
    strings = figure_strings(diagrams.core_diagram(Config(threads_per_core=2, vcpus=2)))
    assert {"thread 0  (runner's)", "thread 1", "vcpu 0", "vcpu 1", "host partition",
            "guest partition", "secondary_nap"} <= set(strings)


def test_core_diagram_shows_the_values_of_a_state(mmio):
    s = mmio.state_at(mmio.config.ticks(20.0))
    strings = figure_strings(diagrams.core_diagram(mmio.config, s))
    assert "napping_threads = 0b0100   in_guest = 1" in strings
    assert "entry_exit_count = 0x0004 (entry 4, exit 0)" in strings
    assert "vcore_state = VCORE_RUNNING" in strings
    assert strings.count("paca napping = 1") == 1
    assert "task of vcpu 0  (runner)" in strings


def test_core_diagram_refuses_a_state_of_another_config(mmio):
    with pytest.raises(ValueError, match="state"):
        diagrams.core_diagram(Config(threads_per_core=2, vcpus=2), mmio.state_after(0))


# ---- exit_sequence ----------------------------------------------------------------------

def _in_window(trace, fig, kind):
    lo, hi = sorted(fig.axes[0].get_ylim())
    return [e for e in trace.kernel_events()
            if e.kind == kind and lo <= trace.us(e.time) <= hi]


@pytest.mark.parametrize("name", ["S4", "mmio"])
def test_exit_sequence_has_one_arrow_per_ipi(name, s4, mmio):
    tr = {"S4": s4, "mmio": mmio}[name]
    fig = diagrams.exit_sequence(tr)
    ipis = _in_window(tr, fig, "ipi")
    assert ipis and len(_gids(fig, "ipi")) == len(ipis)
    exits = [e for e in _in_window(tr, fig, "hdec_soon") if "exit count" in e.detail]
    assert len(_gids(fig, "exit_count")) == len(exits) == tr.config.threads_per_core
    assert len(_gids(fig, "in_guest")) == 1
    assert len(_gids(fig, "nap_count")) == tr.config.threads_per_core - 1


def test_exit_sequence_draws_the_hdec_poke_to_the_threads_that_take_it(mmio):
    fig = diagrams.exit_sequence(mmio)
    assert len(_gids(fig, "hdec_poke")) == 2  # threads 0 and 3 run guest code
    ax = fig.axes[0]
    assert ax.get_ylabel() == "time (µs)"
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # time runs downwards
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "thread 0", "thread 1", "thread 2", "thread 3", "vcore", "host"]


def test_exit_sequence_needs_an_exit_or_a_window():
    tr = scenarios.scenario("S2").run()  # C naps; nobody leaves the guest
    assert not any(e.kind == "hdec_soon" for e in tr.kernel_events())
    with pytest.raises(ValueError, match="no exit"):
        diagrams.exit_sequence(tr)
    with pytest.raises(ValueError, match="end"):
        diagrams.exit_sequence(tr, 10.0, 5.0)


# ---- layering ---------------------------------------------------------------------------

def test_the_model_never_imports_the_diagrams():
    pkg = Path(diagrams.__file__).parent
    presentation = {"plots.py", "widgets.py", "diagrams.py", "book.py", "cli.py"}
    for path in pkg.glob("*.py"):
        if path.name not in presentation:
            assert "diagrams" not in path.read_text(encoding="utf-8"), path.name
