"""The comparison of the two policies (chapter 2): :class:`ComparisonArtists`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .render import (
    _new_figure,
)
from .style import (
    _NAP_HATCH,
    ACTIVITY_COLOURS,
    GUEST_COLOUR,
    IPI_COLOURS,
    POLICY_COLOURS,
    VECTOR_COLOURS,
    _span_edge,
)

if TYPE_CHECKING:
    from ..trace import Metrics, Trace

# =============================================================================================
# Comparison of the two policies
# =============================================================================================

#: Whole-core exit reasons, grouped so that every comparison has the same legend.
EXIT_GROUPS: tuple[tuple[str, str, str], ...] = (
    ("H_CEDE", "H_CEDE (whole core to the host)", "#882255"),
    ("kick", "host kick: interrupt, DEC, prod", "#6699CC"),
    ("HDEC", "HDEC: host timer tick", "#EECC66"),
    ("hcall", "H_PROD / H_CONFER / MMIO", "#999933"),
    ("other", "other", "#C8C8C8"),
)


def exit_group(reason: str) -> str:
    """The :data:`EXIT_GROUPS` key of a whole-core exit reason (``Metrics``' words)."""
    if reason == "H_CEDE":
        return "H_CEDE"
    if reason.startswith("external"):
        return "kick"
    if reason == "HDEC":
        return "HDEC"
    if reason in ("H_PROD", "H_CONFER", "MMIO") or reason.startswith("hcall"):
        return "hcall"
    return "other"


_SPLIT = (("guest", "running guest code"), ("nap", "napping in the guest (H_CEDE)"),
          ("ceded", "ceded in the host"), ("out", "out of the guest with work"),
          ("userspace", "in the host for its own exit"), ("stopped", "not started yet"))
_POLICIES = ("host", "realmode")


class ComparisonArtists:
    """The comparison figure as a fixed frame plus artists that :meth:`update` moves.

    :func:`comparison` draws it once; the comparison dashboard keeps one and updates it
    for every slider position (``animated=True``: the frame is drawn once and only the
    bars and numbers are redrawn).  Bars are scaled per panel to the larger of the two
    policies, and every bar carries its value; each panel's y axis is in the unit of
    what it counts (count or µs) and its ticks move with the scale (``ax.yaxis`` is one
    of the :attr:`dynamic` artists)."""

    def __init__(self, fig: Figure, title: str | None = None, *, animated: bool = False):
        self.fig = fig
        self.dynamic: list[Any] = []
        top = 0.89 if title is not None else 0.95
        gs = fig.add_gridspec(1, 4, left=0.06, right=0.99, top=top, bottom=0.55,
                              wspace=0.42)
        self.bar_axes: list[Any] = []
        xs = np.arange(2)
        self.xs = xs
        w = self.w = 0.36
        names = ["before\n(host)", "19ccb76a\n(realmode)"]

        def panel(k: int, ttl: str, ylabel: str):
            ax = fig.add_subplot(gs[0, k])
            ax.set_title(ttl, fontsize=10, loc="left")
            ax.set_xticks(xs, names, fontsize=9)
            ax.set_xlim(-0.6, 1.6)
            ax.set_ylim(0, 1.32)
            ax.set_ylabel(ylabel, fontsize=9.5, labelpad=2)
            ax.tick_params(axis="y", labelsize=8.5, length=3, pad=2)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
            self.bar_axes.append(ax)
            self.dynamic.append(ax.yaxis)  # its ticks follow the panel's scale
            return ax

        def bars(ax, x, colour, **kw):
            bs = list(ax.bar(x, np.zeros(len(x)), kw.pop("width", 0.6), color=colour, **kw))
            self.dynamic.extend(bs)
            return bs

        def label(ax, x, fontsize=8.5):
            t = ax.text(x, 0, "", ha="center", va="bottom", fontsize=fontsize)
            self.dynamic.append(t)
            return t

        def legend_below(ax, handles):
            ax.legend(handles=handles, fontsize=8.5, frameon=False, loc="upper left",
                      bbox_to_anchor=(-0.32, -0.27), handlelength=1.0, borderaxespad=0,
                      labelspacing=0.3)

        # 1. whole-core exits by reason group (stacked)
        ax = panel(0, "whole-core exits", "exits (count)")
        self.exit_bars = {g: bars(ax, xs, c, edgecolor="white", linewidth=0.5)
                          for g, _, c in EXIT_GROUPS}
        self.exit_labels = [label(ax, x) for x in xs]
        legend_below(ax, [Patch(facecolor=c, label=lab) for _, lab, c in EXIT_GROUPS[:4]])
        # 2. IPIs
        ax = panel(1, "IPIs", "IPIs (count)")
        self.ipi_bars = (bars(ax, xs - w / 2, IPI_COLOURS["exit"], width=w),
                         bars(ax, xs + w / 2, "white", width=w, edgecolor="black",
                              linewidth=0.8, hatch="////"))
        self.ipi_labels = ([label(ax, x - w / 2) for x in xs],
                           [label(ax, x + w / 2) for x in xs])
        legend_below(ax, [Patch(facecolor=IPI_COLOURS["exit"], label="to nappers (exit path)"),
                          Patch(facecolor="white", edgecolor="black", hatch="////",
                                label="host kicks (to thread 0)")])
        # 3. lost guest time
        ax = panel(2, "guest time lost to other\nvcpus' idleness", "guest time lost (µs)")
        self.lost_bars = bars(ax, xs, [POLICY_COLOURS[p] for p in _POLICIES])
        self.lost_labels = [label(ax, x) for x in xs]
        ax.text(-0.32, -0.27, "time vcpus with work spent out\nof the guest because another\n"
                "vcpu idled (µs, all vcpus)", transform=ax.transAxes, fontsize=8.5,
                va="top", color="#444444")
        # 4. latency
        ax = panel(3, "interrupt delivery latency", "latency (µs)")
        self.lat_bars = tuple(bars(ax, xs + (j - 0.5) * w, VECTOR_COLOURS[vec], width=w)
                              for j, vec in enumerate((0x500, 0x900)))
        self.lat_labels = tuple([label(ax, x + (j - 0.5) * w, 8) for x in xs]
                                for j in range(2))
        self.lat_max = ax.plot([], [], ls="", marker="_", ms=10, mew=1.6, color="black")[0]
        self.dynamic.append(self.lat_max)
        legend_below(ax, [Patch(facecolor=VECTOR_COLOURS[0x500], label="external: mean µs"),
                          Patch(facecolor=VECTOR_COLOURS[0x900],
                                label="decrementer: mean µs"),
                          Line2D([], [], ls="", marker="_", ms=9, mew=1.6, color="black",
                                 label="max")])
        # 5. time split
        gs2 = fig.add_gridspec(1, 1, left=0.15, right=0.99, top=0.26, bottom=0.135)
        ax = fig.add_subplot(gs2[0, 0])
        self.split_ax = ax
        colours = {"guest": GUEST_COLOUR, **{a: ACTIVITY_COLOURS[a] for a, _ in _SPLIT[1:]}}
        self.split_bars = {}
        self.split_labels = {}
        for act, _ in _SPLIT:
            bs = list(ax.barh([0, 1], [0, 0], 0.62, color=colours[act],
                              hatch=_NAP_HATCH if act == "nap" else None,
                              edgecolor=_span_edge((act, 0)), linewidth=0.5))
            self.dynamic.extend(bs)
            self.split_bars[act] = bs
            ts = [ax.text(0, y, "", ha="center", va="center", fontsize=9,
                          color="white" if act == "guest" else "black")
                  for y in (0, 1)]
            self.dynamic.extend(ts)
            self.split_labels[act] = ts
        ax.set_yticks([0, 1], ["before (host)", "19ccb76a (realmode)"], fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(1.5, -0.5)
        ax.xaxis.set_major_formatter(_percent())
        ax.tick_params(axis="x", labelsize=8.5)
        ax.set_xlabel("share of the vcpus' time (%)", fontsize=9.5, labelpad=1)
        ax.set_title("how the vcpus spent their time", fontsize=10, loc="left")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.legend(handles=[Patch(facecolor=colours[a], hatch=_NAP_HATCH if a == "nap"
                                 else None, edgecolor=_span_edge((a, 0)),
                                 label=lab) for a, lab in _SPLIT],
                  fontsize=8.5, frameon=False, ncol=3, loc="upper center",
                  bbox_to_anchor=(0.42, -0.42), columnspacing=1.5, labelspacing=0.3)
        self.title = fig.text(0.01, 0.985, title or "", fontsize=11, ha="left", va="top")
        self.dynamic.append(self.title)
        for a in self.dynamic:
            a.set_animated(animated)

    def _y_ticks(self, scales: list[float]) -> None:
        """Put each bar panel's y ticks at round values of its unit (the bars are drawn
        as fractions of ``scales[k]``, the larger policy's value)."""
        for k, (ax, scale) in enumerate(zip(self.bar_axes, scales, strict=True)):
            pos, labels = _nice_ticks(scale, counts=k < 2)
            ax.set_yticks(pos, labels)

    def update(self, metrics_host: Metrics | Trace, metrics_realmode: Metrics | Trace,
               title: str | None = None) -> None:
        """Show these metrics (``title`` replaces the title if given)."""
        mh = getattr(metrics_host, "metrics", metrics_host)
        mr = getattr(metrics_realmode, "metrics", metrics_realmode)
        ms = (mh, mr)
        xs, w = self.xs, self.w
        if title is not None:
            self.title.set_text(title)

        def put(t, x, h, text):
            t.set_position((x, h + 0.03))
            t.set_text(text)

        # exits
        groups = []
        for m in ms:
            g = dict.fromkeys((k for k, _, _ in EXIT_GROUPS), 0)
            for r, n in m.exits_by_reason.items():
                g[exit_group(r)] += n
            groups.append(g)
        totals = [m.whole_core_exits for m in ms]
        scale = max(max(totals), 1)
        scales = [scale]
        for p in range(2):
            bottom = 0.0
            for key, _, _ in EXIT_GROUPS:
                h = groups[p][key] / scale
                r = self.exit_bars[key][p]
                r.set_y(bottom)
                r.set_height(h)
                bottom += h
            put(self.exit_labels[p], xs[p], bottom, f"{totals[p]:,}")
        # IPIs
        vals = ([m.ipis_to_nappers for m in ms], [m.host_ipis for m in ms])
        scale = max(max(vals[0]), max(vals[1]), 1)
        scales.append(scale)
        for j, off in ((0, -w / 2), (1, w / 2)):
            for p in range(2):
                h = vals[j][p] / scale
                self.ipi_bars[j][p].set_height(h)
                put(self.ipi_labels[j][p], xs[p] + off, h, f"{vals[j][p]:,}")
        # lost guest time
        lost = [m.lost_guest_us for m in ms]
        scale = max(max(lost), 1e-9)
        scales.append(scale if max(lost) > 0 else 1.0)
        for p in range(2):
            h = lost[p] / scale if max(lost) > 0 else 0.0
            self.lost_bars[p].set_height(h)
            put(self.lost_labels[p], xs[p], h, f"{lost[p]:,.0f}")
        # latency
        kinds = ("external", "decrementer")
        lat = [[m.latency.get(k, {}) for m in ms] for k in kinds]
        scale = max([1e-9, *(d.get("max", 0.0) for row in lat for d in row)])
        scales.append(scale if scale > 1e-9 else 1.0)
        mx, my = [], []
        for j in range(2):
            for p in range(2):
                d = lat[j][p]
                x = xs[p] + (j - 0.5) * w
                if not d.get("count"):
                    self.lat_bars[j][p].set_height(0)
                    put(self.lat_labels[j][p], x, 0, "—")
                    continue
                h = d["mean"] / scale
                top = d["max"] / scale
                self.lat_bars[j][p].set_height(h)
                # the mean above its bar, or above the max mark when they are close
                put(self.lat_labels[j][p], x, h if top - h > 0.14 else top + 0.03,
                    f"{d['mean']:.0f}")
                mx.append(x)
                my.append(d["max"] / scale)
        self.lat_max.set_data(mx, my)
        self._y_ticks(scales)
        # time split
        for p, m in enumerate(ms):
            tot = {a: sum(d.get(a, 0.0) for d in m.time_split.values()) for a, _ in _SPLIT}
            whole = sum(tot.values()) or 1.0
            left = 0.0
            for act, _ in _SPLIT:
                f = tot[act] / whole
                r = self.split_bars[act][p]
                r.set_x(left)
                r.set_width(f)
                t = self.split_labels[act][p]
                t.set_position((left + f / 2, p))
                t.set_text(f"{f:.0%}" if f > 0.05 else "")
                left += f


def _nice_ticks(scale: float, counts: bool) -> tuple[list[float], list[str]]:
    """Ticks (as fractions of ``scale``, the panel's full bar) and their labels, in the
    panel's unit: at most five round values from 0 to the top of the panel."""
    from matplotlib.ticker import MaxNLocator

    top = 1.3 * scale
    vals = [v for v in MaxNLocator(nbins=4, integer=counts, min_n_ticks=2).tick_values(0, top)
            if 0 <= v <= top]
    return [v / scale for v in vals], [f"{v:,.0f}" if counts or v >= 10 else f"{v:g}"
                                       for v in vals]


def comparison(metrics_host: Metrics | Trace, metrics_realmode: Metrics | Trace,
               title: str | None = None, *, fig: Figure | None = None) -> Figure:
    """Policy "host" (before 19ccb76a) next to policy "realmode" (the commit): whole-core
    exits by reason, IPIs, guest time lost to other vcpus' idleness, interrupt delivery
    latency, and how the vcpus spent their time.  Accepts Metrics or Traces."""
    if fig is None:
        fig = _new_figure((11.0, 6.4))
    ComparisonArtists(fig, title).update(metrics_host, metrics_realmode)
    return fig


def _percent():
    from matplotlib.ticker import PercentFormatter
    return PercentFormatter(1.0)
