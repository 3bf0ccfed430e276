"""The sweep on a real cluster engine: Dask ``distributed``, a LocalCluster of two worker
processes on 127.0.0.1, through ``client.get_executor()`` (and the Client itself).

The rows and the kept traces must be those of the serial run, byte for byte.  Skipped,
with the reason, only when ``distributed`` cannot be imported; the ``test`` extra
installs it (``pip install -e ".[test]"``, or ``".[cluster]"`` for the cluster alone).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import kvmcede
from kvmcede.sweep import SerialExecutor, SweepError, sweep
from tests.test_sweep import FAILED_POINT, WorkloadBroke, failing_workload

distributed = pytest.importorskip(
    "distributed",
    reason="Dask distributed is not installed: pip install -e '.[cluster]' (the test "
           "extra installs it too)")

pytestmark = pytest.mark.slow

GRID = {"policy": ["realmode", "host"], "idle_fraction": [0.25, 0.75]}
SEEDS = (0, 1)
DURATION_US = 2000.0


@pytest.fixture(scope="module")
def client():
    """A Client of a LocalCluster: two single-threaded worker processes, 127.0.0.1
    only, no dashboard; closed (workers stopped) at teardown."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    try:
        with distributed.Client(cluster) as c:
            c.wait_for_workers(2, timeout=120)
            yield c
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def serial():
    return sweep(GRID, seeds=SEEDS, duration_us=DURATION_US, executor=SerialExecutor(),
                 progress=False, traces=True)


def _module_file() -> str:
    return kvmcede.__file__


def test_workers_are_separate_processes_running_this_kvmcede(client):
    pids = client.run(os.getpid)
    assert len(pids) == 2 and os.getpid() not in pids.values()
    files = set(client.run(_module_file).values())
    assert {Path(f).resolve() for f in files} == {Path(kvmcede.__file__).resolve()}


def test_client_executor_gives_the_serial_rows_and_byte_identical_traces(client, serial):
    executor = client.get_executor()
    res = sweep(GRID, seeds=SEEDS, duration_us=DURATION_US, executor=executor,
                progress=False, traces=True)
    assert res.rows == serial.rows
    assert res.columns == serial.columns
    assert res.traces is not None and serial.traces is not None
    assert [t.encode() for t in res.traces] == [t.encode() for t in serial.traces]
    assert client.submit(int, "7").result() == 7  # the cluster is left usable


def test_the_client_itself_works_as_an_executor(client, serial):
    res = sweep(GRID, seeds=SEEDS, duration_us=DURATION_US, executor=client,
                progress=False, chunksize=3)
    assert res.rows == serial.rows


def test_a_failing_run_on_the_cluster_names_its_grid_point(client):
    with pytest.raises(SweepError) as e:
        sweep({"idle_us": [100.0, 200.0, 300.0]}, seeds=(0, 1), duration_us=500,
              executor=client.get_executor(), progress=False,
              workload_fn=failing_workload)
    assert str(e.value).startswith(FAILED_POINT), str(e.value)
    assert isinstance(e.value.__cause__, WorkloadBroke)
