"""The sweep helper: grid expansion, executors, ordering, validation, export."""

from __future__ import annotations

import concurrent.futures as cf
import csv
import threading

import pytest

from kvmcede import Config, random_workload, simulate
from kvmcede.sweep import CONFIG_KEYS, SerialExecutor, SweepResult, metric_names, sweep

GRID = {"policy": ["realmode", "host"], "idle_fraction": [0.25, 0.75]}
SHORT_US = 2000.0


def _serial(grid=GRID, **kw):
    kw.setdefault("duration_us", SHORT_US)
    kw.setdefault("progress", False)
    return sweep(grid, executor=SerialExecutor(), **kw)


def test_rows_follow_grid_order_with_seeds_fastest():
    res = _serial(seeds=(0, 1))
    assert [(r["policy"], r["idle_fraction"], r["seed"]) for r in res] == [
        ("realmode", 0.25, 0), ("realmode", 0.25, 1), ("realmode", 0.75, 0),
        ("realmode", 0.75, 1), ("host", 0.25, 0), ("host", 0.25, 1), ("host", 0.75, 0),
        ("host", 0.75, 1)]


def test_row_metrics_equal_a_direct_simulation():
    res = _serial(seeds=(3,))
    row = res[3]  # host, idle_fraction 0.75
    config = Config(policy="host", seed=3)
    wl = random_workload(config, SHORT_US, idle_fraction=0.75, seed=3)
    tr = simulate(config, wl, until=SHORT_US)
    for k, v in tr.metrics.summary().items():
        assert row[k] == v, k
    assert row["steps"] == len(tr.steps)
    assert row["duration_us"] == SHORT_US
    assert (row["threads_per_core"], row["vcpus"], row["changes"], row["ablations"]) == \
        (4, 4, "", "")


def test_default_process_pool_gives_the_serial_result():
    serial = _serial(seeds=(0, 1))
    pooled = sweep(GRID, seeds=(0, 1), duration_us=SHORT_US, progress=False,
                   max_workers=2)
    assert pooled.rows == serial.rows
    assert pooled.columns == serial.columns


def test_given_process_pool_is_used_and_left_open():
    with cf.ProcessPoolExecutor(max_workers=2) as pool:
        res = sweep({"policy": ["realmode", "host"]}, duration_us=SHORT_US, executor=pool,
                    progress=False)
        # The sweep must not shut down an executor it was given.
        assert pool.submit(int, "7").result() == 7
    assert res.rows == _serial({"policy": ["realmode", "host"]}).rows


def test_thread_pool_gives_the_serial_result():
    with cf.ThreadPoolExecutor(max_workers=3) as pool:
        res = sweep(GRID, duration_us=SHORT_US, executor=pool, progress=False, chunksize=2)
    assert res.rows == _serial().rows


# A workload function that makes the runs finish in reverse order: the run with
# idle_us = U waits until the run with the next larger idle_us has finished.
_IDLE = (100.0, 200.0, 300.0, 400.0)
_finished: dict[float, threading.Event] = {}
_order: list[float] = []


def _reverse_workload(config, duration_us, *, seed, idle_us):
    k = _IDLE.index(idle_us)
    if k + 1 < len(_IDLE):
        assert _finished[_IDLE[k + 1]].wait(timeout=30)
    _order.append(idle_us)
    _finished[idle_us].set()
    return random_workload(config, duration_us, idle_us=idle_us, seed=seed)


def test_rows_keep_grid_order_when_runs_finish_in_reverse():
    _finished.clear()
    _finished.update({u: threading.Event() for u in _IDLE})
    _order.clear()
    with cf.ThreadPoolExecutor(max_workers=len(_IDLE)) as pool:
        res = sweep({"idle_us": list(_IDLE)}, duration_us=500, executor=pool,
                    progress=False, workload_fn=_reverse_workload)
    assert _order == list(reversed(_IDLE))  # the premise: completion order reversed
    assert [r["idle_us"] for r in res] == list(_IDLE)
    assert set(res.params) >= {"idle_us", "seed"}
    assert "idle_fraction" not in res.params  # columns come from the workload function


class _LazyFuture:
    """Not a concurrent.futures.Future: only .result(), like some cluster futures."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def result(self):
        return self.fn(*self.args)


class _SubmitOnly:
    def submit(self, fn, *args):
        return _LazyFuture(fn, args)


def test_executor_like_objects_need_only_submit_and_result():
    res = sweep(GRID, duration_us=SHORT_US, executor=_SubmitOnly(), progress=False)
    assert res.rows == _serial().rows


def test_threads_axis_without_vcpus_uses_a_full_vcore():
    res = _serial({"threads_per_core": [1, 2, 4]})
    assert [(r["threads_per_core"], r["vcpus"]) for r in res] == [(1, 1), (2, 2), (4, 4)]


def test_name_set_axes_accept_none_a_name_or_a_collection():
    res = _serial({"ablations": [None, "no_ipi_on_exit", ("no_nv_save", "no_ipi_on_exit")]})
    assert [r["ablations"] for r in res] == ["", "no_ipi_on_exit",
                                             "no_ipi_on_exit+no_nv_save"]


def test_cost_fields_can_be_swept_in_ticks():
    res = _serial({"costs.nap_wakeup": [512, 51200]})
    assert [r["costs.nap_wakeup"] for r in res] == [512, 51200]
    assert "costs.nap_wakeup" in res.params


def test_list_of_grids_is_swept_in_turn():
    res = _serial([{"policy": ["host"]}, {"policy": ["realmode"], "idle_fraction": [0.75]}])
    assert [(r["policy"], r["idle_fraction"]) for r in res] == [("host", 0.5),
                                                                  ("realmode", 0.75)]


@pytest.mark.parametrize(("grid", "words"), [
    ({"polcy": ["host"]}, ["'polcy'", "allowed keys", "policy", "idle_fraction"]),
    ({"seed": [1]}, ["seeds="]),
    ({"policy": []}, ["grid['policy']", "empty"]),
    ({"policy": "host"}, ["grid['policy']", "list of values"]),
    ({"vcpus": [5]}, ["vcpus", "threads_per_core"]),
    ({"policy": ["realtime"]}, ["policy", "realmode"]),
    ({"threads_per_core": [3]}, ["threads_per_core", "1, 2 or 4"]),
    ({"ablations": ["no_such_thing"]}, ["ablations", "no_ipi_on_exit"]),
    ({"costs.nap_wakeup": [-1]}, ["costs.nap_wakeup"]),
])
def test_bad_grid_raises_value_error_naming_the_problem(grid, words):
    with pytest.raises(ValueError) as e:
        _serial(grid)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize(("kw", "word"), [
    ({"seeds": ()}, "seeds"),
    ({"seeds": 3}, "seeds"),
    ({"seeds": [1.5]}, "seeds"),
    ({"duration_us": 0}, "duration_us"),
    ({"max_workers": 0}, "max_workers"),
    ({"workload_fn": lambda config: None}, "workload_fn"),
])
def test_bad_arguments_raise_value_error_naming_them(kw, word):
    with pytest.raises(ValueError, match=word):
        _serial(**kw)


def test_bad_workload_value_names_the_field_and_grid_point():
    with pytest.raises(ValueError) as e:
        _serial({"policy": ["realmode"], "idle_fraction": [0.5, 1.5]})
    assert "idle_fraction" in str(e.value)
    assert "grid point (policy='realmode', idle_fraction=1.5, seed=0)" in str(e.value)


def test_bad_workload_value_surfaces_through_a_process_pool():
    with pytest.raises(ValueError, match="idle_us"):
        sweep({"idle_us": [-5.0]}, duration_us=SHORT_US, progress=False, max_workers=1)


def test_unpicklable_workload_function_is_refused_before_a_process_pool_starts():
    with pytest.raises(ValueError, match="picklable"):
        sweep({"idle_us": [100.0]}, duration_us=SHORT_US, progress=False,
              workload_fn=lambda config, duration_us, *, seed, idle_us: None)


def test_progress_bar_reports_every_run(capsys):
    pytest.importorskip("tqdm")
    _serial(seeds=(0, 1), progress=True)
    assert "8/8" in capsys.readouterr().err


def test_no_progress_output_when_disabled(capsys):
    _serial(progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_csv_has_a_header_and_one_line_per_run(tmp_path):
    res = _serial(seeds=(0, 1))
    path = tmp_path / "sweep.csv"
    res.to_csv(path)
    with open(path, newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == len(res) == 8
    assert list(lines[0]) == list(res.columns)
    assert [line["policy"] for line in lines] == [r["policy"] for r in res]
    assert [int(line["naps"]) for line in lines] == [r["naps"] for r in res]


def test_to_pandas_has_one_row_per_run_and_every_column():
    pytest.importorskip("pandas")
    df = _serial().to_pandas()
    assert list(df.columns) == list(_serial().columns)
    assert len(df) == 4
    assert df.groupby("policy")["naps"].sum()["host"] == 0


def test_table_shows_varied_parameters_and_rejects_unknown_columns():
    res = _serial()
    assert res.varied() == ("policy", "idle_fraction")
    header = res.table().splitlines()[0].split()
    assert header[:2] == ["policy", "idle_fraction"]
    assert header[2:] == list(res.metrics)
    with pytest.raises(ValueError, match="nosuch"):
        res.table(["nosuch"])


def test_result_is_a_sequence_of_rows():
    res = _serial()
    assert isinstance(res, SweepResult)
    assert len(res) == 4 and list(res) == res.rows and res[-1] is res.rows[-1]
    assert res.metrics == metric_names()
    assert set(res.params) >= {"policy", "vcpus", "seed", "duration_us"}


def test_config_keys_are_config_fields():
    fields = set(Config.__dataclass_fields__)
    assert set(CONFIG_KEYS) <= fields
