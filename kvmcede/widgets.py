"""Interactive apps for the chapters: a step-through player, the policy comparison
dashboard, the explorer app and a timeline with a movable window.

Every app is a thin wrapper over a function of :mod:`kvmcede.plots` (the same call makes
the static figure of the book): it renders that figure with the Agg canvas into an
``ipywidgets.Image`` (PNG bytes), so the picture is stored with the notebook and can be
checked in tests without a browser.  Every app is an ``ipywidgets.VBox``: display it by
making it the last expression of a cell.

Redraws are kept fast by drawing each figure's frame (titles, legends, axes that do not
change) once and redrawing only what moves (matplotlib "blitting"), and by caching
simulations and replayed states.  ``benchmarks/bench_widgets.py`` measures them.

No widget shows a traceback: an impossible setting (say more vcpus than threads) is
prevented by linking the controls, and anything else that the model rejects is shown as
a message naming the problem.
"""

from __future__ import annotations

import html
import time
from collections import OrderedDict
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import ipywidgets as W
from matplotlib.figure import Figure

from . import plots
from .config import ABLATIONS, BUGS, Config, _is_int, check_time_us, is_finite, show
from .guest import _check_random, random_workload
from .model import Model
from .sim import simulate
from .trace import Trace

if TYPE_CHECKING:
    from .trace import Event, Metrics

__all__ = ["ComparisonDashboard", "ExitRaceWindow", "ExplorerApp", "NapSaveRestore",
           "ReentryDelivery", "StepPlayer", "TimelineWidget"]

_IMAGE_LAYOUT = {"max_width": "100%", "height": "auto"}

#: Longest run the comparison dashboard re-simulates per slider move (1 s of machine
#: time per policy: about a second of wall time at the busiest slider positions).
DASHBOARD_MAX_DURATION_US = 1_000_000
#: The dashboard's interrupt-rate slider: 0 to 10,000 per second per vcpu.
DASHBOARD_MAX_INTERRUPT_RATE = 10_000


# ---- constructor arguments: checked, never clamped -----------------------------------------

def _check_int(name: str, v: object, lo: int, hi: int) -> int:
    if not _is_int(v) or not lo <= v <= hi:
        raise ValueError(f"{name}: got {show(v)}; allowed: an integer from {lo:,} to {hi:,}")
    return int(v)


def _check_real(name: str, v: object, lo: float, hi: float) -> float:
    if not is_finite(v) or not lo <= v <= hi:
        raise ValueError(f"{name}: got {show(v)}; allowed: a number from {lo:g} to {hi:g}")
    return float(v)


def _check_dpi(dpi: object) -> float:
    return _check_real("dpi", dpi, 10, 600)


def _check_trace(trace: object) -> Trace:
    if not isinstance(trace, Trace):
        raise ValueError(f"trace: got {type(trace).__name__}; allowed: a Trace (from "
                         f"simulate(), or an explorer counterexample)")
    return trace


def _message_png(text: str, width: float = 8.0, dpi: float = 80) -> bytes:
    """A small PNG that says ``text`` (shown where a figure cannot be drawn)."""
    fig = Figure(figsize=(width, 0.9), dpi=dpi)
    fig.text(0.02, 0.5, text, fontsize=10, va="center", color="#994400", wrap=True)
    return plots.to_png(fig)


class _Blit:
    """A figure whose frame is drawn once; :meth:`png` redraws only ``artists``."""

    def __init__(self, fig: Figure, artists: list[Any]) -> None:
        self.fig = fig
        self.artists = artists
        for a in artists:
            a.set_animated(True)
        self.canvas = plots.fast_canvas(fig)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(fig.bbox)

    def png(self, artists: list[Any] | None = None) -> bytes:
        self.canvas.restore_region(self.background)
        for a in self.artists if artists is None else artists:
            self.fig.draw_artist(a)
        return plots.rgba_to_png(self.canvas.buffer_rgba())


class _TimelinePane:
    """One timeline figure redrawn for any window (:func:`kvmcede.plots.timeline`
    without its legend), with a movable step mark drawn over a saved background."""

    def __init__(self, trace: Trace, *, vcpus: bool = False, dpi: float = 80,
                 title: bool = True) -> None:
        self.trace = trace
        self.vcpus = vcpus
        self.fig = Figure(dpi=dpi)
        # lay the figure out (a title line is reserved with " "); windows come later
        plots.timeline(trace, 0.0, 1.0, fig=self.fig, vcpus=vcpus, legend=False,
                       title=" " if title else "")
        self.ax = self.fig.axes[0]
        self.canvas = plots.fast_canvas(self.fig)
        self.window: tuple[float, float] | None = None
        self.line = None
        self.background = None

    def set_window(self, a: float, b: float, title: str = "") -> None:
        """Draw the timeline of [a, b] (nothing to do if it is already drawn)."""
        if self.window == (a, b) and self.background is not None:
            return
        ax = self.ax
        plots.redraw_timeline(ax, self.trace, a, b, vcpus=self.vcpus, title=title)
        self.line = ax.axvline(a, color="black", lw=1.6, zorder=10, animated=True)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.fig.bbox)
        self.window = (a, b)

    def png(self, mark: float | None = None) -> bytes:
        """The drawn window as PNG, with a vertical mark at x = ``mark`` if given."""
        self.canvas.restore_region(self.background)
        if mark is not None:
            self.line.set_xdata([mark, mark])
            self.fig.draw_artist(self.line)
        return plots.rgba_to_png(self.canvas.buffer_rgba())


# =============================================================================================
# Step-through player
# =============================================================================================

class StepPlayer(W.VBox):
    """Step through any trace (a simulation or an explorer counterexample).

    Play and step buttons and a slider over the steps; below them the step just taken
    (its kernel function, a one-line explanation and the events it emitted), the
    timeline with that step marked, and the machine state after it with every value the
    step changed highlighted (:func:`kvmcede.plots.state_view`).

    Slider value ``k`` means "after ``k`` steps" (``0``: the initial state).
    """

    def __init__(self, trace: Trace, *, start: int = 0, page_steps: int | None = None,
                 interval_ms: int = 700, dpi: float = 80) -> None:
        n = len(_check_trace(trace).steps)
        start = _check_int("start", start, 0, n)
        if page_steps is not None:
            page_steps = _check_int("page_steps", page_steps, 1, 10**6)
        interval_ms = _check_int("interval_ms", interval_ms, 10, 60_000)
        dpi = _check_dpi(dpi)
        self.trace = trace
        self.dpi = dpi
        self._model = Model(trace.config, trace.workload)
        if page_steps is None:
            page_steps = max(n, 1) if trace.source == "explore" and n <= 150 else 50
        self.page_steps = page_steps
        self.play = W.Play(value=start, min=0, max=n, step=1, interval=interval_ms,
                           description="play", layout=W.Layout(width="auto"))
        self.slider = W.IntSlider(value=start, min=0, max=n, description="step",
                                  continuous_update=True, layout=W.Layout(width="55%"))
        W.link((self.play, "value"), (self.slider, "value"))
        buttons = []
        # FontAwesome icons (shipped with JupyterLab), not Unicode glyphs, which render as
        # empty boxes where the font lacks them.
        for icon, tip, fn in (("step-backward", "initial state", lambda k: 0),
                              ("chevron-left", "previous step", lambda k: k - 1),
                              ("chevron-right", "next step", lambda k: k + 1),
                              ("step-forward", "last step", lambda k: n)):
            b = W.Button(description="", icon=icon, tooltip=tip,
                         layout=W.Layout(width="38px"))
            b.on_click(lambda _b, fn=fn: self.show(max(0, min(n, fn(self.slider.value)))))
            buttons.append(b)
        self.buttons = buttons
        self.info = W.HTML()
        self.timeline_image = W.Image(format="png", layout=W.Layout(**_IMAGE_LAYOUT))
        # The legend is the same on every page: drawn once, under the pages.
        self.legend_image = W.Image(
            value=plots.to_png(plots.timeline_legend(trace, fig=Figure(dpi=dpi))),
            format="png", layout=W.Layout(**_IMAGE_LAYOUT))
        self.state_image = W.Image(format="png", layout=W.Layout(**_IMAGE_LAYOUT))
        super().__init__([W.HBox([self.play, *buttons, self.slider]), self.info,
                          self.timeline_image, self.legend_image, self.state_image])
        self._pane = _TimelinePane(trace, dpi=dpi)
        self._states: OrderedDict[int, bytes] = OrderedDict()
        self._k: int | None = None
        self._state = None
        self.slider.observe(self._on_value, names="value")
        self._render(start)

    # ---- public ----------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """The number of steps taken in the state shown."""
        return self.slider.value

    def show(self, k: int) -> None:
        """Show the state after ``k`` steps."""
        n = len(self.trace.steps)
        if not 0 <= k <= n:
            raise ValueError(f"k must be a step count from 0 to {n}, got {show(k)}")
        if k == self.slider.value:
            self._render(k)
        else:
            self.slider.value = k  # the observer renders

    # ---- rendering -----------------------------------------------------------------------------
    def _on_value(self, change: dict) -> None:
        self._render(change["new"])

    def _states_around(self, k: int):
        """(state before step k-1, state after it, events of it) using the last state
        shown when stepping forward by one."""
        tr = self.trace
        if k == 0:
            return None, tr.state_after(0), []
        t, st = tr.steps[k - 1]
        if self._k is not None and k == self._k + 1 and self._state is not None:
            prev = self._state
        else:
            prev = tr.state_after(k - 1)
        # Replay at the model time the trace was made at (explorer steps all run at 0).
        s, evs = self._model.apply(prev, st, tr._now(t))
        return prev, s, evs

    def _render(self, k: int) -> None:
        tr = self.trace
        prev, s, evs = self._states_around(k)
        self._k, self._state = k, s
        self.info.value = self._info_html(k, evs)
        self.timeline_image.value = self._timeline_png(k - 1)
        png = self._states.get(k)
        if png is None:
            if k:
                _t, st = tr.steps[k - 1]
                title = f"after step {k}: {st.label()}"
            else:
                title = "initial state"
            fig = Figure(dpi=self.dpi)
            plots.state_view(s, tr.config, title, previous=prev, workload=tr.workload,
                             fig=fig)
            png = plots.to_png(fig)
            self._states[k] = png
            if len(self._states) > 400:
                self._states.popitem(last=False)
        self.state_image.value = png

    def _info_html(self, k: int, evs: list[Event]) -> str:
        tr = self.trace
        n = len(tr.steps)
        if k == 0:
            return (f"<b>initial state</b> (step 0 of {n}): every vcpu stopped, thread 0 "
                    "in the host, the other threads offline.")
        t, st = tr.steps[k - 1]
        when = "" if tr.source == "explore" else f" · t = {tr.us(t):,.3f} µs"
        lines = [f"<b>step {k} of {n}</b>{when} · {html.escape(st.actor)} "
                 f"{st.index}: <code>{html.escape(st.name)}</code>",
                 f"<i>{html.escape(plots.explain_step(st))}</i>"]
        shown = [e for e in evs if e.kind not in ("thread_state", "vcpu_state")]
        if shown:
            items = "".join(
                f"<li><code>{html.escape(e.kind)}</code>"
                + (f" (vcpu {e.vcpu})" if e.vcpu >= 0 else "")
                + (f": {html.escape(e.detail)}" if e.detail else "") + "</li>"
                for e in shown[:8])
            more = f"<li>… {len(shown) - 8} more</li>" if len(shown) > 8 else ""
            lines.append(f"<ul style='margin:2px 0'>{items}{more}</ul>")
        return "<div style='line-height:1.35'>" + "<br>".join(lines[:2]) + \
            "".join(lines[2:]) + "</div>"

    def page_window(self, p: int) -> tuple[float, float]:
        """The timeline window of page ``p`` (``page_steps`` steps a page)."""
        if not self.trace.steps:
            return (0.0, max(1.0, plots.timeline_end(self.trace)))
        return plots.step_window(self.trace, p * self.page_steps, self.page_steps)

    def _timeline_png(self, j: int) -> bytes:
        """The timeline page holding step ``j`` (0-based; -1: none) with ``j`` marked."""
        tr = self.trace
        n = len(tr.steps)
        p = max(j, 0) // self.page_steps
        a, b = self.page_window(p)
        last = min(n, (p + 1) * self.page_steps)
        title = f"steps {p * self.page_steps + 1} to {last} of {n}" if n else "no steps"
        self._pane.set_window(a, b, title)
        if j < 0:
            return self._pane.png()
        return self._pane.png(plots.step_position(tr, j))


# =============================================================================================
# Comparison dashboard
# =============================================================================================

@lru_cache(maxsize=256)
def _simulate_pair(threads: int, vcpus: int, idle_fraction: float, rate: float,
                   duration_us: float, idle_us: float, seed: int) -> tuple[Metrics, Metrics]:
    """Metrics of policy "host" and policy "realmode" on one random workload."""
    cfg = Config(threads_per_core=threads, vcpus=vcpus, seed=seed)
    wl = random_workload(cfg, duration_us, idle_fraction=idle_fraction, idle_us=idle_us,
                         interrupt_rate=rate, seed=seed)
    host = simulate(cfg.replace(policy="host"), wl, until=duration_us, record="metrics")
    real = simulate(cfg, wl, until=duration_us, record="metrics")
    return host, real


class ComparisonDashboard(W.VBox):
    """Policy "host" (before 19ccb76a) against policy "realmode" on the same random
    workload, re-simulated for every slider position (:func:`kvmcede.plots.comparison`).

    Sliders: the fraction of time each vcpu is idle, the number of vcpus, device
    interrupts per second per vcpu, the SMT mode (the vcpu slider never exceeds the
    threads of the core) and the workload's seed.  ``duration_us`` of machine time is
    simulated per policy, with idle periods averaging ``idle_us`` (the default, 10 ms
    with 1 ms idle periods, keeps a new slider position under a tenth of a second;
    longer runs give steadier numbers, and every run is cached).
    """

    def __init__(self, *, idle_fraction: float = 0.5, vcpus: int = 4,
                 interrupt_rate: float = 500.0, threads_per_core: int = 4,
                 duration_us: float = 10_000.0, idle_us: float = 1000.0, seed: int = 0,
                 dpi: float = 80) -> None:
        if not _is_int(threads_per_core) or threads_per_core not in (1, 2, 4):
            raise ValueError(f"threads_per_core: got {show(threads_per_core)}; allowed: the "
                             f"integer 1, 2 or 4")
        vcpus = _check_int("vcpus", vcpus, 1, threads_per_core)
        idle_fraction = _check_real("idle_fraction", idle_fraction, 0.0, 1.0)
        rate = _check_real("interrupt_rate", interrupt_rate, 0, DASHBOARD_MAX_INTERRUPT_RATE)
        if rate != int(rate):
            raise ValueError(f"interrupt_rate: got {show(interrupt_rate)}; allowed: a whole "
                             f"number from 0 to {DASHBOARD_MAX_INTERRUPT_RATE:,} (the "
                             f"slider moves in whole interrupts per second)")
        check_time_us("duration_us", duration_us, maximum=DASHBOARD_MAX_DURATION_US)
        check_time_us("idle_us", idle_us)
        seed = _check_int("seed", seed, 0, 2**31 - 1)
        dpi = _check_dpi(dpi)
        # The busiest position any slider can reach must be a workload that can be built
        # (every vcpu idle and nearly always so, the most interrupts): checked now, so
        # that no slider position ever fails later.
        _check_random(Config(), duration_us, idle_fraction=1 - 1e-9, idle_us=idle_us,
                      interrupt_rate=DASHBOARD_MAX_INTERRUPT_RATE, idle_vcpus=None,
                      seed=seed)
        self.duration_us = float(duration_us)
        self.idle_us = float(idle_us)
        style = {"description_width": "150px"}
        wide = W.Layout(width="460px")
        self.idle_fraction = W.FloatSlider(value=idle_fraction, min=0.0, max=1.0, step=0.05,
                                           description="idle fraction", readout_format=".0%",
                                           continuous_update=False, style=style, layout=wide)
        self.vcpus = W.IntSlider(value=vcpus, min=1, max=threads_per_core,
                                 description="vcpus", continuous_update=False, style=style,
                                 layout=wide)
        self.interrupt_rate = W.IntSlider(value=int(rate), min=0,
                                          max=DASHBOARD_MAX_INTERRUPT_RATE,
                                          step=250, description="interrupts/s per vcpu",
                                          continuous_update=False, style=style, layout=wide)
        self.smt = W.ToggleButtons(options=[("SMT1", 1), ("SMT2", 2), ("SMT4", 4)],
                                   value=threads_per_core, description="SMT mode",
                                   style={**style, "button_width": "60px"})
        self.seed = W.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed",
                                     style=style, layout=W.Layout(width="260px"))
        self.status = W.HTML()
        self.image = W.Image(format="png", layout=W.Layout(**_IMAGE_LAYOUT))
        super().__init__([W.HBox([W.VBox([self.idle_fraction, self.vcpus,
                                          self.interrupt_rate]),
                                  W.VBox([self.smt, self.seed])]),
                          self.status, self.image])
        # The live JupyterLab test (tests/browser/test_live_lab.py) finds it by this class.
        self.add_class("kvmcede-dashboard")
        fig = Figure(figsize=(11.0, 6.4), dpi=dpi)
        self._artists = plots.ComparisonArtists(fig, "", animated=True)
        self._blit = _Blit(fig, self._artists.dynamic)
        self._holding = False
        self.smt.observe(self._on_smt, names="value")
        for w in (self.idle_fraction, self.vcpus, self.interrupt_rate, self.seed):
            w.observe(self._on_change, names="value")
        self.update()

    def _on_smt(self, change: dict) -> None:
        # Link the controls: a core of N threads runs at most N vcpus.
        self._holding = True
        try:
            self.vcpus.max = change["new"]  # clamps vcpus.value
        finally:
            self._holding = False
        self.update()

    def _on_change(self, _change: dict) -> None:
        if not self._holding:
            self.update()

    def settings(self) -> dict[str, Any]:
        """The current slider positions."""
        return {"threads_per_core": self.smt.value, "vcpus": self.vcpus.value,
                "idle_fraction": round(float(self.idle_fraction.value), 4),
                "interrupt_rate": float(self.interrupt_rate.value),
                "seed": int(self.seed.value)}

    def update(self) -> None:
        """Re-simulate (or reuse a cached run) and redraw for the current settings."""
        st = self.settings()
        t0 = time.perf_counter()
        try:
            if st["vcpus"] > st["threads_per_core"]:
                raise ValueError(f"vcpus ({st['vcpus']}) cannot exceed the threads of an "
                                 f"SMT{st['threads_per_core']} core")
            mh, mr = _simulate_pair(st["threads_per_core"], st["vcpus"],
                                    st["idle_fraction"], st["interrupt_rate"],
                                    self.duration_us, self.idle_us, st["seed"])
        except ValueError as exc:
            self.status.value = (f"<span style='color:#AA3300'>⚠ cannot simulate this "
                                 f"setting: {html.escape(str(exc))}</span>")
            self.image.value = _message_png(f"No figure: {exc}")
            return
        title = (f"SMT{st['threads_per_core']}, {st['vcpus']} vcpu"
                 f"{'s' if st['vcpus'] > 1 else ''}, idle {st['idle_fraction']:.0%}, "
                 f"{st['interrupt_rate']:,.0f} interrupts/s per vcpu — "
                 f"{self.duration_us / 1000:g} ms of machine time per policy")
        self._artists.update(mh, mr, title=title)
        self.image.value = self._blit.png()
        self.metrics = (mh, mr)
        dt = time.perf_counter() - t0
        self.status.value = (f"whole-core exits {mh.whole_core_exits} → "
                             f"{mr.whole_core_exits}; guest time lost "
                             f"{mh.lost_guest_us:,.0f} → {mr.lost_guest_us:,.0f} µs "
                             f"<span style='color:#888'>({dt * 1000:.0f} ms)</span>")


# =============================================================================================
# Timeline with a movable window
# =============================================================================================

class TimelineWidget(W.VBox):
    """A timeline (:func:`kvmcede.plots.timeline`) of a long trace with a slider choosing
    the window: its start and its width.  Narrow windows show every span and marker;
    wide ones are aggregated."""

    def __init__(self, trace: Trace, *, width_us: float | None = None, vcpus: bool = False,
                 dpi: float = 80) -> None:
        self.trace = _check_trace(trace)
        self._end = max(plots.timeline_end(trace), 1.0)
        unit = "steps" if trace.source == "explore" else "µs"
        if width_us is None:
            width_us = min(self._end, 50.0 if unit == "µs" else self._end)
        width_us = _check_real("width_us", width_us, 0.0, self._end)
        if width_us == 0:
            raise ValueError(f"width_us: got {show(width_us)}; allowed: a number > 0 and <= "
                             f"the trace's length ({self._end:g} {unit})")
        if not isinstance(vcpus, bool):
            raise ValueError(f"vcpus: got {show(vcpus)}; allowed: True or False")
        dpi = _check_dpi(dpi)
        widths = sorted({w for w in (5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000,
                                     10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
                                     1_000_000) if w < self._end} | {self._end,
                                                                     min(width_us, self._end)})
        self.width = W.SelectionSlider(options=[(f"{w:g} {unit}", w) for w in widths],
                                       value=min(width_us, self._end),
                                       description="window", continuous_update=False,
                                       layout=W.Layout(width="420px"))
        self.start = W.FloatSlider(value=0.0, min=0.0, max=max(0.0, self._end - self.width.value),
                                   step=max(self._end / 1000, 0.001), description="start",
                                   readout_format=",.1f", continuous_update=False,
                                   layout=W.Layout(width="70%"))
        self.image = W.Image(format="png", layout=W.Layout(**_IMAGE_LAYOUT))
        self.legend_image = W.Image(
            value=plots.to_png(plots.timeline_legend(trace, vcpus=vcpus, fig=Figure(dpi=dpi))),
            format="png", layout=W.Layout(**_IMAGE_LAYOUT))
        super().__init__([W.HBox([self.width, self.start]), self.image, self.legend_image])
        self._pane = _TimelinePane(trace, vcpus=vcpus, dpi=dpi, title=False)
        self._ax = self._pane.ax
        self.width.observe(self._on_width, names="value")
        self.start.observe(lambda _c: self.redraw(), names="value")
        self.redraw()

    def _on_width(self, change: dict) -> None:
        w = change["new"]
        hi = max(0.0, self._end - w)
        if self.start.value > hi:
            self.start.value = hi  # redraws
        self.start.max = hi
        self.redraw()

    def window(self) -> tuple[float, float]:
        """The window shown, in the timeline's x units."""
        a = float(self.start.value)
        return a, a + float(self.width.value)

    def redraw(self) -> None:
        """Draw the current window into the image."""
        self._pane.set_window(*self.window())
        self.image.value = self._pane.png()


# =============================================================================================
# Explorer app
# =============================================================================================

class ExplorerApp(W.VBox):
    """Run the interleaving explorer (:func:`kvmcede.explore`) on the protocol or
    on one of its ablations and shipped bugs; show the verdict, how many states were
    explored and, for a violation, the shortest counterexample in a :class:`StepPlayer`.

    The variant's own configuration, workload and environment budget come from
    ``kvmcede.explorer.setup(name)``; the vcpu count and memory mode can be changed (with
    another vcpu count the explorer's default workload for that configuration is used),
    and the partial-order reduction switched on (``explore(..., reduction=True)``).

    A run stops at ``max_states`` (at most the explorer's
    :data:`~kvmcede.explorer.MAX_STATES_LIMIT`, 5,000,000 states, about 4 GB) or after
    ``max_seconds`` (default 120 s, at most :data:`~kvmcede.explorer.MAX_SECONDS_LIMIT`);
    the reader can lower either, never raise them past those bounds.
    """

    #: The bounds the app offers when the explorer module cannot be imported.
    _MAX_STATES, _MAX_SECONDS = 5_000_000, 3600.0

    def __init__(self, name: str = "protocol", *, max_states: int = 1_000_000,
                 max_seconds: float = 120.0) -> None:
        names = ["protocol", *sorted(ABLATIONS), *sorted(BUGS)]
        if name not in names:
            raise ValueError(f"name must be one of {names}, got {name!r}")
        try:
            ex = self._explore_module()
            top_states, top_seconds = ex.MAX_STATES_LIMIT, ex.MAX_SECONDS_LIMIT
        except RuntimeError:  # (the app says so below)
            top_states, top_seconds = self._MAX_STATES, self._MAX_SECONDS
        if (not isinstance(max_states, int) or isinstance(max_states, bool)
                or not 100 <= max_states <= top_states):
            raise ValueError(f"max_states must be an integer from 100 to {top_states:,}, "
                             f"got {max_states!r}")
        if (not isinstance(max_seconds, int | float) or isinstance(max_seconds, bool)
                or not 1 <= max_seconds <= top_seconds):
            raise ValueError(f"max_seconds must be a number of seconds from 1 to "
                             f"{top_seconds:g}, got {max_seconds!r}")
        labels = {"protocol": "the protocol (Linux 3.4 as shipped)",
                  **{a: f"ablation: {a}" for a in ABLATIONS},
                  **{b: f"bug: {b}" for b in BUGS}}
        self.variant = W.Dropdown(options=[(labels[n], n) for n in names], value=name,
                                  description="variant", layout=W.Layout(width="420px"))
        self.vcpus = W.IntSlider(value=2, min=1, max=4, description="vcpus",
                                 continuous_update=False)
        self.memory = W.ToggleButtons(options=[("sequentially consistent", "sc"),
                                               ("store buffers", "store_buffer")],
                                      value="sc", description="memory")
        self.max_states = W.BoundedIntText(value=max_states, min=100, max=top_states,
                                           step=10_000, description="max states")
        self.max_seconds = W.BoundedFloatText(value=float(max_seconds), min=1.0,
                                              max=float(top_seconds), step=10.0,
                                              description="max seconds")
        self.reduce = W.Checkbox(value=False, indent=False,
                                 description="partial-order reduction (fewer states, for "
                                             "3 or 4 vcpus; a counterexample may be a step "
                                             "or two longer)",
                                 layout=W.Layout(width="auto"))
        self.run_button = W.Button(description="Run the explorer", button_style="primary",
                                   icon="play")
        self.description = W.HTML()
        self.progress = W.HTML()
        self.verdict = W.HTML()
        self.player_box = W.VBox()
        super().__init__([W.HBox([self.variant, self.vcpus]),
                          W.HBox([self.memory, self.max_states, self.max_seconds,
                                  self.run_button]),
                          self.reduce, self.description, self.progress, self.verdict, self.player_box])
        self.result: Any = None
        self.player: StepPlayer | None = None
        self._results: dict[tuple, Any] = {}
        self.variant.observe(self._on_variant, names="value")
        self.run_button.on_click(lambda _b: self.run())
        self._on_variant({"new": name})

    @staticmethod
    def _explore_module():
        try:
            from . import explorer
        except ImportError as exc:  # the explorer lives in its own module
            raise RuntimeError(f"the explorer (kvmcede.explorer) is not available: {exc}")\
                from exc
        return explorer

    def _on_variant(self, change: dict) -> None:
        name = change["new"]
        text = {"protocol": "The protocol of Linux 3.4 as shipped, on a program without "
                            "prods (its two shipped bugs need one): every property should "
                            "hold.",
                **ABLATIONS, **{b: d for b, (_fix, d) in BUGS.items()}}[name]
        self.description.value = f"<i>{html.escape(text)}</i>"
        try:
            cfg, _wl, _kw = self._explore_module().setup(name)
        except (RuntimeError, ValueError) as exc:
            self.verdict.value = f"<span style='color:#AA3300'>⚠ {html.escape(str(exc))}</span>"
            return
        self.vcpus.value = cfg.vcpus
        self.memory.value = cfg.memory

    def configuration(self) -> tuple[Config, Any, dict]:
        """The configuration, workload and explorer arguments the next run will use."""
        ex = self._explore_module()
        cfg, wl, kw = ex.setup(self.variant.value)
        n = self.vcpus.value
        changes: dict[str, Any] = {"memory": self.memory.value}
        if n != cfg.vcpus:
            changes["vcpus"] = n
            changes["threads_per_core"] = max(cfg.threads_per_core, 1 if n == 1 else
                                              2 if n == 2 else 4)
            wl = None
        return cfg.replace(**changes), wl, dict(kw)

    def run(self) -> Any:
        """Run the explorer for the current choices (cached) and show the result."""
        self.verdict.value = ""
        try:
            ex = self._explore_module()
            cfg, wl, kw = self.configuration()
        except (RuntimeError, ValueError) as exc:
            self.verdict.value = f"<span style='color:#AA3300'>⚠ {html.escape(str(exc))}</span>"
            return None
        key = (self.variant.value, cfg.vcpus, cfg.threads_per_core, cfg.memory,
               self.max_states.value, self.max_seconds.value, self.reduce.value)
        result = self._results.get(key)
        if result is None:
            self.run_button.disabled = True
            self.progress.value = "exploring…"
            kw.update(max_states=self.max_states.value,
                      max_seconds=float(self.max_seconds.value),
                      progress=self._on_progress, reduction=self.reduce.value)
            kw.setdefault("stop_at_first", True)  # the shortest counterexample, sooner
            try:
                result = ex.explore(cfg, wl, **kw)
            except ValueError as exc:
                self.verdict.value = (f"<span style='color:#AA3300'>⚠ "
                                      f"{html.escape(str(exc))}</span>")
                return None
            finally:
                self.run_button.disabled = False
            if result.stopped != "interrupted":  # (an interrupted run may be retried)
                self._results[key] = result
        self.result = result
        self._show(result)
        return result

    def _on_progress(self, states: int, queue: int, transitions: int) -> None:
        """The explorer's progress callback (called a few times a second)."""
        self.progress.value = (f"exploring… {states:,} states, {transitions:,} transitions, "
                               f"{queue:,} states queued")

    def _show(self, r: Any) -> None:
        stats = (f"{r.states:,} states, {r.transitions:,} transitions in "
                 f"{r.seconds:.1f} s")
        self.progress.value = stats
        v = r.violation
        if v is None:
            if r.finished:
                self.verdict.value = ("<b style='color:#117733;font-size:1.15em'>✓ every "
                                      f"property holds</b> in all {r.states:,} reachable "
                                      "states")
            else:
                why = html.escape(r.stop_reason() if hasattr(r, "stop_reason")
                                  else "state limit reached")
                self.verdict.value = ("<b style='color:#997700;font-size:1.15em'>no "
                                      f"violation in the first {r.states:,} states</b> "
                                      f"({why}: not a proof)")
            self.player = None
            self.player_box.children = ()
            return
        self.verdict.value = (f"<b style='color:#AA2222;font-size:1.15em'>✗ {v.kind} "
                              f"<code>{html.escape(v.name)}</code> violated</b><br>"
                              f"{html.escape(v.message)}<br>shortest counterexample: "
                              f"{v.depth} steps — step through it below")
        self.player = StepPlayer(v.trace, start=len(v.trace.steps))
        self.player_box.children = (self.player,)


# =============================================================================================
# The three walk-throughs: nap save/restore (ch03), the exit race (ch06), re-entry (ch05)
# =============================================================================================

class _FigureApp(W.VBox):
    """Controls over one figure of :mod:`kvmcede.plots`: every change redraws it with
    the same call the book makes for its static figure; what the figure says in words
    goes to ``status``.  A setting the model rejects is shown as a message."""

    def __init__(self, controls: list[Any], dpi: float) -> None:
        self.dpi = _check_dpi(dpi)
        self.status = W.HTML()
        self.image = W.Image(format="png", layout=W.Layout(**_IMAGE_LAYOUT))
        super().__init__([W.HBox(controls, layout=W.Layout(flex_flow="row wrap")),
                          self.status, self.image])
        for c in controls:
            c.observe(lambda _c: self.update(), names="value")

    def _figure(self, fig: Figure) -> str:  # draws into fig, returns the status line
        raise NotImplementedError

    def update(self) -> None:
        """Redraw for the current settings."""
        try:
            fig = Figure(dpi=self.dpi)
            status = self._figure(fig)
        except ValueError as exc:
            self.status.value = (f"<span style='color:#AA3300'>⚠ cannot draw this setting: "
                                 f"{html.escape(str(exc))}</span>")
            self.image.value = _message_png(f"No figure: {exc}")
            return
        self.image.value = plots.to_png(fig)
        self.status.value = status


def _checkbox(value: bool, description: str) -> W.Checkbox:
    if not isinstance(value, bool):
        raise ValueError(f"{description}: got {show(value)}; allowed: True or False")
    return W.Checkbox(value=value, description=description, indent=False,
                      layout=W.Layout(width="auto", margin="0 18px 0 0"))


class NapSaveRestore(_FigureApp):
    """Chapter 3's registers across one nap (:func:`kvmcede.plots.nap_save_restore`),
    with the save switched on or off (ablation ``no_nv_save``) and the burst before the
    cede kept or dropped.  The step player can show a counterexample but not the two
    runs side by side; here one click removes the save and shows the corruption, a
    second shows when it goes unnoticed."""

    def __init__(self, *, save: bool = True, compute_before_cede: bool = True,
                 dpi: float = 80) -> None:
        self.save = _checkbox(save, "kvmppc_h_cede saves r14–r31 and FPRs")
        self.compute = _checkbox(compute_before_cede, "vcpu 1 computes before it cedes")
        super().__init__([self.save, self.compute], dpi)
        self.update()

    def _figure(self, fig: Figure) -> str:
        plots.nap_save_restore(save=self.save.value,
                               compute_before_cede=self.compute.value, fig=fig)
        bad = any(s.startswith("✗") for s in plots.figure_strings(fig))
        if bad:
            return ("<b style='color:#AA0000'>✗ the guest resumes with stale registers"
                    "</b> (ablation <code>no_nv_save</code>)")
        luck = "" if self.save.value else " — by luck: nothing was written since the last save"
        return f"<b style='color:#117733'>✓ the guest finds the registers it wrote</b>{luck}"


class ExitRaceWindow(_FigureApp):
    """Chapter 6's race between a cede and an exit (:func:`kvmcede.plots.exit_race_window`):
    a slider moves B's exit against C's cede across the window, half a real-mode step at
    a time, and the ablations ``no_ipi_on_exit`` and ``no_exit_recheck`` remove either
    half of the pair.  ``outcome`` is the key of the outcome shown
    (:data:`kvmcede.plots.RACE_OUTCOMES`)."""

    def __init__(self, offset_us: float = 0.15, *, no_ipi_on_exit: bool = False,
                 no_exit_recheck: bool = False, dpi: float = 80) -> None:
        offs = plots.RACE_OFFSETS_US
        offset_us = _check_real("offset_us", offset_us, offs[0], offs[-1])
        self.offset = W.FloatSlider(value=offset_us, min=offs[0], max=offs[-1], step=0.05,
                                    description="B's exit − C's cede (µs)",
                                    readout_format="+.2f", continuous_update=False,
                                    style={"description_width": "170px"},
                                    layout=W.Layout(width="520px"))
        self.ipi = _checkbox(not no_ipi_on_exit, "IPI to nappers on exit")
        self.recheck = _checkbox(not no_exit_recheck, "re-check of the exit count")
        self.outcome = ""
        super().__init__([self.offset, self.ipi, self.recheck], dpi)
        self.update()

    def _figure(self, fig: Figure) -> str:
        kw = {"no_ipi_on_exit": not self.ipi.value,
              "no_exit_recheck": not self.recheck.value}
        plots.exit_race_window(self.offset.value, fig=fig, **kw)
        r = plots.exit_race(self.offset.value, [a for a, on in kw.items() if on])
        self.outcome = r.outcome
        colour = "#AA0000" if r.outcome == "lost" else "#117733"
        took = ("the core never leaves the guest" if r.exit_us is None
                else f"whole-core exit {r.exit_us:.1f} µs")
        return (f"<b style='color:{colour}'>{html.escape(r.label)}</b> · {took}")


class ReentryDelivery(_FigureApp):
    """Chapter 5's ``kvmppc_cede_reentry`` (:func:`kvmcede.plots.reentry_delivery`):
    choose what is pending when a woken vcpu re-enters (DEC expired, an external
    interrupt, MSR[EE], an interrupt the host already injected) and see what the real
    step function synthesizes, whether it sets LPCR_MER, which of its lines ran, and the
    order in which the guest then takes its interrupts.  ``result`` is the
    :class:`kvmcede.plots.Reentry` shown."""

    def __init__(self, *, dec_expired: bool = True, external: bool = False,
                 msr_ee: bool = True, injected: bool = False, dpi: float = 80) -> None:
        self.dec = _checkbox(dec_expired, "DEC expired")
        self.external = _checkbox(external, "external pending")
        self.msr_ee = _checkbox(msr_ee, "MSR[EE]")
        self.injected = _checkbox(injected, "already injected (0x900, by the host)")
        self.result: plots.Reentry | None = None
        super().__init__([self.dec, self.external, self.msr_ee, self.injected], dpi)
        self.update()

    def _figure(self, fig: Figure) -> str:
        kw = {"dec_expired": self.dec.value, "external": self.external.value,
              "msr_ee": self.msr_ee.value, "injected": self.injected.value}
        plots.reentry_delivery(fig=fig, **kw)
        r = self.result = plots.reentry(**kw)
        synth = f"synthesizes {r.vector:#x}" if r.vector else "synthesizes nothing"
        order = " → ".join(f"{v:#x}" for v, _how in r.order) or "no interrupt"
        mer = "LPCR_MER set" if r.mer else "LPCR_MER clear"
        return f"<b>{synth}</b> · {mer} · the guest takes: {order}"
