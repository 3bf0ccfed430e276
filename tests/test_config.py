"""Bad input: every invalid configuration, cost, workload, op, event and argument raises a
ValueError whose message names the field that is wrong."""

from __future__ import annotations

import pytest

from kvmcede import (
    Busy,
    Confer,
    Config,
    CostModel,
    Idle,
    Interrupt,
    Mmio,
    Prod,
    RemoteProd,
    Signal,
    Workload,
    random_workload,
    simulate,
)

NAN, INF = float("nan"), float("inf")
SMT2 = Config(threads_per_core=2, vcpus=2)


def run(*programs, events=(), start_us=None, until=50.0, config=SMT2):
    """Simulate a 2-vcpu workload (where workload values are checked)."""
    simulate(config, Workload(tuple(programs), tuple(events), start_us=start_us), until=until)


OK = (Busy(5),)

CONFIGS = [
    ("threads_per_core", lambda: Config(threads_per_core=3)),
    ("threads_per_core", lambda: Config(threads_per_core=8, vcpus=4)),
    ("threads_per_core", lambda: Config(threads_per_core="4")),
    ("threads_per_core", lambda: Config(threads_per_core=True, vcpus=1)),
    ("vcpus", lambda: Config(vcpus=0)),
    ("vcpus", lambda: Config(vcpus=5)),
    ("vcpus", lambda: Config(threads_per_core=2, vcpus=3)),
    ("vcpus", lambda: Config(vcpus=2.0)),
    ("vcpus", lambda: Config(vcpus=None)),
    ("policy", lambda: Config(policy="kernel")),
    ("policy", lambda: Config(policy=None)),
    ("cpu", lambda: Config(cpu="POWER8")),
    ("threads_per_core", lambda: Config(cpu="PPC970")),
    ("changes", lambda: Config(changes={"04f995a5", "no_such_commit"})),
    ("changes", lambda: Config(changes="04f995a5")),
    ("changes", lambda: Config(changes=None)),
    ("changes", lambda: Config(changes=[["04f995a5"]])),
    ("version", lambda: Config.linux("3.1")),
    ("version", lambda: Config.linux("four")),
    ("bugs", lambda: Config.from_dict({"bugs": ["prodded_branch"]})),
    ("ablations", lambda: Config(ablations={"no_sync"})),
    ("ablations", lambda: Config(ablations="no_ipi_on_exit")),
    ("memory", lambda: Config(memory="tso")),
    ("costs", lambda: Config(costs={"realmode_step": 1})),
    ("timebase_hz", lambda: Config(timebase_hz=0)),
    ("timebase_hz", lambda: Config(timebase_hz=-512)),
    ("timebase_hz", lambda: Config(timebase_hz=512e6)),
    ("seed", lambda: Config(seed="1")),
    ("seed", lambda: Config(seed=1.5)),
    ("seed", lambda: Config(seed=False)),
]

COSTS = [
    ("costs.realmode_step", lambda: CostModel(realmode_step=-1)),
    ("costs.nap_wakeup", lambda: CostModel(nap_wakeup=10.5)),
    ("costs.ipi_latency", lambda: CostModel(ipi_latency=True)),
    ("costs.host_tick", lambda: CostModel(host_tick=0)),
    ("costs.mmio_emulation", lambda: CostModel(mmio_emulation=None)),
    ("costs.partition_switch", lambda: Config(costs=CostModel(partition_switch=-3))),
]

WORKLOADS = [
    ("workload.programs", lambda: run(OK)),
    ("workload.programs", lambda: run(OK, OK, OK)),
    ("workload.programs", lambda: Workload(None)),
    ("workload.programs[0]", lambda: Workload((Busy(5), Busy(5)))),
    ("workload.programs[1]", lambda: Workload((OK, "busy"))),
    ("workload.programs[0][1]", lambda: run((Busy(5), "idle"), OK)),
    ("workload.programs[1][0]", lambda: run(OK, (object(),))),
    ("workload.programs[0][0].us", lambda: run((Busy(0),), OK)),
    ("workload.programs[0][0].us", lambda: run((Busy(-1),), OK)),
    ("workload.programs[0][0].us", lambda: run((Busy(NAN),), OK)),
    ("workload.programs[0][0].us", lambda: run((Busy(INF),), OK)),
    ("workload.programs[0][0].us", lambda: run((Busy("5"),), OK)),
    ("workload.programs[0][0].us", lambda: run((Busy(True),), OK)),
    ("workload.programs[1][1].us", lambda: run(OK, (Busy(1), Idle(0)))),
    ("workload.programs[1][0].us", lambda: run(OK, (Idle(-5),))),
    ("workload.programs[0][0].us", lambda: run((Mmio(0),), OK)),
    ("workload.programs[0][0].target", lambda: run((Prod(2),), OK)),
    ("workload.programs[0][0].target", lambda: run((Prod(-1),), OK)),
    ("workload.programs[0][0].target", lambda: run((Prod("1"),), OK)),
    ("workload.programs[1][0].target", lambda: run(OK, (Confer(5),))),
    ("workload.events", lambda: Workload((OK, OK), events=Interrupt(1.0, 0))),
    ("workload.events[0]", lambda: run(OK, OK, events=[(1.0, 0)])),
    ("workload.events[0].at_us", lambda: run(OK, OK, events=[Interrupt(-1.0, 0)])),
    ("workload.events[0].at_us", lambda: run(OK, OK, events=[RemoteProd(INF, 0)])),
    ("workload.events[0].at_us", lambda: run(OK, OK, events=[Signal(NAN, 1)])),
    ("workload.events", lambda: run(OK, OK, events=[Interrupt("5", 0), Interrupt(1.0, 0)])),
    ("workload.events[0].vcpu", lambda: run(OK, OK, events=[Interrupt(1.0, 2)])),
    ("workload.events[1].vcpu", lambda: run(OK, OK, events=[Signal(1.0, 0),
                                                            RemoteProd(2.0, -1)])),
    ("workload.start_us", lambda: run(OK, OK, start_us=(0.0,))),
    ("workload.start_us", lambda: Workload((OK, OK), start_us=3.0)),
    ("workload.start_us[1]", lambda: run(OK, OK, start_us=(0.0, -2.0))),
    ("workload.start_us[0]", lambda: run(OK, OK, start_us=(INF, 0.0))),
]

SIMULATE = [
    ("until", lambda: run(OK, OK, until=0)),
    ("until", lambda: run(OK, OK, until=-10.0)),
    ("until", lambda: run(OK, OK, until=NAN)),
    ("until", lambda: run(OK, OK, until=INF)),
    ("until", lambda: run(OK, OK, until="100")),
    ("until", lambda: run(OK, OK, until=True)),
    ("config", lambda: simulate(None, Workload((OK,)))),
    ("config", lambda: simulate({"vcpus": 1}, Workload((OK,)))),
    ("workload", lambda: simulate(SMT2, ((Busy(5),), (Busy(5),)))),
]

RANDOM = [
    ("duration_us", lambda: random_workload(SMT2, 0)),
    ("duration_us", lambda: random_workload(SMT2, -5.0)),
    ("duration_us", lambda: random_workload(SMT2, INF)),
    ("idle_us", lambda: random_workload(SMT2, idle_us=0)),
    ("idle_us", lambda: random_workload(SMT2, idle_us=NAN)),
    ("idle_fraction", lambda: random_workload(SMT2, idle_fraction=1.5)),
    ("idle_fraction", lambda: random_workload(SMT2, idle_fraction=-0.1)),
    ("idle_fraction", lambda: random_workload(SMT2, idle_fraction=NAN)),
    ("idle_fraction", lambda: random_workload(SMT2, idle_fraction="half")),
    ("interrupt_rate", lambda: random_workload(SMT2, interrupt_rate=-1.0)),
    ("interrupt_rate", lambda: random_workload(SMT2, interrupt_rate=INF)),
    ("interrupt_rate", lambda: random_workload(SMT2, interrupt_rate=NAN)),
    ("idle_vcpus[1]", lambda: random_workload(SMT2, idle_vcpus=(0, 2))),
    ("idle_vcpus[0]", lambda: random_workload(SMT2, idle_vcpus=(-1,))),
    ("idle_vcpus", lambda: random_workload(SMT2, idle_vcpus=1)),
    ("seed", lambda: random_workload(SMT2, seed=[1])),
    ("seed", lambda: random_workload(SMT2, seed=2.5)),
    ("config", lambda: random_workload(None)),
]

TABLE = CONFIGS + COSTS + WORKLOADS + SIMULATE + RANDOM


@pytest.mark.parametrize(("field", "make"), TABLE,
                         ids=[f"{k}-{f}" for k, (f, _) in enumerate(TABLE)])
def test_invalid_input_raises_value_error_naming_the_field(field, make):
    with pytest.raises(ValueError) as err:
        make()
    assert field in str(err.value), str(err.value)


@pytest.mark.parametrize("make", [
    lambda: Config(),
    lambda: Config(threads_per_core=1, vcpus=1, cpu="PPC970"),
    lambda: Config(changes=["8464c884"], ablations=("no_nv_save",)),
    lambda: Config(costs=CostModel(host_tick=1, realmode_step=0)),
    lambda: run((Idle(None), Confer(), Mmio()), (Prod(0),), events=[Signal(0, 1)],
                start_us=[0, 3.5]),
    lambda: random_workload(SMT2, 10.0, idle_fraction=1.0, idle_vcpus=[1], seed=3),
], ids=["defaults", "ppc970", "changes-and-ablations", "cheap-costs", "every-op", "random"])
def test_valid_edge_input_is_accepted(make):
    make()


def test_config_accepts_any_collection_of_names_and_round_trips():
    cfg = Config(changes=["04f995a5"], ablations=("no_cede_sync",), memory="store_buffer")
    assert cfg.bugs == frozenset({"hprod_wakes_caller"}) and isinstance(cfg.ablations, frozenset)
    assert isinstance(cfg.changes, frozenset)
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="vcpus"):
        cfg.replace(vcpus=9)


def test_default_is_linux_3_4_as_shipped_with_its_bugs():
    assert Config().kernel == "Linux 3.4 as shipped"
    assert Config().bugs == {"prodded_branch", "hprod_wakes_caller"}
    assert Config.linux("3.4") == Config()
    assert Config.linux("3.6").bugs == {"hprod_wakes_caller"}
    later = Config.linux("4.10")
    assert later.bugs == frozenset() and later.kernel.startswith("Linux 3.4 + 04f995a5 (3.6)")
