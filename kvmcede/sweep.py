"""Parameter sweeps: many simulations through any ``concurrent.futures.Executor``.

:func:`sweep` runs the cartesian product of a grid of :class:`~kvmcede.config.Config`
fields and workload parameters, times a list of seeds, and returns a tidy table — one
row per run, with the run's parameters and :meth:`Metrics.summary()
<kvmcede.trace.Metrics.summary>` — in a fixed order that does not depend on which run
finished first.  The work goes through ``executor.submit`` and the futures it returns,
nothing else, so the same sweep runs on a local process pool (the default), a thread
pool, or a cluster executor such as Dask's ``client.get_executor()`` (``pip install
"kvmcede[cluster]"``; tested against a ``distributed.LocalCluster`` of worker
processes) — with the same rows, and with ``traces=True`` byte-identical trace JSON,
whichever runs them.

>>> from kvmcede.sweep import SerialExecutor, sweep
>>> res = sweep({"policy": ["realmode", "host"]}, duration_us=2000,
...             executor=SerialExecutor(), progress=False)
>>> [(r["policy"], r["cede_exits"] > 0) for r in res]
[('realmode', False), ('host', True)]
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import inspect
import itertools
import math
import operator
import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, overload

from .config import Config, CostModel
from .guest import Workload, random_workload
from .sim import simulate
from .trace import Trace

__all__ = ["CONFIG_KEYS", "SerialExecutor", "SweepError", "SweepResult", "metric_names",
           "sweep"]

#: Config fields a grid may vary (``seed`` comes from ``seeds=``; the cost model is varied
#: one field at a time as ``"costs.<field>"``, in timebase ticks).
CONFIG_KEYS: tuple[str, ...] = ("threads_per_core", "vcpus", "policy", "cpu", "memory",
                                "changes", "ablations", "timebase_hz")
COST_KEYS: tuple[str, ...] = tuple(f"costs.{f.name}" for f in fields(CostModel))
#: Config columns every row carries (the rest appear only when the grid varies them).
_ROW_CONFIG = ("policy", "threads_per_core", "vcpus", "cpu", "memory", "changes", "ablations")
_NAME_SETS = ("changes", "ablations")

WorkloadFn = Callable[..., Workload]


class SweepError(RuntimeError):
    """A run of a sweep failed with something other than a ValueError (which is re-raised
    as a ValueError).  The message names the grid point; ``__cause__`` is the exception
    the run raised (behind a process pool, it carries the worker's traceback)."""


class SerialExecutor(cf.Executor):
    """An executor that runs each call in the calling thread, at ``submit``.

    Handy for debugging a sweep (tracebacks point into the simulation), for tiny grids
    where starting a process pool costs more than the work, and in doctests."""

    def submit(self, fn, /, *args, **kwargs):
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as e:  # delivered through the future, like any executor
            fut.set_exception(e)
        return fut


# ============================================================================================
# The result table
# ============================================================================================

@dataclass(frozen=True)
class SweepResult(Sequence):
    """The rows of a sweep, in grid order: a sequence of dicts (one per run).

    ``params`` names the parameter columns (Config fields, workload parameters,
    ``duration_us``, ``seed``); ``metrics`` names the metric columns
    (:meth:`Metrics.summary() <kvmcede.trace.Metrics.summary>` plus ``steps``, the number
    of model steps the run took).  Collections of names (``changes``, ``ablations``) are
    written as one string joined with ``+`` ("" for none), so every cell is a scalar.
    ``traces``: with ``sweep(..., traces=True)``, each run's trace as
    :meth:`Trace.to_json() <kvmcede.trace.Trace.to_json>` text, in row order (else
    None); :meth:`trace` rebuilds one."""

    rows: list[dict[str, Any]]
    params: tuple[str, ...]
    metrics: tuple[str, ...]
    traces: tuple[str, ...] | None = None

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i):
        return self.rows[i]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def trace(self, i: int) -> Trace:
        """The :class:`~kvmcede.trace.Trace` of row ``i`` (needs ``traces=True``)."""
        if self.traces is None:
            raise ValueError("this sweep kept no traces; run sweep(..., traces=True)")
        return Trace.from_json(self.traces[i])

    @property
    def columns(self) -> tuple[str, ...]:
        """All columns: parameters first, then metrics."""
        return self.params + self.metrics

    def varied(self) -> tuple[str, ...]:
        """The parameter columns that take more than one value across the rows."""
        return tuple(p for p in self.params
                     if len({repr(r[p]) for r in self.rows}) > 1)

    def to_pandas(self):
        """The table as a ``pandas.DataFrame`` (needs pandas: ``pip install pandas``)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("SweepResult.to_pandas() needs pandas; install it with "
                              "`pip install pandas`, or use .rows / .to_csv()") from e
        return pd.DataFrame(self.rows, columns=list(self.columns))

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the table as CSV (header row, then one line per run)."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(self.columns))
            w.writeheader()
            w.writerows(self.rows)

    def table(self, columns: Sequence[str] | None = None) -> str:
        """A plain-text table.  Default columns: the varied parameters, then every
        metric."""
        cols = list(columns) if columns is not None else [*self.varied(), *self.metrics]
        bad = [c for c in cols if c not in self.columns]
        if bad:
            raise ValueError(f"columns: unknown column(s) {bad}; allowed: "
                             f"{list(self.columns)}")
        cells = [[_cell(r[c]) for c in cols] for r in self.rows]
        widths = [max([len(c), *(len(row[k]) for row in cells)]) for k, c in enumerate(cols)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _cell(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    if v == "":
        return "none"
    return str(v)


# ============================================================================================
# Grid handling
# ============================================================================================

def _workload_keys(workload_fn: WorkloadFn) -> tuple[dict[str, Any], bool]:
    """The keyword parameters of ``workload_fn`` other than ``seed`` (name -> default,
    ``None`` default if it has none), and whether it takes ``**kwargs``.

    The contract for a workload function: ``workload_fn(config, duration_us, *, seed,
    **params) -> Workload``, like :func:`~kvmcede.guest.random_workload`."""
    try:
        sig = inspect.signature(workload_fn)
    except (TypeError, ValueError) as e:  # some builtins and C callables have none
        raise ValueError(f"workload_fn must take (config, duration_us, *, seed, **params); "
                         f"cannot read the signature of {workload_fn!r}: {e}") from e
    params = list(sig.parameters.values())
    if len(params) < 2 or params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                                 inspect.Parameter.POSITIONAL_OR_KEYWORD):
        raise ValueError("workload_fn must take (config, duration_us, *, seed, **params), "
                         f"got {getattr(workload_fn, '__name__', workload_fn)}{sig}")
    keys: dict[str, Any] = {}
    var_kw = False
    for p in params[2:]:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            var_kw = True
        elif p.kind is not inspect.Parameter.VAR_POSITIONAL and p.name != "seed":
            keys[p.name] = None if p.default is inspect.Parameter.empty else p.default
    if "seed" not in sig.parameters and not var_kw:
        raise ValueError(f"workload_fn must accept a seed= keyword argument, got "
                         f"{getattr(workload_fn, '__name__', workload_fn)}{sig}")
    return keys, var_kw


def _values(key: str, vals: object) -> list[Any]:
    """The list of values of one grid axis (a single string counts as one value)."""
    if isinstance(vals, str | bytes) or not isinstance(vals, Iterable):
        raise ValueError(f"grid[{key!r}] must be a list of values to try, got {vals!r}; "
                         f"write [{vals!r}] for a single value")
    out = list(vals)
    if not out:
        raise ValueError(f"grid[{key!r}] is an empty list; give at least one value")
    return out


def _names(key: str, v: object) -> frozenset[str]:
    """A changes/ablations grid value: None or "" (none), one name, or a collection."""
    if v is None or v == "":
        return frozenset()
    if isinstance(v, str):
        return frozenset({v})
    if isinstance(v, Iterable):
        return frozenset(v)
    raise ValueError(f"grid[{key!r}] values must be a name, a collection of names or None, "
                     f"got {v!r}")


def _show(v: object) -> object:
    """A scalar form of a parameter value for the table."""
    if isinstance(v, frozenset | set):
        return "+".join(sorted(map(str, v)))
    if isinstance(v, tuple | list):
        return "+".join(map(str, v))
    return v


@dataclass(frozen=True)
class _Point:
    index: int
    config: Config
    wparams: dict[str, Any]
    seed: int
    label: str


def _points(grids: Sequence[Mapping[str, Any]], seeds: list[int], duration_us: float,
            wkeys: dict[str, Any], var_kw: bool) -> tuple[list[_Point], list[dict], tuple]:
    allowed = [*CONFIG_KEYS, *COST_KEYS, *wkeys]
    cost_cols: list[str] = []
    extra_wcols: list[str] = []
    combos: list[dict[str, Any]] = []
    for grid in grids:
        if not isinstance(grid, Mapping):
            raise ValueError(f"grid must be a mapping of parameter name -> list of values "
                             f"(or a list of such mappings), got {grid!r}")
        axes: list[tuple[str, list[Any]]] = []
        for key, vals in grid.items():
            if not isinstance(key, str):
                raise ValueError(f"grid keys must be parameter names (strings), got "
                                 f"{key!r}; allowed keys: {allowed}")
            if key == "seed":
                raise ValueError("grid key 'seed' is not allowed: pass seeds=(...) to "
                                 f"sweep(); allowed grid keys: {allowed}")
            if key == "duration_us":
                raise ValueError("grid key 'duration_us' is not allowed: pass "
                                 f"duration_us= to sweep(); allowed grid keys: {allowed}")
            if key not in allowed and not (var_kw and key not in CONFIG_KEYS
                                           and not key.startswith("costs.")):
                raise ValueError(f"grid key {key!r} is unknown; allowed keys: {allowed}")
            if key in COST_KEYS and key not in cost_cols:
                cost_cols.append(key)
            if key not in allowed and key not in extra_wcols:
                extra_wcols.append(key)
            axes.append((key, _values(key, vals)))
        for combo in itertools.product(*(vals for _, vals in axes)):
            combos.append(dict(zip((k for k, _ in axes), combo, strict=True)))

    points: list[_Point] = []
    rows: list[dict[str, Any]] = []
    for combo in combos:
        ckw: dict[str, Any] = {}
        costs: dict[str, Any] = {}
        wkw: dict[str, Any] = {}
        for key, v in combo.items():
            if key in _NAME_SETS:
                ckw[key] = _names(key, v)
            elif key in CONFIG_KEYS:
                ckw[key] = v
            elif key.startswith("costs."):
                costs[key[6:]] = v
            else:
                wkw[key] = v
        # A grid over SMT modes without vcpus means a full vcore in each mode.
        if "threads_per_core" in ckw and "vcpus" not in ckw:
            ckw["vcpus"] = ckw["threads_per_core"]
        if costs:  # validated by Config (the message names costs.<field>)
            ckw["costs"] = CostModel(**costs)
        desc = ", ".join(f"{k}={v!r}" for k, v in combo.items())
        for seed in seeds:
            try:
                config = Config(**ckw, seed=seed)
            except ValueError as e:
                raise ValueError(f"grid point ({desc}): {e}") from e
            row: dict[str, Any] = {k: _show(getattr(config, k)) for k in _ROW_CONFIG}
            if "timebase_hz" in combo:
                row["timebase_hz"] = config.timebase_hz
            for c in cost_cols:
                row[c] = getattr(config.costs, c[6:])
            for k, default in wkeys.items():
                row[k] = _show(wkw.get(k, default))
            for k in extra_wcols:
                row[k] = _show(wkw.get(k))
            row["duration_us"] = duration_us
            row["seed"] = seed
            label = f"grid point ({desc}{', ' if desc else ''}seed={seed})"
            points.append(_Point(len(points), config, wkw, seed, label))
            rows.append(row)
    params = (*_ROW_CONFIG, *(["timebase_hz"] if any("timebase_hz" in c for c in combos)
                              else []), *cost_cols, *wkeys, *extra_wcols, "duration_us", "seed")
    return points, rows, params


# ============================================================================================
# Running
# ============================================================================================

#: The attribute a worker sets on the exception of a failed run: the run's point index.
#: (An instance attribute travels with the exception through pickle, so the parent can
#: name the grid point whichever executor carried it.)
_FAILED_POINT = "kvmcede_sweep_point"


def _run_chunk(workload_fn: WorkloadFn, duration_us: float, chunk: list[_Point],
               keep_traces: bool = False) -> list[tuple[dict[str, Any], str | None]]:
    """Run one chunk of points (in a worker); return each run's metrics and, if
    ``keep_traces``, its trace JSON.

    Top-level so that process pools can pickle it by reference.  A failing run's
    exception propagates, marked with the run's point index (see :func:`_failure`)."""
    out = []
    for p in chunk:
        try:
            wl = workload_fn(p.config, duration_us, seed=p.seed, **p.wparams)
            if keep_traces:
                tr = simulate(p.config, wl, until=duration_us)
                m, trace_json = tr.metrics, tr.to_json()
            else:  # metrics only: no events kept, memory flat however long the run
                m, trace_json = simulate(p.config, wl, until=duration_us,
                                         record="metrics"), None
        except Exception as e:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(e, _FAILED_POINT, p.index)
            raise
        row = m.summary()
        row["steps"] = m.steps
        out.append((row, trace_json))
    return out


def _failure(e: Exception, chunk: list[_Point]) -> Exception:
    """The exception to raise (``from e``) for a chunk whose future raised ``e``: its
    message names the failed grid point (or the chunk's points, when the executor lost
    track of which: e.g. a worker process died).  A ValueError stays a ValueError (bad
    workload parameters are input errors); anything else becomes a SweepError."""
    k = getattr(e, _FAILED_POINT, None)
    failed = [p for p in chunk if p.index == k] or chunk
    if len(failed) == 1:
        where = failed[0].label
    else:
        where = f"one of {len(failed)} grid points, {failed[0].label} to {failed[-1].label}"
    if isinstance(e, ValueError):
        return ValueError(f"{where}: {e}")
    return SweepError(f"{where}: {type(e).__name__}: {e}")


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def metric_names() -> tuple[str, ...]:
    """The metric columns of a sweep row: the keys of ``Metrics.summary()`` and
    ``steps``.  (Computed from a one-microsecond simulation, so it always matches.)"""
    from .guest import Busy
    m = simulate(Config(threads_per_core=1, vcpus=1), Workload(((Busy(1.0),),)), until=1.0,
                 record="metrics")
    return (*m.summary(), "steps")


def _grids(grid: object) -> list[Mapping[str, Any]]:
    """The list of grid mappings ``sweep(grid)`` was given, or ValueError."""
    what = ("a mapping of parameter name -> list of values, e.g. "
            "{'policy': ['realmode', 'host']}, or a list of such mappings")
    if grid is None:
        raise ValueError(f"grid is required: give {what}")
    if isinstance(grid, Mapping):
        return [grid]
    if isinstance(grid, str | bytes) or not isinstance(grid, Iterable):
        raise ValueError(f"grid must be {what}; got {grid!r}")
    grids = list(grid)
    if not grids:
        raise ValueError(f"grid is an empty list; give at least one mapping ({what})")
    for k, g in enumerate(grids):
        if not isinstance(g, Mapping):
            raise ValueError(f"grid[{k}] must be a mapping of parameter name -> list of "
                             f"values, got {g!r}")
    return grids


def _seed_list(seeds: object) -> list[int]:
    if isinstance(seeds, int):
        raise ValueError(f"seeds must be a list of integers, got {seeds!r}; write "
                         f"seeds=[{seeds}]")
    if seeds is None or isinstance(seeds, str | bytes) or not isinstance(seeds, Iterable):
        raise ValueError(f"seeds must be a list of integers, got {seeds!r}")
    out = []
    for s in seeds:
        try:
            if isinstance(s, bool):
                raise TypeError
            out.append(operator.index(s))  # int, or an integer type such as numpy's
        except TypeError:
            raise ValueError(f"seeds must be integers, got {s!r}") from None
    if not out:
        raise ValueError("seeds is empty; give at least one integer seed")
    return out


def sweep(grid: Mapping[str, Iterable[Any]] | Sequence[Mapping[str, Iterable[Any]]], *,
          seeds: Iterable[int] = (0,), duration_us: float = 20_000.0,
          executor: cf.Executor | None = None, progress: bool = True,
          workload_fn: WorkloadFn | None = None, max_workers: int | None = None,
          chunksize: int | None = None, traces: bool = False) -> SweepResult:
    """Simulate every point of ``grid`` for every seed; return one row per run.

    ``grid`` maps parameter names to lists of values; the runs are its cartesian
    product (a list of such mappings sweeps each in turn).  Allowed names:

    * Config fields :data:`CONFIG_KEYS` (``policy``, ``threads_per_core``, ``vcpus``,
      ``cpu``, ``memory``, ``changes``, ``ablations``, ``timebase_hz``) — a ``changes`` or
      ``ablations`` value is one name, a collection of names, or None for none;
      without ``vcpus`` a ``threads_per_core`` axis uses a full vcore (vcpus = threads);
    * ``"costs.<field>"`` for one :class:`~kvmcede.config.CostModel` field (ticks);
    * the keyword parameters of ``workload_fn`` (default
      :func:`~kvmcede.guest.random_workload`: ``idle_fraction``, ``idle_us``,
      ``interrupt_rate``, ``idle_vcpus``).

    Each run simulates ``workload_fn(config, duration_us, seed=seed, **params)`` for
    ``duration_us`` microseconds with ``Config(..., seed=seed)``.  Rows come in grid
    order (the first key varies slowest, seeds fastest), whatever order the runs finish
    in.  Invalid arguments raise :class:`ValueError` naming the argument before anything
    runs (no or a malformed grid, unknown key, empty list, a value Config rejects, bad
    seeds, executor, ...).  A run that fails is re-raised naming its grid point, chained
    to what it raised (``raise ... from``): a ValueError (e.g. a bad workload
    parameter) as a ValueError, anything else as a :class:`SweepError`.

    ``executor``: any ``concurrent.futures.Executor`` — a process or thread pool, or a
    cluster's, e.g. Dask's ``distributed.Client(...).get_executor()`` — or any object
    whose ``submit(fn, *args)`` returns something with ``result()`` (a Dask
    ``Client`` itself), since nothing else is used; it is not shut down.  Default: a
    ``ProcessPoolExecutor`` with ``max_workers`` (default: the CPUs this process may
    use) and the runs grouped in chunks of ``chunksize`` (default: about four chunks
    per worker; 1 with a given executor), shut down afterwards.  A process pool
    pickles ``workload_fn``: it must be a module-level function (Dask's cloudpickle
    also takes lambdas and closures).
    ``progress``: show a ``tqdm.auto`` bar (notebook-aware) when tqdm is installed.
    ``traces``: also keep each run's trace as JSON (``res.traces``, ``res.trace(i)``);
    they can be large (every event of every run).
    """
    if workload_fn is None:
        workload_fn = random_workload
    if not callable(workload_fn):
        raise ValueError(f"workload_fn must be callable, got {workload_fn!r}")
    if (not isinstance(duration_us, int | float) or isinstance(duration_us, bool)
            or not 0 < duration_us < math.inf):
        raise ValueError(f"duration_us must be a positive finite number of microseconds, "
                         f"got {duration_us!r}")
    seed_list = _seed_list(seeds)
    for name, v in (("max_workers", max_workers), ("chunksize", chunksize)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {v!r}")
    for name, v in (("progress", progress), ("traces", traces)):
        if not isinstance(v, bool):
            raise ValueError(f"{name} must be True or False, got {v!r}")
    if executor is not None:
        if isinstance(executor, type):
            raise ValueError(f"executor must be an executor instance, got the class "
                             f"{executor.__name__}; write executor={executor.__name__}()")
        if not callable(getattr(executor, "submit", None)):
            raise ValueError(f"executor must have a submit(fn, *args) method (a "
                             f"concurrent.futures.Executor, e.g. ProcessPoolExecutor(), "
                             f"ThreadPoolExecutor(), SerialExecutor() or a Dask client's "
                             f"get_executor()), got {executor!r}")

    grids = _grids(grid)
    wkeys, var_kw = _workload_keys(workload_fn)
    points, rows, params = _points(grids, seed_list, duration_us, wkeys, var_kw)
    metrics = metric_names()

    own = executor is None
    if own or isinstance(executor, cf.ProcessPoolExecutor):
        try:
            pickle.dumps(workload_fn)
        except Exception as e:
            raise ValueError(
                f"workload_fn must be picklable to run in a process pool (a function "
                f"defined at module level), got {workload_fn!r} ({e}); define it in a "
                f"module, or pass executor=ThreadPoolExecutor() or SerialExecutor()") from e
    if own:
        workers = min(max_workers or _cpu_count(), len(points))
        size = chunksize or max(1, math.ceil(len(points) / (workers * 4)))
        executor = cf.ProcessPoolExecutor(max_workers=workers)
    else:
        size = chunksize or 1
    chunks = [points[i:i + size] for i in range(0, len(points), size)]
    results: list[list[tuple[dict[str, Any], str | None]] | None] = [None] * len(chunks)
    futures: list[Any] = []
    try:
        bar = None
        try:
            for c in chunks:
                try:
                    futures.append(executor.submit(_run_chunk, workload_fn, duration_us, c,
                                                   traces))
                except RuntimeError as e:  # "cannot schedule new futures after shutdown"
                    raise ValueError(f"executor {executor!r} refused the work ({e}); was "
                                     f"it shut down? Pass an open executor, or none") from e
            index = {id(f): k for k, f in enumerate(futures)}
            bar = _bar(len(points)) if progress else None
            if all(isinstance(f, cf.Future) for f in futures):
                done: Iterable[Any] = cf.as_completed(futures)
            else:  # an executor-like whose futures only promise .result(): in order
                done = futures
            for f in done:
                k = index[id(f)]
                try:
                    results[k] = f.result()
                except Exception as e:
                    raise _failure(e, chunks[k]) from e
                if bar is not None:
                    bar.update(len(chunks[k]))
        except BaseException:
            for f in futures:
                cancel = getattr(f, "cancel", None)
                if cancel is not None:
                    cancel()
            raise
        finally:
            if bar is not None:
                bar.close()
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)

    kept: list[str | None] = [None] * len(points)
    for chunk, res in zip(chunks, results, strict=True):
        assert res is not None and len(res) == len(chunk)
        for p, (m, trace_json) in zip(chunk, res, strict=True):
            rows[p.index].update(m)
            kept[p.index] = trace_json
    return SweepResult(rows=rows, params=params, metrics=metrics,
                       traces=tuple(t for t in kept if t is not None) if traces else None)


def _bar(total: int):
    """A tqdm.auto progress bar, or None when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="sweep", unit="run")
