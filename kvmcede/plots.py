"""Pictures of the model: timelines, state views, registers across nap, comparisons.

Every function here takes model objects (a :class:`~kvmcede.trace.Trace`, a
:class:`~kvmcede.state.Machine`, :class:`~kvmcede.trace.Metrics`) and returns a
:class:`matplotlib.figure.Figure`.  The model never imports this module.

How figures are displayed (the convention chapters rely on)
-----------------------------------------------------------
* A function that creates its own figure (no ``ax=`` / ``fig=`` given) makes it through
  ``pyplot`` **only when it runs inside a Jupyter kernel**, so that the inline backend
  shows the figure as a PNG when the cell ends.  A chapter cell is therefore just::

      kvmcede.plots.timeline(trace);

  (the ``;`` keeps Jupyter from also displaying the returned Figure, which would show it
  twice).  The figure is closed by the inline backend after it is shown.
* Everywhere else (scripts, tests, widgets, the CLI) the figure is a plain
  ``matplotlib.figure.Figure`` with no pyplot state: nothing accumulates, nothing needs
  closing.  Save it with ``fig.savefig(path)`` or get PNG bytes with :func:`to_png`.
* Widgets pass their own figures (``fig=`` / ``ax=``) and render them with
  :func:`to_png` into ``ipywidgets.Image``, so a widget never leaks a figure into the
  inline backend's output.
* This module never calls ``matplotlib.use``: PNG rendering goes through the Agg canvas
  explicitly, which works headless and leaves a notebook's backend alone.  :func:`show`
  displays any figure as a PNG from code that is not the last line of a cell.

What is in here: :func:`timeline` (and :func:`timeline_legend`, :func:`step_window`),
:func:`state_view`, :func:`registers_view` with :func:`nap_moments`, :func:`comparison`
(:class:`ComparisonArtists`), :func:`explorer_result`, the one-line explanation of every
step (:data:`STEP_EXPLANATIONS`, :func:`explain_step`), and rendering helpers
(:func:`to_png`, :func:`figure_strings` lists every string a figure shows).

Text-heavy figures are drawn with their labels as glyph outlines (see
:class:`_PathTextRenderer`): since matplotlib 3.11 the Agg backend rasterizes text
glyph by glyph in Python, which would make a state view take a quarter of a second.

Colours are from Paul Tol's colour-blind-safe schemes and are the same in every figure:
a vcpu running guest code always has its vcpu colour, napping is always pale blue with
dots, exiting is always red (see :data:`ACTIVITY_COLOURS`, :data:`VCPU_COLOURS`).
"""

from __future__ import annotations

import bisect
import struct
import sys
import weakref
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.textpath import TextToPath

from .config import _is_int, is_finite, is_number
from .config import show as _v
from .sim import thread_activity, vcpu_activity
from .state import (
    BOOK3S_IRQPRIO_DECREMENTER,
    BOOK3S_IRQPRIO_EXTERNAL,
    BOOK3S_IRQPRIO_EXTERNAL_LEVEL,
    REGS_LOST,
    VCORE_STATE_NAMES,
    VCPU_STATE_NAMES,
    Dec,
    Machine,
    entry_count,
    exit_count,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .config import Config
    from .edit import Step
    from .guest import Workload
    from .trace import Metrics, Trace

__all__ = [
    "ACTIVITY_COLOURS",
    "EXIT_GROUPS",
    "STEP_EXPLANATIONS",
    "VCPU_COLOURS",
    "RACE_OFFSETS_US",
    "RACE_OUTCOMES",
    "ComparisonArtists",
    "ExitRace",
    "NapMoments",
    "Reentry",
    "comparison",
    "exit_group",
    "explain_step",
    "exit_race",
    "exit_race_outcomes",
    "exit_race_window",
    "explorer_result",
    "fast_canvas",
    "figure_strings",
    "nap_moments",
    "nap_save_restore",
    "pending_names",
    "redraw_timeline",
    "reentry",
    "reentry_delivery",
    "registers_view",
    "rgba_to_png",
    "show",
    "state_view",
    "step_position",
    "step_window",
    "timeline",
    "timeline_end",
    "timeline_legend",
    "to_png",
]

# =============================================================================================
# Colours (Paul Tol's "bright" and "high-contrast" schemes: distinguishable with the common
# colour-vision deficiencies; nap additionally carries a dot hatch)
# =============================================================================================

#: Guest code of vcpu 0, 1, 2, 3.
VCPU_COLOURS = ("#4477AA", "#228833", "#AA3377", "#CCBB44")

#: What a hardware thread (or a vcpu, or the host) is doing; "guest" uses VCPU_COLOURS.
#: The idle path is cyan (pale and dotted while napping), leaving the guest is red, the
#: host is grey.
ACTIVITY_COLOURS: dict[str, str] = {
    "nap": "#BBCCEE",  # napping in H_CEDE, still in the guest partition
    "cede": "#66CCEE",  # real-mode kvmppc_h_cede / kvm_end_cede code
    "entry": "#999999",  # kvm_start_guest / kvmppc_hv_entry / kvmppc_cede_reentry
    "exiting": "#EE6677",  # the exit path: hdec_soon .. switch_to_host / secondary_nap
    "offline": "#E4E4E4",  # secondary_nap: the thread is offline in the host
    "host": "#444444",  # thread 0 runs the host kernel (the vcore's runner)
    # vcpu rows
    "ceded": "#D4D4D4",  # ceded and out of the guest (in the host)
    "out": "#EE6677",  # out of the guest although it has work
    "userspace": "#44BB99",  # in the host for its own exit (MMIO emulation, hcall, signal)
    "stopped": "#F4F4F4",  # before its first KVM_RUN
    # host row
    "sleeping": "#AAAAAA",  # the vcore's runner sleeps on vc->wq (kvmppc_vcore_blocked)
}

ACTIVITY_LABELS: dict[str, str] = {
    "nap": "napping (H_CEDE)",
    "cede": "real-mode cede / wake code",
    "entry": "guest entry",
    "exiting": "exiting the guest",
    "offline": "offline, idle in the host (POWER7: secondary_nap)",
    "host": "host kernel (POWER7: thread 0, the runner)",
    "ceded": "vcpu ceded in the host",
    "out": "vcpu out with work",
    "userspace": "vcpu in the host for its own exit",
    "stopped": "vcpu not started",
    "sleeping": "vcore asleep on vc->wq",
}

#: Colours of the two policies in comparisons (Tol high-contrast).
POLICY_COLOURS = {"host": "#DDAA33", "realmode": "#004488"}
#: Interrupt vectors: external (0x500) and decrementer (0x900).
VECTOR_COLOURS = {0x500: "#EE7733", 0x900: "#009988"}
_NAP_HATCH = "...."
_MONO = "DejaVu Sans Mono"


def _span_colour(code: tuple[str, int]) -> str:
    act, v = code
    if act == "guest":
        return VCPU_COLOURS[v % len(VCPU_COLOURS)] if v >= 0 else "#777777"
    return ACTIVITY_COLOURS[act]


def _span_label(code: tuple[str, int]) -> str:
    act, v = code
    if act == "guest":
        return f"guest code: vcpu {v}"
    return ACTIVITY_LABELS[act]


# =============================================================================================
# Figures: creation and output
# =============================================================================================

def _in_kernel() -> bool:
    """True inside a running IPython kernel (Jupyter), where pyplot's inline backend
    displays figures at the end of a cell."""
    ipy = sys.modules.get("IPython")
    if ipy is None:
        return False
    shell = ipy.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _new_figure(figsize: tuple[float, float], dpi: float = 100) -> Figure:
    """A figure following the module's display convention (see the module docstring)."""
    if _in_kernel():
        import matplotlib.pyplot as plt
        return plt.figure(figsize=figsize, dpi=dpi)
    return Figure(figsize=figsize, dpi=dpi)


class _CachedTextToPath(TextToPath):
    """``TextToPath`` that remembers the outline of every (font, string) it has made."""

    _cache: ClassVar[dict[tuple, tuple[Any, Any]]] = {}

    def get_text_path(self, prop, s, ismath=False, **kw):
        key = (hash(prop), s, ismath, tuple(sorted(kw.items())) if kw else ())
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) > 20_000:
                self._cache.clear()
            verts, codes = super().get_text_path(prop, s, ismath=ismath, **kw)
            hit = self._cache[key] = (np.asarray(verts, float).reshape(-1, 2),
                                      np.asarray(codes, np.uint8))
        return hit


_TEXT2PATH = _CachedTextToPath()
_METRICS: dict[tuple, tuple[float, float, float]] = {}


class _PathTextRenderer(RendererAgg):
    """Agg renderer that fills text as cached glyph outlines.

    Since matplotlib 3.11 Agg rasterizes text glyph by glyph from Python, which costs
    milliseconds per label; a widget redrawing a hundred labels would take half a
    second.  Filling cached outlines looks the same at screen resolution (the outlines
    are the same font's) and takes microseconds per label."""

    def __init__(self, width, height, dpi):
        super().__init__(width, height, dpi)
        self._text2path = _TEXT2PATH

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if ismath:
            return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
        return RendererBase.draw_text(self, gc, x, y, s, prop, angle, ismath, mtext)

    def get_text_width_height_descent(self, s, prop, ismath):
        key = (s, hash(prop), ismath, self.dpi)
        hit = _METRICS.get(key)
        if hit is None:
            if len(_METRICS) > 20_000:
                _METRICS.clear()
            hit = _METRICS[key] = super().get_text_width_height_descent(s, prop, ismath)
        return hit


class _FastCanvas(FigureCanvasAgg):
    """An Agg canvas using :class:`_PathTextRenderer` (what widgets render with)."""

    def get_renderer(self):
        w, h = self.get_width_height(physical=True)
        key = w, h, self.figure.dpi
        if self._lastKey != key:
            self.renderer = _PathTextRenderer(w, h, self.figure.dpi)
            self._lastKey = key
        return self.renderer


_FONTS: dict[tuple[str, str], FontProperties] = {}


def _font(family: str | None, weight: str) -> FontProperties:
    key = (family or "DejaVu Sans", weight)
    f = _FONTS.get(key)
    if f is None:
        f = _FONTS[key] = FontProperties(family=key[0], weight=weight)
    return f


def _tenths(fig: Figure, height_units: float):
    """A transform from a layout in tenths of an inch, y growing downwards from the top
    of a figure ``height_units`` tall, to display coordinates."""
    from matplotlib.transforms import Affine2D
    return Affine2D().scale(0.1, -0.1).translate(0, height_units / 10) + fig.dpi_scale_trans


def _add(target: Any, artist: Any) -> None:
    if isinstance(target, tuple):  # (figure, transform): straight onto the figure
        fig, transform = target
        artist.set_transform(transform)
        fig.add_artist(artist)
    else:
        artist.set_transform(target.transData)
        target.add_collection(artist, autolim=False)


def _draw_texts(target: Any, texts: list[tuple[float, float, str, dict]],
                unit_pt: float = 7.2) -> None:
    """Draw many labels as glyph outlines (fast; see :class:`_PathTextRenderer`), one
    compound path per colour, in an axes whose data unit is ``unit_pt`` points in both
    directions with y growing downwards (``target``: such an Axes, or a ``(figure,
    transform)`` pair, see :func:`_tenths`).  Each text is ``(x, y, string, kw)`` with
    ``fontsize``, ``fontweight``, ``family``, ``color``, ``ha`` (left/center/right) and
    ``va`` (center/baseline) in ``kw``.  The strings are kept on the collection
    (``kvmcede_strings``) for :func:`figure_strings`."""
    from matplotlib.collections import PathCollection
    from matplotlib.path import Path

    groups: dict[str, tuple[list, list]] = {}
    strings = []
    for x, y, s, kw in texts:
        strings.append(s)
        if not s.strip():
            continue
        size = kw.get("fontsize", 8)
        prop = _font(kw.get("family"), kw.get("fontweight", "normal"))
        verts, codes = _TEXT2PATH.get_text_path(prop, s)
        if not len(verts):
            continue
        k = size / _TEXT2PATH.FONT_SCALE / unit_pt
        v = verts * (k, -k)
        ha = kw.get("ha", "left")
        if ha != "left":
            w = float(v[:, 0].max())
            x -= w / 2 if ha == "center" else w
        if kw.get("va", "center") == "center":
            y += 0.36 * size / unit_pt  # half the cap height below the centre line
        vs, cs = groups.setdefault(kw.get("color", "black"), ([], []))
        vs.append(v + np.array((x, y)))
        cs.append(codes)
    paths = [Path(np.concatenate(vs), np.concatenate(cs)) for vs, cs in groups.values()]
    coll = PathCollection(paths, facecolors=list(groups), edgecolors="none", linewidths=0,
                          zorder=5)
    coll.kvmcede_strings = strings
    _add(target, coll)


def _boxes(target: Any, boxes: list[tuple[float, float, float, float, Any, Any]],
           lw: float = 0.6) -> None:
    """Draw rectangles ``(x, y, w, h, facecolor, edgecolor)`` as one collection."""
    from matplotlib.collections import PolyCollection

    if not boxes:
        return
    b = np.asarray([bx[:4] for bx in boxes], float)
    x, y, w, h = b.T
    verts = np.stack([np.stack([x, y], 1), np.stack([x + w, y], 1),
                      np.stack([x + w, y + h], 1), np.stack([x, y + h], 1)], 1)
    _add(target, PolyCollection(verts, facecolors=[bx[4] for bx in boxes],
                                edgecolors=[bx[5] for bx in boxes], linewidths=lw))


def figure_strings(fig: Figure) -> list[str]:
    """Every string shown in ``fig``: text artists and the labels drawn as outlines by
    this module (what tests and accessibility tools read)."""
    from matplotlib.text import Text

    out = [t.get_text() for t in fig.findobj(Text) if t.get_text()]
    for c in fig.findobj(lambda a: hasattr(a, "kvmcede_strings")):
        out.extend(c.kvmcede_strings)
    return out


def fast_canvas(fig: Figure) -> FigureCanvasAgg:
    """The figure's fast Agg canvas (attached on first use).  A figure managed by pyplot
    keeps its own canvas (and is drawn by it)."""
    if isinstance(fig.canvas, FigureCanvasAgg) and (
            isinstance(fig.canvas, _FastCanvas) or getattr(fig.canvas, "manager", None)):
        return fig.canvas
    return _FastCanvas(fig)


def _displayable(fig: Figure) -> None:
    """Give a figure drawn without axes an empty, invisible axes if pyplot manages it:
    IPython's inline backend skips figures without axes as "empty"."""
    if not fig.axes and getattr(fig.canvas, "manager", None) is not None:
        fig.add_axes((0, 0, 1, 1)).set_axis_off()


def to_png(fig: Figure, dpi: float | None = None) -> bytes:
    """Render ``fig`` with an Agg canvas and return PNG bytes (fast zlib level).

    Works for any figure, headless, without touching pyplot or the current backend."""
    if not isinstance(fig, Figure):
        raise ValueError(f"fig: got {type(fig).__name__}; allowed: a matplotlib Figure")
    if dpi is not None and (not is_number(dpi) or not 10 <= dpi <= 600):
        raise ValueError(f"dpi: got {_v(dpi)}; allowed: a number from 10 to 600, or None")
    if dpi is not None and dpi != fig.dpi:
        fig.set_dpi(dpi)
    canvas = fast_canvas(fig)
    canvas.draw()
    return rgba_to_png(canvas.buffer_rgba())


def rgba_to_png(rgba: Any) -> bytes:
    """PNG bytes of an RGBA buffer (``canvas.buffer_rgba()``) as 8-bit RGB.

    Written directly (no row filters, zlib level 1): twice as fast as Pillow's encoder
    for these mostly flat pictures, and no larger."""
    arr = np.asarray(rgba)
    h, w = arr.shape[:2]
    rows = np.zeros((h, 3 * w + 1), np.uint8)  # byte 0 of a row: filter type "None"
    # copy the RGB channels straight into the rows after their filter byte (one pass)
    pixels = np.lib.stride_tricks.as_strided(rows[:, 1:], shape=(h, w, 3),
                                             strides=(3 * w + 1, 3, 1), writeable=True)
    pixels[...] = arr[:, :, :3]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)) + chunk(b"IEND", b""))


def show(fig: Figure) -> None:
    """Display ``fig`` as a PNG in IPython (any figure, including plain ``Figure``s that
    the inline backend does not know about); prints nothing outside IPython."""
    try:
        from IPython.display import Image, display
    except ImportError:  # pragma: no cover - IPython is part of the notebooks extra
        return
    display(Image(data=to_png(fig), format="png"))


# =============================================================================================
# Step explanations (what the step player shows under the slider)
# =============================================================================================

#: One line for every step name the model emits (``Step.name``), in the kernel's words.
STEP_EXPLANATIONS: dict[str, str] = {
    # ---- book3s_hv_rmhandlers.S: hardware threads in real mode
    "kvm_start_guest": "System reset vector after nap: a napper (paca napping set) goes to "
                       "kvm_end_cede; otherwise this is a secondary the host started.",
    "kvmppc_hv_entry": "Guest entry: entry count + 1 (only while no thread has started to "
                       "exit); the primary switches the partition and sets in_guest.",
    "kvmppc_cede_reentry": "Last part of every entry: synthesize at most one pending "
                           "interrupt (external before decrementer), ceded = 0, back to "
                           "the guest.",
    "secondary_too_late": "The exit had already started when this secondary arrived: it "
                          "goes back to secondary_nap without entering.",
    "kvmppc_h_cede: sync; test prodded": "After ceded = 1 and sync, test prodded: a prod "
                                         "that came first makes H_CEDE return at once.",
    "kvmppc_h_cede: napping_threads": "Set this thread's bit in napping_threads, unless it "
                                      "would be the last one awake: then the whole vcore "
                                      "goes to the host.",
    "kvmppc_h_cede: re-check entry_exit_count": "Re-read the exit count after setting the "
                                                "napping bit: an exit that started meanwhile "
                                                "may not have IPI'd this thread.",
    "kvmppc_h_cede: save state, nap": "Save what nap loses (NV GPRs r14-r31, FP/VMX/VSX), "
                                      "enable wake-up on external and decrementer, nap.",
    "kvm_end_cede": "The cede is over without nap (an exit is in progress): clear the "
                    "napping bit and paca napping.",
    "kvm_end_cede: check exit count": "Woken napper: no exit in progress -> back into the "
                                      "guest; otherwise join the exit.",
    "hdec_soon": "Count this thread out (exit count + 1); the first exiter must then get "
                 "every other thread out too.",
    "hdec_soon: HDEC poke, IPI nappers": "First exiter: HDEC = 0 pulls the running threads "
                                         "out; IPIs wake the nappers, whom HDEC cannot "
                                         "wake.",
    "secondary_nap": "Secondary: once the primary has left the partition (in_guest == 0), "
                     "nap_count + 1 and go offline.",
    "switch_to_host": "Primary: every entered thread has exited; switch the partition back "
                      "to the host, in_guest = 0.",
    "kvmppc_interrupt": "The guest takes a hypervisor interrupt (an IPI at 0x500 or the "
                        "HDEC at 0x980) and starts to exit.",
    # ---- guest code
    "guest_run": "A busy burst of guest code ends (it has rewritten its NV registers).",
    "guest_interrupt": "The guest's handler runs for the interrupt synthesized at its "
                       "vector (0x500 or 0x900).",
    "guest_dec": "Running guest code takes its own decrementer interrupt at 0x900 (no "
                 "hypervisor involved).",
    "H_CEDE": "The idle loop programs DEC and calls H_CEDE: real mode sets MSR[EE] and "
              "ceded = 1 (policy host: exit to the host).",
    "H_PROD": "The guest calls H_PROD for another vcpu: handled in the host, so this "
              "thread exits.",
    "H_CONFER": "The guest calls H_CONFER: handled in the host, so this thread exits.",
    "mmio_access": "A load from an emulated device: HDSI, exit to the host and userspace.",
    # ---- book3s_hv.c: host tasks
    "KVM_RUN": "The vcpu's task (QEMU's vcpu thread) calls the KVM_RUN ioctl: under "
               "vc->lock it joins the runnable list, then waits for a running vcore, "
               "sleeps if every vcpu is ceded, or runs the vcore (kvmppc_run_core).",
    "kvmppc_run_vcpu": "The task is back in kvmppc_run_vcpu after handling an hcall in "
                       "the host: RUNNABLE again, and the loop's test under vc->lock.",
    "kvmppc_wait_for_exec": "The task sleeps on cpu_run while another task runs the vcore.",
    "kvmppc_wait_for_exec: woken": "The task waiting on cpu_run is woken, relocks "
                                   "vc->lock and tests the loop condition again.",
    "kvmppc_vcore_blocked": "Every runnable vcpu is ceded: after prepare_to_wait on vc->wq, "
                            "sleep unless a vcpu got work meanwhile.",
    "kvmppc_vcore_blocked: woken": "A kick woke the vcore's runner on vc->wq: go round the "
                                   "loop (under vc->lock) and run the vcore again.",
    "kvmppc_run_core: after exit": "The vcore is back (nap_count >= n_woken): handle every "
                                   "vcpu's exit, arm the DEC hrtimers of ceded vcpus, and go "
                                   "round the loop under the same vc->lock.",
    "kvmppc_run_vcpu: return": "Leave kvmppc_run_vcpu (hcall for the host, MMIO, signal) "
                               "and hand the vcore to another task if needed.",
    "kvmppc_pseries_do_hcall": "The host handles the hcall: H_PROD sets prodded and kicks "
                               "the target if it is ceded.",
    # ---- timers, the remote prodder, store buffers
    "kvmppc_decrementer_func": "The DEC hrtimer of a vcpu ceded in the host fires: queue a "
                               "decrementer exception and kick the vcpu.",
    "H_PROD: smp_mb; test ceded": "Remote H_PROD after smp_mb: if the target is ceded, "
                                  "kick it (the other half of the Dekker pair).",
    "store visible": "The oldest store in a store buffer becomes visible to the other "
                     "threads.",
    # ---- the environment
    "decrementer": "A vcpu's guest decrementer passes zero: a decrementer interrupt is "
                   "due.",
    "KVM_INTERRUPT": "Userspace injects a device interrupt (KVM_INTERRUPT): queue an "
                     "external interrupt and kick the vcpu.",
    "H_PROD (remote)": "A vcpu on another core calls H_PROD for this vcpu: prodded = 1.",
    "hdec": "The host's timer tick is due: HDEC expires and every thread in the guest "
            "exits.",
    "signal": "A signal arrives for the vcpu's task: it leaves KVM_RUN (KVM_EXIT_INTR).",
}


def explain_step(step: Step | str) -> str:
    """The one-line explanation of a step (a :class:`~kvmcede.model.Step` or its name)."""
    name = step if isinstance(step, str) else step.name
    return STEP_EXPLANATIONS.get(name, "")


# =============================================================================================
# Timeline data: spans and markers extracted once per trace
# =============================================================================================

_RECEIVE_KINDS = ("kvm_start_guest", "kvmppc_interrupt")


@dataclass
class _Row:
    label: str
    starts: np.ndarray
    ends: np.ndarray
    codes: np.ndarray  # index into _TimelineData.codes


@dataclass
class _TimelineData:
    scale: float  # x units per tick
    end: float
    threads: list[_Row]
    vcpus: list[_Row]
    host: _Row
    codes: list[tuple[str, int]]
    step_x: np.ndarray  # x of every step
    # markers: x, row ("host", thread index) ...
    hcede: np.ndarray  # (x, thread)
    pokes: np.ndarray  # (x, thread)
    ticks: np.ndarray  # (x,) host ticks (HDEC expiry from the host's timer)
    raises: np.ndarray  # (x, vcpu, vector)
    delivers: np.ndarray  # (x, thread, vcpu, vector)
    ipis: np.ndarray  # (x_send, sender thread or -1, target thread, x_receive)
    prods: np.ndarray  # (x,) H_PROD setting prodded = 1 (remote, or handled in the host)
    exits: list[tuple[float, int, str]]  # (x, thread, reason)


_DATA_CACHE: dict[int, tuple[weakref.ref, _TimelineData]] = {}


def _timeline_data(tr: Trace) -> _TimelineData:
    """Spans and markers of ``tr`` (computed once per trace object and cached)."""
    hit = _DATA_CACHE.get(id(tr))
    if hit is not None and hit[0]() is tr:
        return hit[1]
    data = _build_timeline_data(tr)
    key = id(tr)
    _DATA_CACHE[key] = (weakref.ref(tr, lambda _r, k=key: _DATA_CACHE.pop(k, None)), data)
    return data


def _build_timeline_data(tr: Trace) -> _TimelineData:
    cfg = tr.config
    n_thr, n_vcpu = cfg.threads_per_core, cfg.vcpus
    scale = 1.0 if tr.source == "explore" else 1e6 / cfg.timebase_hz
    codes: list[tuple[str, int]] = []
    code_ix: dict[tuple[str, int], int] = {}

    def code(act: str, v: int) -> int:
        key = (act, v if act == "guest" else -1)
        k = code_ix.get(key)
        if k is None:
            k = code_ix[key] = len(codes)
            codes.append(key)
        return k

    thr_spans: list[list[tuple[int, int]]] = [[] for _ in range(n_thr)]
    vcpu_spans: list[list[tuple[int, int]]] = [[] for _ in range(n_vcpu)]
    host_spans: list[tuple[int, int]] = []
    hcede, pokes, ticks, raises, delivers, exits, prods = [], [], [], [], [], [], []
    ipi_raw: list[tuple[int, int, int]] = []
    recv: list[list[int]] = [[] for _ in range(n_thr)]
    ipi_sends: list[list[int]] = [[] for _ in range(n_thr)]
    has_states = False
    for ev in tr.events:
        k = ev.kind
        if k == "thread_state":
            has_states = True
            thr_spans[ev.thread].append((ev.time, code(ev.detail, ev.vcpu)))
        elif k == "vcpu_state":
            vcpu_spans[ev.vcpu].append((ev.time, code(ev.detail, ev.vcpu)))
        elif k == "H_CEDE":
            hcede.append((ev.time, ev.thread))
        elif k == "hdec_poke":
            pokes.append((ev.time, ev.thread))
        elif k == "hdec":
            ticks.append(ev.time)
        elif k == "raise":
            raises.append((ev.time, ev.vcpu, ev.arg))
        elif k == "deliver":
            delivers.append((ev.time, ev.thread, ev.vcpu, ev.arg))
        elif k == "ipi":
            if 0 <= ev.arg < n_thr:
                ipi_raw.append((ev.time, ev.thread, ev.arg))
                ipi_sends[ev.arg].append(ev.time)
        elif k == "exit":
            exits.append((ev.time * scale, ev.thread, ev.detail))
        elif (k == "H_PROD" and ev.thread < 0 and ev.detail.endswith("prodded = 1")) or (
                k == "kvmppc_pseries_do_hcall" and ev.detail.startswith("H_PROD")):
            prods.append(ev.time)
        elif k == "vcore_sleep":
            host_spans.append((ev.time, code("sleeping", -1)))
        elif k == "vcore_wake":
            host_spans.append((ev.time, -1))
        if k in _RECEIVE_KINDS and ev.thread >= 0 and (k != "kvmppc_interrupt"
                                                        or ev.arg == 0x500):
            recv[ev.thread].append(ev.time)
    if not has_states and tr.steps:
        # Explorer counterexamples carry only the kernel events: derive the activities
        # by replaying the steps (short traces).
        _spans_by_replay(tr, code, thr_spans, vcpu_spans)
    # IPIs: from the sender to the receiver's first reaction, if it comes before the next
    # IPI to the same thread.
    ipis = []
    for t, sender, target in ipi_raw:
        sends = ipi_sends[target]
        nxt_i = bisect.bisect_right(sends, t)
        nxt = sends[nxt_i] if nxt_i < len(sends) else None
        r = recv[target]
        j = bisect.bisect_left(r, t)
        t_recv = r[j] if j < len(r) and (nxt is None or r[j] < nxt) else t
        ipis.append((t * scale, sender, target, t_recv * scale))
    end = max(tr.end, tr.steps[-1][0] if tr.steps else 0)

    def row(label: str, spans: list[tuple[int, int]]) -> _Row:
        st, en, cd = [], [], []
        for j, (t, c) in enumerate(spans):
            t_end = spans[j + 1][0] if j + 1 < len(spans) else end
            if c >= 0 and t_end > t:
                st.append(t * scale)
                en.append(t_end * scale)
                cd.append(c)
        return _Row(label, np.asarray(st, float), np.asarray(en, float),
                    np.asarray(cd, int))

    def arr(rows: list, width: int) -> np.ndarray:
        a = np.asarray(rows, float).reshape(-1, width)
        if len(a):
            a[:, 0] *= scale
        return a

    return _TimelineData(
        scale=scale, end=end * scale,
        threads=[row(f"thread {i}", s) for i, s in enumerate(thr_spans)],
        vcpus=[row(f"vcpu {v}", s) for v, s in enumerate(vcpu_spans)],
        host=row("host side", host_spans), codes=codes,
        step_x=np.asarray([t for t, _ in tr.steps], float) * scale,
        hcede=arr(hcede, 2), pokes=arr(pokes, 2), ticks=arr(ticks, 1),
        raises=arr(raises, 3), delivers=arr(delivers, 4),
        ipis=np.asarray(ipis, float).reshape(-1, 4), exits=exits, prods=arr(prods, 1))


def _spans_by_replay(tr: Trace, code, thr_spans, vcpu_spans) -> None:
    s = tr.state_after(0)
    t0 = tr.steps[0][0] if tr.steps else 0
    t_prev = [None] * len(thr_spans)
    v_prev = [None] * len(vcpu_spans)

    def note(s: Machine, t: int) -> None:
        for i in range(len(thr_spans)):
            c = code(thread_activity(s, i), s.threads[i].vcpu)
            if c != t_prev[i]:
                t_prev[i] = c
                thr_spans[i].append((t, c))
        for v in range(len(vcpu_spans)):
            c = code(vcpu_activity(s, v), v)
            if c != v_prev[v]:
                v_prev[v] = c
                vcpu_spans[v].append((t, c))

    note(s, min(0, t0))
    for t, _st, s in tr.states():
        note(s, t)


# =============================================================================================
# Timeline
# =============================================================================================

def _x_unit(tr: Trace) -> str:
    return "step" if tr.source == "explore" else "µs"


# ---- argument checks (ValueError "name: got V; allowed: ...", before any drawing) ----------

#: Figure widths (inches) the plots accept.
WIDTH_RANGE = (1.0, 100.0)


def _check_trace(trace: object) -> None:
    from .trace import Trace as _Trace
    if not isinstance(trace, _Trace):
        raise ValueError(f"trace: got {type(trace).__name__}; allowed: a Trace")


def _check_width(width: object) -> None:
    lo, hi = WIDTH_RANGE
    if not is_finite(width) or not lo <= width <= hi:
        raise ValueError(f"width: got {_v(width)}; allowed: a number of inches from {lo:g} "
                         f"to {hi:g}")


def _check_index(name: str, v: object, n: int, what: str = "a step index") -> None:
    if not _is_int(v) or not 0 <= v < n:
        allowed = f"{what} from 0 to {n - 1}" if n else f"none ({what}: the trace is empty)"
        raise ValueError(f"{name}: got {_v(v)}; allowed: {allowed} ({name} must be in "
                         f"range)")


def _check_bool(name: str, v: object) -> None:
    if not isinstance(v, bool):
        raise ValueError(f"{name}: got {_v(v)}; allowed: True or False")


def step_window(trace: Trace, k: int, page_steps: int = 60) -> tuple[float, float]:
    """The timeline window (in ``timeline``'s x units) of the page of ``page_steps`` steps
    holding step ``k``: what a step player shows around the current step."""
    _check_trace(trace)
    if not _is_int(page_steps) or page_steps < 1:
        raise ValueError(f"page_steps: got {_v(page_steps)}; allowed: an integer >= 1")
    n = len(trace.steps)
    if n == 0:
        return (0.0, max(1.0, _timeline_data(trace).end))
    _check_index("k", k, n)
    d = _timeline_data(trace)
    p = k // page_steps
    a = d.step_x[p * page_steps]
    b = d.step_x[min(n, (p + 1) * page_steps) - 1]
    if trace.source == "explore":
        return (float(a) - 0.5, float(b) + 1.0)
    pad = max((b - a) * 0.04, 0.5)
    return (max(0.0, float(a) - pad), float(b) + pad)


_LEGEND_COLS = 5
_ROW_IN = 0.42  # inches per timeline row


def timeline(trace: Trace, start_us: float | None = None, end_us: float | None = None,
             highlight_step: int | None = None, title: str | None = None, *,
             vcpus: bool = False, aggregate: bool | None = None, legend: bool | str = True,
             ax: Axes | None = None, fig: Figure | None = None,
             width: float = 10.0) -> Figure:
    """What every hardware thread (and the host side) did over time.

    One row per hardware thread, coloured by what it does ("guest" in its vcpu's colour,
    "nap", "cede", "entry", "exiting", "offline", "host"), one row for the host side
    (the vcore asleep on ``vc->wq``, interrupts raised, host ticks) and, with
    ``vcpus=True``, one row per vcpu ("guest", "nap", "ceded", "out", "stopped").
    Markers: H_CEDE calls (▼), IPIs as arrows from the sender (a thread, or the host) to
    the moment the receiving thread takes them, HDEC pokes (★), interrupts raised (▲ on
    the host row) and delivered at their vector (●), and the reason of each whole-core
    exit.

    ``start_us``/``end_us`` select a window (for explorer counterexamples the x axis is
    the step number and the window is in steps).  When the window holds more spans than
    the plot has pixels (``aggregate=None`` decides; True/False forces it), each row is
    drawn as a density band: every pixel column shows the time split of that instant,
    and markers too dense to read are counted in a note instead of drawn.
    ``highlight_step`` draws a line at that step (0-based index into ``trace.steps``).
    ``legend``: True (what the window shows), ``"all"`` (everything the trace holds, so
    that a legend need not change with the window) or False.
    Returns the figure: drawn into ``ax`` if one is given, else laid out (and resized)
    in ``fig`` if one is given, else in a new figure ``width`` inches wide.
    """
    _check_trace(trace)
    _check_width(width)
    for name, v in (("start_us", start_us), ("end_us", end_us)):
        if v is not None and not is_finite(v):
            raise ValueError(f"{name}: got {_v(v)}; allowed: a finite number or None")
    _check_bool("vcpus", vcpus)
    if aggregate is not None:
        _check_bool("aggregate", aggregate)
    if legend not in (True, False, "all") or not isinstance(legend, bool | str):
        raise ValueError(f"legend: got {_v(legend)}; allowed: True, False or 'all'")
    if title is not None and not isinstance(title, str):
        raise ValueError(f"title: got {_v(title)}; allowed: a string or None")
    d = _timeline_data(trace)
    a = 0.0 if start_us is None else float(start_us)
    b = d.end if end_us is None else float(end_us)
    if b <= a:
        if start_us is None and end_us is None:  # an empty trace: show one unit
            b = a + 1.0
        else:
            raise ValueError(f"end_us must be greater than start_us, got start_us={a!r}, "
                             f"end_us={b!r}")
    if highlight_step is not None:
        _check_index("highlight_step", highlight_step, len(trace.steps))
    rows = [d.host, *d.threads, *(d.vcpus if vcpus else ())]
    own = ax is None
    if own:
        if fig is None:
            fig = _new_figure((width, 4.0))
        else:
            fig.set_size_inches(width, 4.0)
        ax = fig.add_axes((0.1, 0.2, 0.88, 0.7))
    fig = ax.figure
    handles = _draw_timeline(ax, trace, d, rows, a, b, highlight_step, vcpus, aggregate)
    if title is None:
        cfg = trace.config
        what = "counterexample" if trace.source == "explore" else "simulation"
        title = (f"{what}: policy {cfg.policy}, SMT{cfg.threads_per_core}, "
                 f"{cfg.vcpus} vcpu{'s' if cfg.vcpus > 1 else ''}")
        if cfg.ablations or cfg.changes:
            title += " — " + ", ".join(sorted(cfg.ablations | cfg.changes))
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    if legend == "all":
        handles = _trace_handles(d, vcpus)
    ncol = min(_LEGEND_COLS, max(1, len(handles)))
    leg_rows = -(-len(handles) // ncol) if legend and handles else 0
    if own:
        rows_h = _ROW_IN * len(rows)
        top = 0.42 if title else 0.15
        bottom = 0.5 + (0.19 * leg_rows + 0.12 if leg_rows else 0.0)
        height = top + rows_h + bottom
        fig.set_size_inches(width, height)
        ax.set_position((1.0 / width, bottom / height, 1 - 1.2 / width, rows_h / height))
        if leg_rows:
            fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.01),
                       ncol=ncol, fontsize=7.5, frameon=False, handlelength=1.6,
                       columnspacing=1.4)
    elif leg_rows:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.22),
                  ncol=ncol, fontsize=7.5, frameon=False, handlelength=1.6,
                  columnspacing=1.4)
    return fig


def redraw_timeline(ax: Axes, trace: Trace, start: float, end: float, *,
                    vcpus: bool = False, title: str = "") -> None:
    """Redraw the window [start, end] of ``trace`` into ``ax``, an axes that
    :func:`timeline` drew before (keeping its layout and the figure's legend): what a
    widget does when its window moves."""
    for name, v in (("start", start), ("end", end)):
        if not is_finite(v):
            raise ValueError(f"{name}: got {_v(v)}; allowed: a finite number")
    if not end > start:
        raise ValueError(f"end: got {_v(end)} with start={start!r}; allowed: end > start "
                         f"(end must be greater than start)")
    d = _timeline_data(trace)
    _clear_axes(ax)
    rows = [d.host, *d.threads, *(d.vcpus if vcpus else ())]
    _draw_timeline(ax, trace, d, rows, float(start), float(end), None, vcpus, None)
    ax.set_title(title, fontsize=10, loc="left")


def step_position(trace: Trace, k: int) -> float:
    """The x of step ``k`` (0-based) in :func:`timeline`'s units (µs, or steps)."""
    _check_index("k", k, len(trace.steps))
    return float(_timeline_data(trace).step_x[k])


def timeline_end(trace: Trace) -> float:
    """The end of ``trace`` in :func:`timeline`'s units (µs, or steps)."""
    return float(_timeline_data(trace).end)


def timeline_legend(trace: Trace, *, vcpus: bool = False, width: float = 10.0,
                    fig: Figure | None = None) -> Figure:
    """The legend of :func:`timeline` for everything ``trace`` holds, as a figure of its
    own (a player shows it once under timelines drawn with ``legend=False``)."""
    _check_trace(trace)
    _check_width(width)
    _check_bool("vcpus", vcpus)
    handles = _trace_handles(_timeline_data(trace), vcpus)
    ncol = min(_LEGEND_COLS, max(1, len(handles)))
    rows = -(-len(handles) // ncol) if handles else 1
    height = 0.19 * rows + 0.16
    if fig is None:
        fig = _new_figure((width, height))
    else:
        fig.set_size_inches(width, height)
    if handles:
        fig.legend(handles=handles, loc="center", ncol=ncol, fontsize=7.5, frameon=False,
                   handlelength=1.6, columnspacing=1.4)
    _displayable(fig)
    return fig


def _trace_handles(d: _TimelineData, with_vcpus: bool) -> list[Any]:
    """Legend entries for everything the trace holds (spans of the drawn rows and every
    kind of marker that occurs)."""
    rows = [d.host, *d.threads, *(d.vcpus if with_vcpus else ())]
    used = sorted({int(c) for r in rows for c in np.unique(r.codes)},
                  key=lambda c: _legend_order(d.codes[c]))
    hs: list[Any] = [
        Patch(facecolor=_span_colour(d.codes[c]), label=_span_label(d.codes[c]),
              hatch=_NAP_HATCH if d.codes[c][0] == "nap" else None,
              edgecolor="#6F87B5" if d.codes[c][0] == "nap" else "white") for c in used]
    if len(d.hcede):
        hs.append(Line2D([], [], ls="", marker="v", color="black", ms=5, label="H_CEDE"))
    if len(d.pokes) or len(d.ticks):
        hs.append(Line2D([], [], ls="", marker="*", color="#CC3311", ms=8,
                         label="HDEC poke / host tick"))
    if len(d.prods):
        hs.append(Line2D([], [], ls="", marker="D", color="white", mec="black", mew=0.8,
                         ms=5, label="H_PROD: prodded = 1"))
    for vec, name in ((0x500, "external"), (0x900, "decrementer")):
        if len(d.raises) and (d.raises[:, 2] == vec).any():
            hs.append(Line2D([], [], ls="", marker="^", color=VECTOR_COLOURS[vec],
                             mec="black", mew=0.5, ms=6, label=f"{name} raised"))
    for vec in (0x500, 0x900):
        if len(d.delivers) and (d.delivers[:, 3] == vec).any():
            hs.append(Line2D([], [], ls="", marker="o", color=VECTOR_COLOURS[vec],
                             mec="black", mew=0.5, ms=6, label=f"delivered at {vec:#x}"))
    if len(d.ipis) and (d.ipis[:, 1] >= 0).any():
        hs.append(Line2D([0, 1], [0, 0], color="black", lw=1, label="IPI (exit path)"))
    if len(d.ipis) and (d.ipis[:, 1] < 0).any():
        hs.append(Line2D([0, 1], [0, 0], color="#666666", lw=1, ls=(0, (4, 2)),
                         label="IPI (from the host)"))
    return hs


def _clear_axes(ax: Axes) -> None:
    """Remove what :func:`_draw_timeline` added, keeping the axes, its ticks and the
    figure's legend (so a widget can redraw a new window cheaply)."""
    for group in (ax.collections, ax.lines, ax.images, ax.texts, ax.patches):
        for a in list(group):
            a.remove()


def _row_y(n_rows: int, k: int) -> float:
    return float(n_rows - 1 - k)


def _draw_timeline(ax: Axes, tr: Trace, d: _TimelineData, rows: list[_Row], a: float,
                   b: float, highlight: int | None, with_vcpus: bool,
                   aggregate: bool | None) -> list[Any]:
    """Draw the rows, markers and arrows into ``ax``; return the legend handles."""
    n_rows = len(rows)
    n_thr = len(d.threads)
    h = 0.72
    ax.set_xlim(a, b)
    ax.set_ylim(-0.6, n_rows - 0.4)
    ax.set_yticks([_row_y(n_rows, k) for k in range(n_rows)],
                  [r.label for r in rows], fontsize=9)
    ax.tick_params(axis="y", length=0)
    ax.tick_params(axis="x", labelsize=8)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    from matplotlib.ticker import FuncFormatter, ScalarFormatter
    if _x_unit(tr) == "µs" and b - a >= 5000:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{x / 1000:g}"))
        ax.set_xlabel("time (ms)", fontsize=9)
    else:
        plain = ScalarFormatter(useOffset=False)  # 10,000.5 µs, not 0.5 + 1e4
        plain.set_scientific(False)
        ax.xaxis.set_major_formatter(plain)
        ax.set_xlabel("step" if _x_unit(tr) == "step" else "time (µs)", fontsize=9)
    if _x_unit(tr) == "step":
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.axhline(_row_y(n_rows, 0) - 0.5, color="#999999", lw=0.6)
    if with_vcpus:
        ax.axhline(_row_y(n_rows, n_thr) - 0.5, color="#999999", lw=0.6)

    # ---- spans: bars, or density bands when they would be thinner than a pixel
    fig = ax.figure
    px = max(50, int(fig.get_figwidth() * fig.dpi * ax.get_position().width))
    windows = []
    for r in rows:
        i0 = int(np.searchsorted(r.ends, a, side="right"))
        i1 = int(np.searchsorted(r.starts, b, side="left"))
        windows.append((i0, max(i0, i1)))
    if aggregate is None:
        aggregate = max((i1 - i0 for i0, i1 in windows), default=0) > px // 4
    used: set[int] = set()
    for k, (r, (i0, i1)) in enumerate(zip(rows, windows, strict=False)):
        if i1 <= i0:
            continue
        y = _row_y(n_rows, k)
        st = np.clip(r.starts[i0:i1], a, b)
        en = np.clip(r.ends[i0:i1], a, b)
        cd = r.codes[i0:i1]
        used.update(int(c) for c in np.unique(cd))
        if aggregate:
            _draw_band(ax, d, st, en, cd, a, b, y, h, px, r.label)
            continue
        nap = np.array([d.codes[c][0] == "nap" for c in cd], bool)
        for sel, hatch, suffix in ((~nap, None, ""), (nap, _NAP_HATCH, "|nap")):
            if sel.any():
                coll = ax.broken_barh(
                    list(zip(st[sel], en[sel] - st[sel], strict=False)), (y - h / 2, h),
                    facecolors=[_span_colour(d.codes[c]) for c in cd[sel]],
                    edgecolor="white" if hatch is None else "#6F87B5",
                    linewidth=0.4 if hatch is None else 0.0, hatch=hatch)
                coll.set_gid(f"spans|{r.label}{suffix}")
    handles: list[Any] = [
        Patch(facecolor=_span_colour(d.codes[c]), label=_span_label(d.codes[c]),
              hatch=_NAP_HATCH if d.codes[c][0] == "nap" and not aggregate else None,
              edgecolor="#6F87B5" if d.codes[c][0] == "nap" else "white")
        for c in sorted(used, key=lambda c: _legend_order(d.codes[c]))]

    # ---- markers (skipped, and counted, when too dense to read)
    y_host = _row_y(n_rows, 0)
    dense = px // 6

    def thread_y(i: np.ndarray) -> np.ndarray:
        return n_rows - 2 - i

    def vcpu_y(v: np.ndarray) -> np.ndarray:
        return n_rows - 2 - n_thr - v

    skipped_n: dict[str, int] = {}

    def pick(arr: np.ndarray, what: str) -> np.ndarray:
        """Rows of ``arr`` inside the window, or none if they are too many to draw."""
        if not len(arr):
            return arr
        m = (arr[:, 0] >= a) & (arr[:, 0] <= b)
        if aggregate and m.sum() > dense:
            skipped_n[what] = skipped_n.get(what, 0) + int(m.sum())
            return arr[:0]
        return arr[m]

    ms = 5.0
    hc = pick(d.hcede, "H_CEDE")
    if len(hc):
        ax.scatter(hc[:, 0], thread_y(hc[:, 1]) + h / 2 + 0.03, marker="v", s=ms ** 2,
                   color="black", zorder=5, linewidths=0, gid="H_CEDE")
        handles.append(Line2D([], [], ls="", marker="v", color="black", ms=5,
                              label="H_CEDE"))
    pk = pick(d.pokes, "HDEC")
    tk = pick(d.ticks, "HDEC")
    if len(pk) or len(tk):
        x = np.concatenate([pk[:, 0], tk[:, 0]])
        y = np.concatenate([thread_y(pk[:, 1]), np.full(len(tk), y_host)])
        ax.scatter(x, y, marker="*", s=(ms * 1.9) ** 2, color="#CC3311",
                   edgecolors="white", linewidths=0.4, zorder=8, gid="HDEC")
        handles.append(Line2D([], [], ls="", marker="*", color="#CC3311", ms=8,
                              label="HDEC poke / host tick"))
    pr = pick(d.prods, "H_PRODs")
    if len(pr):
        ax.scatter(pr[:, 0], np.full(len(pr), y_host), marker="D", s=(ms * 0.95) ** 2,
                   color="white", edgecolors="black", linewidths=0.8, zorder=8, gid="H_PROD")
        handles.append(Line2D([], [], ls="", marker="D", color="white", mec="black", mew=0.8,
                              ms=5, label="H_PROD: prodded = 1"))
    for vec, name in ((0x500, "external"), (0x900, "decrementer")):
        rs = d.raises[d.raises[:, 2] == vec] if len(d.raises) else d.raises
        rs = pick(rs, "interrupt marks")
        if len(rs):
            y = vcpu_y(rs[:, 1]) if with_vcpus else np.full(len(rs), y_host)
            ax.scatter(rs[:, 0], y, marker="^", s=(ms * 1.2) ** 2, color=VECTOR_COLOURS[vec],
                       edgecolors="black", linewidths=0.5, zorder=8, gid=f"raise|{vec:#x}")
            handles.append(Line2D([], [], ls="", marker="^", color=VECTOR_COLOURS[vec],
                                  mec="black", mew=0.5, ms=6, label=f"{name} raised"))
    for vec in (0x500, 0x900):
        dv = d.delivers[d.delivers[:, 3] == vec] if len(d.delivers) else d.delivers
        dv = pick(dv, "interrupt marks")
        if len(dv):
            ax.scatter(dv[:, 0], thread_y(dv[:, 1]), marker="o", s=(ms * 1.2) ** 2,
                       color=VECTOR_COLOURS[vec], edgecolors="black", linewidths=0.5,
                       zorder=8, gid=f"deliver|{vec:#x}")
            handles.append(Line2D([], [], ls="", marker="o", color=VECTOR_COLOURS[vec],
                                  mec="black", mew=0.5, ms=6, label=f"delivered at {vec:#x}"))
    for from_host, colour, label in ((False, "black", "IPI (exit path)"),
                                     (True, "#666666", "IPI (from the host)")):
        ip = d.ipis[(d.ipis[:, 1] < 0) == from_host] if len(d.ipis) else d.ipis
        if len(ip):
            m = (ip[:, 0] <= b) & (ip[:, 3] >= a)
            if aggregate and m.sum() > dense:
                skipped_n["IPIs"] = skipped_n.get("IPIs", 0) + int(m.sum())
                continue
            ip = ip[m]
        if not len(ip):
            continue
        x0, snd, tgt, x1 = ip.T
        yc0 = np.where(snd < 0, y_host, thread_y(snd))
        yc1 = thread_y(tgt)
        sgn = np.sign(yc1 - yc0)
        y0 = yc0 + sgn * h / 2  # leave the sender's row at its edge ...
        y1 = yc1 - sgn * h / 2  # ... and end on the receiver's edge
        segs = np.stack([np.stack([x0, y0], 1), np.stack([x1, y1], 1)], 1)
        ax.add_collection(LineCollection(
            segs, colors=colour, linewidths=1.0, linestyles="solid" if not from_host
            else (0, (4, 2)), zorder=7, gid=f"ipi|{'host' if from_host else 'exit'}"))
        down = y1 < y0
        for sel, mk in ((down, "v"), (~down, "^")):
            if sel.any():
                ax.scatter(x1[sel], y1[sel], marker=mk, s=(ms * 0.95) ** 2, color=colour,
                           linewidths=0, zorder=7)
        handles.append(Line2D([0, 1], [0, 0], color=colour, lw=1,
                              ls="-" if not from_host else (0, (4, 2)), label=label))
    exits = [e for e in d.exits if a <= e[0] <= b]
    if exits and len(exits) <= 12:
        last: dict[int, float] = {}
        for x, thr, reason in sorted(exits):
            if x - last.get(thr, -np.inf) < 0.12 * (b - a):
                continue  # too close to the previous label on this row to be read
            last[thr] = x
            y = float(thread_y(np.asarray(thr))) if thr >= 0 else y_host
            right = x > a + 0.82 * (b - a)  # near the right edge: label to the left
            ax.annotate(f"exit: {reason}", (x, y), xytext=(-7 if right else 7, 0),
                        textcoords="offset points", fontsize=7, va="center",
                        ha="right" if right else "left", color="#661111", zorder=9,
                        gid="exit-label", bbox={"boxstyle": "round,pad=0.15", "fc": "white",
                                                "ec": "#EE6677", "lw": 0.6, "alpha": 0.85})
    elif exits:
        skipped_n["exits"] = len(exits)
    if highlight is not None:
        ax.axvline(d.step_x[highlight], color="black", lw=1.2, zorder=10, gid="highlight")
    if aggregate:
        note = "aggregated: each pixel column shows the time split"
        if skipped_n:
            note += "\nnot drawn: " + " · ".join(f"{n:,} {w}" for w, n in skipped_n.items())
        ax.text(1.0, 1.01, note, transform=ax.transAxes, ha="right", va="bottom",
                fontsize=7, color="#555555", gid="aggregate-note")
    return handles


_ORDER = ("guest", "nap", "cede", "entry", "exiting", "offline", "host", "ceded", "out",
          "userspace", "stopped", "sleeping")


def _legend_order(code: tuple[str, int]) -> tuple[int, int]:
    return (_ORDER.index(code[0]), code[1])


def _draw_band(ax: Axes, d: _TimelineData, st: np.ndarray, en: np.ndarray, cd: np.ndarray,
               a: float, b: float, y: float, h: float, px: int, label: str) -> None:
    """Draw one row as a density band: ``px`` columns, each stacked bottom-up (in legend
    order) with the share of that pixel's time spent in each activity."""
    from matplotlib.colors import to_rgba

    edges = np.linspace(a, b, px + 1)
    codes = sorted(np.unique(cd).tolist(), key=lambda c: _legend_order(d.codes[c]))
    frac = np.zeros((len(codes), px))
    for j, c in enumerate(codes):
        sel = cd == c
        s, e = st[sel], en[sel]
        dur = e - s
        cum = np.concatenate([[0.0], np.cumsum(dur)])
        # time spent in code c before each edge: whole spans before it, plus the part of
        # the span it falls in
        i = np.searchsorted(s, edges, side="right") - 1
        ii = np.maximum(i, 0)
        f = np.where(i >= 0, cum[ii] + np.clip(edges - s[ii], 0, dur[ii]), 0.0)
        frac[j] = np.diff(f)
    frac /= np.diff(edges)
    levels = 12
    cum = np.cumsum(frac, axis=0)
    centre = (np.arange(levels) + 0.5) / levels
    idx = (cum[None, :, :] < centre[:, None, None]).sum(axis=1)  # (levels, px)
    rgba = np.zeros((len(codes) + 1, 4))
    for j, c in enumerate(codes):
        rgba[j] = to_rgba(_span_colour(d.codes[c]))
    img = rgba[idx]  # the last entry (transparent) where less than the level is covered
    ax.imshow(img, extent=(a, b, y - h / 2, y + h / 2), origin="lower", aspect="auto",
              interpolation="nearest", zorder=2, gid=f"band|{label}")


# =============================================================================================
# State view
# =============================================================================================

_PRIO_NAMES = ((BOOK3S_IRQPRIO_EXTERNAL, "EXTERNAL"), (BOOK3S_IRQPRIO_DECREMENTER, "DEC"),
               (BOOK3S_IRQPRIO_EXTERNAL_LEVEL, "EXT_LEVEL"))


def pending_names(bits: int) -> str:
    """``pending_exceptions`` as BOOK3S_IRQPRIO_* names ("—" when empty)."""
    names = [n for b, n in _PRIO_NAMES if bits >> b & 1]
    return " ".join(names) if names else "—"


def _state_tables(s: Machine, config: Config, workload: Workload | None):
    """The text of every cell of the state view, as (section -> rows)."""
    us = config.us
    threads = []
    for i, t in enumerate(s.threads):
        act = thread_activity(s, i)
        threads.append((act, t.vcpu, [
            f"{i}" + (" (primary)" if i == 0 else ""), t.loc, str(t.napping),
            "—" if t.vcpu < 0 else str(t.vcpu),
            "IPI" if t.ipi else "—"]))
    vc = s.vcore
    vcpus = []
    for v, u in enumerate(s.vcpus):
        dec = Dec(u.dec).name
        if u.dec == Dec.ARMED and u.dec_expires:
            dec += f" @{us(u.dec_expires):.1f}µs"
        if workload is not None:
            op = workload.op(v, u.pc)
            where = f"{u.pc}: {type(op).__name__}"
        else:
            where = f"op {u.pc}"
        if u.guest:
            where += f" (in {'H_CEDE' if u.guest == 'cede' else u.guest})"
        task = s.tasks[v]
        tloc = task.loc + (" +woken" if task.woken else "") + (" +signal" if task.signal
                                                               else "")
        vcpus.append((vcpu_activity(s, v), [
            str(v), VCPU_STATE_NAMES[u.state].removeprefix("KVMPPC_VCPU_"), str(u.ceded),
            str(u.prodded), str(u.ptid), pending_names(u.pending_exceptions),
            "1" if u.msr_ee else "0", dec, "armed" if u.timer_running else "—", where,
            tloc]))
    return threads, vc, vcpus


_THREAD_COLS = (("thread", 10), ("where (kernel label)", 31), ("napping", 7), ("vcpu", 5),
                ("XICS", 6))
_VCPU_COLS = (("vcpu", 5), ("state", 12), ("ceded", 6), ("prodded", 7), ("ptid", 5),
              ("pending_exceptions", 16), ("MSR[EE]", 7), ("DEC", 14), ("dec_timer", 8),
              ("guest program", 16), ("host task (book3s_hv.c)", 27))
_CHANGED = "#FFE58F"


def state_view(state: Machine, config: Config, title: str | None = None, *,
               previous: Machine | None = None, workload: Workload | None = None,
               fig: Figure | None = None) -> Figure:
    """One instant of the machine, laid out like the kernel's data structures.

    Top left, every hardware thread: its paca ``napping`` flag, where it is (kernel
    label), its vcpu and a pending XICS IPI (the colour chip is the timeline colour of
    what it is doing).  Top right, the vcore: ``vcore_state``, ``entry_exit_count`` as
    entry/exit counts, ``napping_threads`` as one box per ptid, ``nap_count``/``n_woken``,
    ``in_guest``, the runnable list.  Below, every vcpu (``vcpu->arch``: state, ceded,
    prodded, ptid, pending interrupts, MSR[EE], DEC, the DEC hrtimer, where its guest
    program is) and its host task's location.  With ``previous`` (the state before the
    step), every value that changed is highlighted.
    """
    if len(state.threads) != config.threads_per_core or len(state.vcpus) != config.vcpus:
        raise ValueError(f"state must have config.threads_per_core "
                         f"({config.threads_per_core}) threads and config.vcpus "
                         f"({config.vcpus}) vcpus, got {len(state.threads)} and "
                         f"{len(state.vcpus)}")
    threads, vc, vcpus = _state_tables(state, config, workload)
    old = _state_tables(previous, config, workload) if previous is not None else None
    n_t, n_v = len(threads), len(vcpus)
    row_h = 2.7
    top_h = 4.5 + max(n_t * row_h + 3.2, 7 * row_h)
    bot_h = 4.8 + n_v * row_h
    foot = _footer(state)
    height_units = (3.0 if title else 0.8) + top_h + bot_h + (3.2 if foot else 0.6)
    width_units = 1.0 + sum(w for _, w in _VCPU_COLS) + 1.0
    if fig is None:
        fig = _new_figure((width_units / 10, height_units / 10))
    else:  # the layout is in tenths of an inch: the figure gets the size it needs
        fig.set_size_inches(width_units / 10, height_units / 10)
    target = (fig, _tenths(fig, height_units))
    boxes: list[tuple] = []
    texts: list[tuple] = []

    def box(x, y, w, hh, fc, ec="#BBBBBB") -> None:
        boxes.append((x, y, w, hh, fc, ec))

    y = 0.8
    if title:
        texts.append((1.0, 1.6, title, {"fontsize": 11, "fontweight": "bold",
                                         "va": "center"}))
        y = 3.2
    # ---- threads table
    x0 = 1.0
    texts.append((x0, y + 0.9, "Hardware threads (paca kvm_hstate)",
                  {"fontsize": 9.5, "fontweight": "bold", "va": "center"}))
    yy = y + 2.4
    _header(texts, box, x0, yy, _THREAD_COLS, row_h)
    yy += row_h
    for r, (act, v, cells) in enumerate(threads):
        before = old[0][r][2] if old is not None else None
        _row(texts, box, x0, yy, _THREAD_COLS, cells, before, row_h,
             chip=_span_colour((act, v)), mono={1})
        yy += row_h
    # ---- vcore panel
    _vcore_panel(texts, box, width_units - 1.0 - _VCORE_W, y, vc,
                 old[1] if old is not None else None, row_h, config.threads_per_core)
    # ---- vcpus table
    y2 = y + top_h
    texts.append((x0, y2 + 0.9, "vcpus (vcpu->arch) and their host tasks",
                  {"fontsize": 9.5, "fontweight": "bold", "va": "center"}))
    yy = y2 + 2.4
    _header(texts, box, x0, yy, _VCPU_COLS, row_h)
    yy += row_h
    for r, (act, cells) in enumerate(vcpus):
        before = old[2][r][1] if old is not None else None
        _row(texts, box, x0, yy, _VCPU_COLS, cells, before, row_h,
             chip=_span_colour((act, r)), mono={1, 5, 7, 9, 10})
        yy += row_h
    if foot:
        if previous is not None and _footer(previous) != foot:
            box(x0, yy + 0.4, width_units - 2.0, 2.4, _CHANGED, _CHANGED)
        texts.append((x0 + 0.4, yy + 1.6, foot, {"fontsize": 8, "va": "center",
                                            "family": _MONO, "color": "#333333"}))
    _boxes(target, boxes)
    _draw_texts(target, texts)
    _displayable(fig)
    return fig


def _header(texts, box, x0, y, cols, row_h) -> None:
    x = x0
    for name, w in cols:
        box(x, y, w, row_h, "#E8ECF2")
        texts.append((x + 0.6, y + row_h / 2, name, {"fontsize": 8, "va": "center",
                                                      "fontweight": "bold"}))
        x += w


def _row(texts, box, x0, y, cols, cells, before, row_h, chip=None, mono=()) -> None:
    x = x0
    for c, ((_, w), s) in enumerate(zip(cols, cells, strict=False)):
        changed = before is not None and before[c] != s
        box(x, y, w, row_h, _CHANGED if changed else "white")
        kw = {"fontsize": 8, "va": "center"}
        if c in mono:
            kw["family"] = _MONO
            kw["fontsize"] = 7.5
        if changed:
            kw["fontweight"] = "bold"
        tx = x + 0.6
        if c == 0 and chip is not None:
            box(x + 0.5, y + 0.55, 1.6, row_h - 1.1, chip, "#555555")
            tx = x + 2.6
        texts.append((tx, y + row_h / 2, s, kw))
        x += w


_VCORE_W = 15.5 + 30.0


def _vcore_panel(texts, box, x0, y, vc, old_vc, row_h, n_thr) -> None:
    texts.append((x0, y + 0.9, "vcore (struct kvmppc_vcore)",
                  {"fontsize": 9.5, "fontweight": "bold", "va": "center"}))
    eec = vc.entry_exit_count
    lines = [
        ("vcore_state", VCORE_STATE_NAMES.get(vc.vcore_state, str(vc.vcore_state))),
        ("entry_exit_count", f"{eec:#06x}"),
        ("napping_threads", f"{vc.napping_threads:#06b}"),
        ("nap_count / n_woken", f"{vc.nap_count} / {vc.n_woken}"),
        ("in_guest", str(vc.in_guest)),
        ("runnable_threads", "[" + ", ".join(map(str, vc.runnable)) + "]"
         + f"   n_busy {vc.n_busy}"),
        ("runner / vc->wq", ("—" if vc.runner < 0 else f"vcpu {vc.runner}") + " / "
         + ("[" + ", ".join(map(str, vc.wq)) + "]" if vc.wq else "empty")),
    ]
    old_lines = None
    if old_vc is not None:
        old_lines = _vcore_values(old_vc)
    yy = y + 2.4
    for k, (name, val) in enumerate(lines):
        changed = old_lines is not None and old_lines[k] != _vcore_values(vc)[k]
        box(x0, yy, 15.5, row_h, "#E8ECF2")
        texts.append((x0 + 0.6, yy + row_h / 2, name, {"fontsize": 8, "va": "center",
                                                        "fontweight": "bold"}))
        box(x0 + 15.5, yy, _VCORE_W - 15.5, row_h, _CHANGED if changed else "white")
        kw = {"fontsize": 7.5, "va": "center", "family": _MONO}
        if changed:
            kw["fontweight"] = "bold"
        if name == "entry_exit_count":
            texts.append((x0 + 16.1, yy + row_h / 2, val, kw))
            for j, (lab, n) in enumerate((("entry", entry_count(eec)),
                                          ("exit", exit_count(eec)))):
                bx = x0 + 24.0 + j * 8.4
                box(bx, yy + 0.35, 7.9, row_h - 0.7, "#F3F3F3", "#888888")
                texts.append((bx + 3.95, yy + row_h / 2, f"{lab} {n}",
                              {"fontsize": 7.5, "va": "center", "ha": "center"}))
        elif name == "napping_threads":
            for p in range(n_thr):
                bx = x0 + 16.0 + p * 3.4
                on = vc.napping_threads >> p & 1
                box(bx, yy + 0.35, 3.0, row_h - 0.7, ACTIVITY_COLOURS["nap"] if on
                    else "white", "#555555")
                texts.append((bx + 1.5, yy + row_h / 2, str(p),
                              {"fontsize": 7.5, "va": "center", "ha": "center",
                               "fontweight": "bold" if on else "normal"}))
            texts.append((x0 + 16.5 + n_thr * 3.4, yy + row_h / 2, val, kw))
        else:
            texts.append((x0 + 16.1, yy + row_h / 2, val, kw))
        yy += row_h


def _vcore_values(vc) -> tuple:
    return (vc.vcore_state, vc.entry_exit_count, vc.napping_threads,
            (vc.nap_count, vc.n_woken), vc.in_guest, (vc.runnable, vc.n_busy),
            (vc.runner, vc.wq))


def _footer(s: Machine) -> str:
    parts = []
    if s.stores:
        parts.append("store buffers: " + "; ".join(
            f"{'remote H_PROD' if st.writer == 99 else f'thread {st.writer}'}: "
            f"vcpu{st.vcpu}.{st.field} = {st.value}" for st in s.stores))
    if s.prodder[0]:
        parts.append(f"remote H_PROD of vcpu {s.prodder[1]}: at {s.prodder[0]}")
    if any(s.budget):
        names = ("interrupts", "DEC expiries", "remote prods", "host ticks", "signals")
        parts.append("environment budget left: " + ", ".join(
            f"{n} {b}" for n, b in zip(names, s.budget, strict=False) if b))
    return "   |   ".join(parts)


# =============================================================================================
# Registers across nap
# =============================================================================================

@dataclass(frozen=True)
class NapMoments:
    """The moments around one nap of one vcpu, found in a trace by :func:`nap_moments`.

    Step indexes are 0-based into ``trace.steps`` (figures number steps from 1, as the
    step player does: step ``k + 1`` is ``trace.steps[k]``): ``nap_step`` is
    "kvmppc_h_cede: save state, nap", ``wake_step`` the "kvm_start_guest" that ended it,
    ``resume_step`` the step after which the vcpu next runs guest code (None if it never
    does in the trace).  Register contents are the model's tags (one number standing for
    the 18 values of r14-r31, or of the FP/VMX/VSX registers; -1 = lost in nap)."""

    vcpu: int
    thread: int
    nap_step: int
    wake_step: int | None
    resume_step: int | None
    before: tuple[int, int]  # (gprs, fprs) in the thread just before nap
    saved: tuple[int, int]  # vcpu->arch copies after the nap step
    during: tuple[int, int]  # in the thread while napping
    after_wake: tuple[int, int] | None  # in the thread after kvm_end_cede's reload
    guest_sees: tuple[int, int] | None  # in the thread when guest code next runs
    expected: tuple[int, int]  # what the guest last wrote (gpr_expect, fpr_expect)


_NAP_STEP = "kvmppc_h_cede: save state, nap"


def nap_moments(trace: Trace, vcpu: int | None = None, occurrence: int = 0) -> NapMoments:
    """Find the ``occurrence``-th nap (of ``vcpu``, or of any vcpu) in ``trace``, the
    wake-up that ended it and the next moment its guest code runs again."""
    _check_trace(trace)
    if not _is_int(occurrence) or occurrence < 0:
        raise ValueError(f"occurrence: got {_v(occurrence)}; allowed: an integer >= 0")
    if vcpu is not None:
        _check_index("vcpu", vcpu, trace.config.vcpus, "a vcpu")
    seen = 0
    for k, (_t, st) in enumerate(trace.steps):
        if st.actor != "thread" or st.name != _NAP_STEP:
            continue
        before = trace.state_after(k)
        v = before.threads[st.index].vcpu
        if vcpu is not None and v != vcpu:
            continue
        if seen < occurrence:
            seen += 1
            continue
        return _moments_from(trace, k, st.index, v, before)
    who = "any vcpu" if vcpu is None else f"vcpu {vcpu}"
    raise ValueError(f"occurrence: the trace has only {seen} nap(s) of {who} "
                     f"(asked for occurrence {occurrence})")


def _moments_from(trace: Trace, k: int, i: int, v: int, before: Machine) -> NapMoments:
    m = trace._model
    t_k, st_k = trace.steps[k]
    s, _ = m.apply(before, st_k, t_k)
    bt, u = before.threads[i], s.vcpus[v]
    during = (s.threads[i].gprs, s.threads[i].fprs)
    wake = resume = None
    after_wake = guest_sees = None
    for j in range(k + 1, len(trace.steps)):
        t_j, st = trace.steps[j]
        prev = s
        s, _ = m.apply(s, st, t_j)
        if wake is None:
            if st.actor == "thread" and st.index == i and prev.threads[i].loc == "nap":
                wake = j
                after_wake = (s.threads[i].gprs, s.threads[i].fprs)
            continue
        for t in s.threads:
            if t.vcpu == v and t.loc == "guest":
                resume = j
                guest_sees = (t.gprs, t.fprs)
                break
        if resume is not None:
            break
    return NapMoments(vcpu=v, thread=i, nap_step=k, wake_step=wake, resume_step=resume,
                      before=(bt.gprs, bt.fprs), saved=(u.gpr_saved, u.fpr_saved),
                      during=during, after_wake=after_wake, guest_sees=guest_sees,
                      expected=(u.gpr_expect, u.fpr_expect))


def _register_demo(config: Config) -> Trace:
    """A small run in which vcpu 1 computes, naps while vcpu 0 keeps the core in the
    guest, and computes again when its decrementer wakes it."""
    from .guest import Busy, Idle, Workload
    from .sim import simulate
    if config.vcpus < 2:
        raise ValueError("config.vcpus must be >= 2 for a nap in the guest (a lone vcpu "
                         "that cedes takes the whole core to the host)")
    progs = [(Busy(60.0),)] + [(Busy(5.0), Idle(15.0), Busy(10.0))] * (config.vcpus - 1)
    return simulate(config, Workload(tuple(progs), name="registers across nap"), until=60)


def registers_view(source: Trace | Config, *, vcpu: int | None = None, occurrence: int = 0,
                   title: str | None = None, fig: Figure | None = None) -> Figure:
    """The non-volatile registers of a vcpu across one nap: in the thread before nap, in
    ``vcpu->arch`` (saved by kvmppc_h_cede), in the thread while napping (nap loses
    them), after ``kvm_end_cede`` reloads them, and what the guest code finds when it
    runs again — each compared with what the guest last wrote.  Red cells are wrong
    values: with ablation ``no_nv_save`` nothing is saved and the guest finds stale
    registers.

    ``source`` is a trace holding a nap, or a Config: then a small demonstration run is
    simulated (vcpu 1 naps while vcpu 0 keeps the core in the guest).  The model keeps
    one tag per register file (the number of the busy burst that last wrote it); every
    cell shows the tag of that register.
    """
    from .config import Config as _Config
    if isinstance(source, _Config):
        trace = _register_demo(source)
        if vcpu is None:
            vcpu = 1
    else:
        trace = source
    mo = nap_moments(trace, vcpu=vcpu, occurrence=occurrence)
    cfg = trace.config
    checked = {"saved", "reloaded", "guest"}
    rows = [
        ("before", "in the thread before nap", mo.before, f"before step {mo.nap_step + 1}"),
        ("saved", "saved in vcpu->arch by kvmppc_h_cede", mo.saved,
         f"step {mo.nap_step + 1}"),
        ("during", "in the thread while napping", mo.during, "nap does not keep them"),
        ("reloaded", "reloaded by kvm_end_cede", mo.after_wake,
         f"step {mo.wake_step + 1}" if mo.wake_step is not None else "never woke"),
        ("guest", "what the guest code finds", mo.guest_sees,
         f"step {mo.resume_step + 1}" if mo.resume_step is not None
         else "never ran again"),
        ("expected", "what the guest last wrote", mo.expected, "the right values"),
    ]
    n_reg, cw = 18, 2.0
    W = 121.0
    x_lab, x_g, x_f, x_v = 1.0, 29.0, 67.0, 105.0
    rh = 4.4
    H = 9.0 + rh * len(rows) + 3.5
    if fig is None:
        fig = _new_figure((W / 10, H / 10))
    else:  # the layout is in tenths of an inch
        fig.set_size_inches(W / 10, H / 10)
    target = (fig, _tenths(fig, H))
    texts: list[tuple[float, float, str, dict]] = []

    def text(x: float, y: float, s: str, **kw: Any) -> None:
        texts.append((x, y, s, kw))

    if title is None:
        abl = ("  —  ablation no_nv_save: kvmppc_h_cede saves nothing"
               if "no_nv_save" in cfg.ablations else "")
        title = f"Non-volatile registers of vcpu {mo.vcpu} across nap on thread {mo.thread}{abl}"
    text(x_lab, 2.2, title, fontsize=11, fontweight="bold", va="center")
    text(x_g + n_reg * cw / 2, 6.0, "GPRs r14 … r31", ha="center", fontsize=8.5,
            fontweight="bold")
    text(x_f + n_reg * cw / 2, 6.0, "FPRs f14 … f31 (and VMX/VSX)", ha="center",
            fontsize=8.5, fontweight="bold")
    for r in range(n_reg):
        for x in (x_g, x_f):
            text(x + (r + 0.5) * cw, 7.9, str(14 + r), ha="center", va="center",
                    fontsize=5.5, color="#777777")
    exp = mo.expected
    good, bad, lost, plain = "#CDE8C9", "#F4A6A6", "#E4E4E4", "#F7F7F7"
    boxes: list[tuple] = []
    y = 9.0
    for key, label, vals, note in rows:
        text(x_lab, y + rh / 2 - 0.7, label, fontsize=8.5, va="center")
        text(x_lab, y + rh / 2 + 1.1, note, fontsize=7, va="center", color="#666666")
        wrong = False
        for g, x in ((0, x_g), (1, x_f)):
            val = None if vals is None else vals[g]
            if val is None:
                fc, txt = "white", ""
            elif val == REGS_LOST:
                fc, txt = lost, "?"
            elif key in checked:
                fc, txt = (good if val == exp[g] else bad), str(val)
                wrong |= val != exp[g]
            else:
                fc, txt = plain, str(val)
            for r in range(n_reg):
                boxes.append((x + r * cw, y + 0.5, cw, rh - 1.3, fc, "#999999"))
                if txt:
                    text(x + (r + 0.5) * cw, y + rh / 2 - 0.15, txt, ha="center",
                            va="center", fontsize=6.5, family=_MONO,
                            color="#880000" if fc == bad else "#333333")
        if key in checked and vals is not None:
            verdict, colour = ("✗ corrupted", "#AA0000") if wrong else ("✓ correct",
                                                                         "#117733")
            if key == "saved" and wrong:
                verdict = "✗ stale copy"
            text(x_v, y + rh / 2 - 0.15, verdict, fontsize=8.5, va="center",
                    color=colour, fontweight="bold")
        elif key == "during":
            text(x_v, y + rh / 2 - 0.15, "lost in nap", fontsize=8.5, va="center",
                    color="#555555")
        y += rh
    _boxes(target, boxes, lw=0.4)
    text(x_lab, y + 1.6, "The model keeps one tag per register file: the number of "
         "the busy burst that last wrote it (? = contents lost).", fontsize=7.5,
         color="#444444", va="center")
    _draw_texts(target, texts)
    _displayable(fig)
    return fig


# =============================================================================================
# The three walk-throughs the chapters' widgets drive: nap save/restore (ch03), the race
# between a cede and an exit (ch06), interrupt delivery on re-entry (ch05).  Each runs the
# model (a small simulation, or the real step functions on a state from one), never a table
# of outcomes, so the pictures cannot drift from the code.
# =============================================================================================

def _nap_demo(save: bool, compute: bool) -> Trace:
    """vcpu 0 computes for 60 µs; vcpus 1-3 (optionally) compute a 5 µs burst, idle for
    15 µs with their timer armed and compute again; ablation ``no_nv_save`` if not
    ``save``."""
    from .config import Config as _Config
    from .guest import Busy, Idle, Workload
    from .sim import simulate
    cfg = _Config() if save else _Config(ablations={"no_nv_save"})
    idle = (Busy(5.0), Idle(15.0), Busy(10.0)) if compute else (Idle(15.0), Busy(10.0))
    wl = Workload(((Busy(60.0),), *(idle,) * (cfg.vcpus - 1)),
                  name="nap save/restore" + ("" if compute else ", no burst before the cede"))
    return simulate(cfg, wl, until=60)


def nap_save_restore(*, save: bool = True, compute_before_cede: bool = True,
                     fig: Figure | None = None) -> Figure:
    """The nap walk-through of chapter 3 as one call: simulate vcpu 1 napping while vcpu 0
    keeps the core in the guest and draw its registers across the nap
    (:func:`registers_view`): what the thread holds before ``nap``, what
    ``kvmppc_h_cede`` saved in ``vcpu->arch`` (``Vcpu.gpr_saved``/``fpr_saved``), what nap
    leaves (:data:`~kvmcede.state.REGS_LOST`), what ``kvm_end_cede`` reloads and what the
    guest finds.

    ``save=False`` runs ablation ``no_nv_save``.  ``compute_before_cede=False`` drops the
    burst vcpu 1 computes before it cedes: then the stale copy happens to be right, and
    the missing save goes unnoticed (chapter 3, exercise 3).
    """
    _check_bool("save", save)
    _check_bool("compute_before_cede", compute_before_cede)
    trace = _nap_demo(save, compute_before_cede)
    what = "save on" if save else "ablation no_nv_save: nothing saved"
    burst = "computes, then cedes" if compute_before_cede else "cedes without computing first"
    return registers_view(trace, vcpu=1, fig=fig,
                          title=f"vcpu 1 {burst}; {what}")


#: The offsets of the exit race's slider: B's MMIO access minus C's H_CEDE, in µs
#: (real-mode steps are 0.1 µs apart in the cost model: a half-step grid).
RACE_OFFSETS_US: tuple[float, ...] = tuple(round(-0.4 + 0.05 * k, 2) for k in range(21))

#: The outcomes of the exit race, with their label and colour.
RACE_OUTCOMES: dict[str, tuple[str, str]] = {
    "before": ("exit first: HDEC takes C out of guest code before it cedes", "#BBBBBB"),
    "recheck": ("napper skips nap: its re-check sees the exit", "#88CCEE"),
    "both": ("napper skips nap: IPI'd, and its re-check sees the exit", "#44AA99"),
    "ipi": ("napper IPI'd: it naps, wakes and joins the exit", "#117733"),
    "lost": ("lost wake-up: C naps un-IPI'd, the primary waits", "#CC3311"),
    "other": ("another order (see the steps)", "#DDCC77"),
}

_RACE_SHORT = {"before": "exit first", "recheck": "re-check: skips nap",
               "both": "IPI + re-check: skips nap", "ipi": "IPI wakes the napper",
               "lost": "lost wake-up", "other": "other"}

_RACE_KINDS = {
    1: ("mmio_access", "hdec_soon", "hdec_poke", "ipi"),
    2: ("H_CEDE", "kvmppc_h_cede", "nap", "kvm_start_guest", "kvm_end_cede",
        "hcall_real_fallback", "hdec_soon", "kvmppc_interrupt"),
    0: ("kvmppc_interrupt", "hdec_soon", "switch_to_host"),
}


@dataclass(frozen=True)
class ExitRace:
    """One run of the race between C's cede and B's exit (:func:`exit_race`).

    ``offset_us`` is the slider's value (B's busy burst minus C's); ``measured_us`` the
    offset in the trace (B's ``mmio_access`` minus C's ``H_CEDE``; the slider's value if
    C never cedes in the run).  ``outcome`` is a key
    of :data:`RACE_OUTCOMES`; ``rows`` are the kernel events of threads 0-2 around the
    race, ``(µs, thread, kind, detail)``; ``exit_us`` is how long the whole-core exit took
    (None: the core had not left the guest by the end of the run)."""

    offset_us: float
    ablations: tuple[str, ...]
    outcome: str
    measured_us: float
    rows: tuple[tuple[float, int, str, str], ...]
    exit_us: float | None
    until_us: float
    c_timer_us: float
    trace: Trace

    @property
    def label(self) -> str:
        """The outcome in words."""
        return RACE_OUTCOMES[self.outcome][0]


_RACE_ABLATIONS = ("no_ipi_on_exit", "no_exit_recheck")


def _check_race(offset_us: object, ablations: object) -> tuple[float, tuple[str, ...]]:
    lo, hi = RACE_OFFSETS_US[0], RACE_OFFSETS_US[-1]
    if not is_finite(offset_us) or not lo <= offset_us <= hi:
        raise ValueError(f"offset_us: got {_v(offset_us)}; allowed: a number from {lo:g} "
                         f"to {hi:g} (µs)")
    if isinstance(ablations, str) or not all(a in _RACE_ABLATIONS for a in ablations):
        raise ValueError(f"ablations: got {_v(ablations)}; allowed: a collection of "
                         f"{list(_RACE_ABLATIONS)}")
    return round(float(offset_us), 6), tuple(a for a in _RACE_ABLATIONS if a in ablations)


def exit_race(offset_us: float = 0.15, ablations: Any = ()) -> ExitRace:
    """Run scenario S12 with B's exit moved by ``offset_us`` against C's cede and say what
    happened (``ablations``: any of ``no_ipi_on_exit``, ``no_exit_recheck``).

    C (vcpu 2, thread 2) computes 10 µs and cedes with a 2 ms timer; B (vcpu 1, thread 1)
    computes 10 µs + ``offset_us`` and makes an MMIO access, whose exit must take every
    thread out; A and D compute.  The outcome is read from the trace.  The default,
    0.15 µs, is S12 itself.
    """
    offset_us, ablations = _check_race(offset_us, ablations)
    return _exit_race(offset_us, ablations)


_RACE_CACHE: dict[tuple, ExitRace] = {}


def _exit_race(offset_us: float, ablations: tuple[str, ...]) -> ExitRace:
    key = (offset_us, ablations)
    hit = _RACE_CACHE.get(key)
    if hit is not None:
        return hit
    from .guest import Busy, Workload
    from .scenarios import scenario
    from .sim import simulate
    s12 = scenario("S12")
    progs = list(s12.workload.programs)
    c_busy = progs[2][0].us
    progs[1] = (Busy(c_busy + offset_us), *progs[1][1:])
    tr = simulate(s12.config.replace(ablations=set(ablations)),
                  Workload(tuple(progs), name=f"S12, B's exit moved to {offset_us:+g} µs"),
                  until=s12.until_us)
    ev = tr.kernel_events()
    us = tr.us
    # C's H_CEDE (it never comes while the core is in the guest if the exit was first:
    # then the slider's offset stands)
    mmio = next(us(e.time) for e in ev if e.kind == "mmio_access" and e.vcpu == 1)
    cede = next((us(e.time) for e in ev if e.kind == "H_CEDE" and e.vcpu == 2),
                mmio - offset_us)
    t_exit = next(e.time for e in ev if e.kind == "exit")
    t_switch = next((e.time for e in ev if e.kind == "switch_to_host" and e.time > t_exit),
                    None)
    end = tr.end if t_switch is None else t_switch
    during = [e for e in ev if t_exit <= e.time <= end]
    c_ev = [e for e in during if e.thread == 2]
    ipi_c = any(e.kind == "ipi" and e.arg == 2 for e in during)
    # C's nap may begin just before the exit does
    napped = any(e.kind == "nap" and e.thread == 2 and us(e.time) >= cede and e.time <= end
                 for e in ev)
    if any(e.kind == "kvmppc_interrupt" for e in c_ev):
        outcome = "before"
    elif any(e.kind == "kvmppc_h_cede" and "exit already in progress" in e.detail
             for e in c_ev):
        outcome = "both" if ipi_c else "recheck"
    elif napped and ipi_c:
        outcome = "ipi"
    elif napped and t_switch is None:
        outcome = "lost"
    else:
        outcome = "other"
    t0 = min(cede, mmio) - 0.15
    rows = tuple((us(e.time), e.thread, e.kind, e.detail) for e in ev
                 if us(e.time) >= t0 and e.time <= end and e.kind in
                 _RACE_KINDS.get(e.thread, ()) and (e.thread != 0 or e.time >= t_exit))
    last = tr.state_after(len(tr.steps))
    r = ExitRace(offset_us=offset_us, ablations=ablations, outcome=outcome,
                 measured_us=round(mmio - cede, 3), rows=rows,
                 exit_us=None if t_switch is None else round(us(t_switch - t_exit), 3),
                 until_us=s12.until_us, c_timer_us=us(last.vcpus[2].dec_expires), trace=tr)
    if len(_RACE_CACHE) > 512:
        _RACE_CACHE.clear()
    _RACE_CACHE[key] = r
    return r


def exit_race_outcomes(ablations: Any = ()) -> list[tuple[float, str]]:
    """The outcome at every slider offset (:data:`RACE_OFFSETS_US`)."""
    _check_race(0.0, ablations)
    return [(d, exit_race(d, ablations).outcome) for d in RACE_OFFSETS_US]


def exit_race_window(offset_us: float = 0.15, *, no_ipi_on_exit: bool = False,
                     no_exit_recheck: bool = False, fig: Figure | None = None) -> Figure:
    """The race of chapter 6 at one offset: the outcome at every offset of the window
    (a strip, the current one framed), then the kernel steps of B's exit (thread 1), C's
    cede (thread 2) and the primary (thread 0) in time order, the pivots of the race
    shaded: C setting its ``napping_threads`` bit and re-checking the exit count, B
    counting itself out and reading the mask to IPI the nappers.
    """
    _check_bool("no_ipi_on_exit", no_ipi_on_exit)
    _check_bool("no_exit_recheck", no_exit_recheck)
    abl = tuple(a for a, on in zip(_RACE_ABLATIONS, (no_ipi_on_exit, no_exit_recheck),
                                   strict=True) if on)
    r = exit_race(offset_us, abl)
    strip = exit_race_outcomes(abl)
    rows = list(r.rows)
    tail = None
    if r.exit_us is None:
        tail = (f"… at {r.until_us:g} µs the primary still waits in hdec_soon for C, which "
                f"naps until its own timer at {r.c_timer_us:,.1f} µs")
    W, rh = 110.0, 3.3
    top = 25.0
    H = top + rh * (len(rows) + (2 if tail else 1)) + 2.0
    if fig is None:
        fig = _new_figure((W / 10, H / 10))
    else:
        fig.set_size_inches(W / 10, H / 10)
    target = (fig, _tenths(fig, H))
    texts: list[tuple[float, float, str, dict]] = []
    boxes: list[tuple] = []

    def text(x: float, y: float, s: str, **kw: Any) -> None:
        texts.append((x, y, s, kw))

    abl_txt = ("  —  ablation " + " + ".join(abl)) if abl else ""
    text(1, 2.2, f"B's exit vs C's cede (S12): B's MMIO access {r.measured_us:+.2f} µs "
         f"after C's H_CEDE{abl_txt}", fontsize=10.5, fontweight="bold")
    label, colour = RACE_OUTCOMES[r.outcome]
    extra = (f" (whole-core exit {r.exit_us:.1f} µs)" if r.exit_us is not None
             else " (the core never leaves the guest)")
    text(1, 6.0, "outcome: " + label + extra, fontsize=9.5, fontweight="bold",
         color="#AA0000" if r.outcome == "lost" else "#222222")
    x0, cw = 18.0, (W - 20.0) / len(strip)
    for k, (d, o) in enumerate(strip):
        cur = abs(d - r.offset_us) < 1e-9
        boxes.append((x0 + k * cw, 9.0, cw, 4.0, RACE_OUTCOMES[o][1],
                      "#000000" if cur else "#FFFFFF"))
    # the current offset, framed (also between two grid points)
    kx = x0 + (r.offset_us - RACE_OFFSETS_US[0]) / 0.05 * cw
    boxes.append((kx + 0.2, 8.5, cw - 0.4, 5.0, "none", "#000000"))
    text(1, 11.0, "every offset:", fontsize=7.5, color="#444444")
    for d in (RACE_OFFSETS_US[0], 0.0, RACE_OFFSETS_US[-1]):
        k = (d - RACE_OFFSETS_US[0]) / 0.05
        text(x0 + (k + 0.5) * cw, 15.0, f"{d:+.2f} µs", ha="center", fontsize=6.5,
             color="#555555")
    seen = []
    for _d, o in strip:
        if o not in seen:
            seen.append(o)
    lx = 1.0
    for o in seen:
        boxes.append((lx, 17.0, 2.0, 2.0, RACE_OUTCOMES[o][1], "#999999"))
        short = _RACE_SHORT[o]
        text(lx + 2.6, 18.0, short, fontsize=6.8)
        lx += 4.0 + 1.35 * len(short)
    cols = ((1.0, "µs"), (9.0, "thread 1: B exits (MMIO)"), (42.0, "thread 2: C cedes"),
            (78.0, "thread 0: primary"))
    for x, h in cols:
        text(x, top - 1.4, h, fontsize=8, fontweight="bold")
    xcol = {1: 9.0, 2: 42.0, 0: 78.0}
    widths = {1: 33, 2: 36, 0: 32}
    pivots = ("napping_threads |=", "exit count still 0", "exit already in progress",
              "first exiter", "IPI to napping", "NOT sending")
    y = top
    for t, thr, kind, detail in rows:
        if any(p in detail for p in pivots):
            boxes.append((xcol[thr] - 0.4, y + 0.2, 33.0, rh - 0.4, "#FFF2B3", "none"))
        text(1.0, y + rh / 2, f"{t:.2f}", fontsize=7, family=_MONO, color="#555555")
        s = kind if not detail else f"{kind}: {detail}"
        text(xcol[thr], y + rh / 2 - 0.55, _ellipsize(kind, widths[thr]), fontsize=7.3,
             fontweight="bold", family=_MONO)
        text(xcol[thr], y + rh / 2 + 0.75, _ellipsize(detail, int(widths[thr] * 1.6)),
             fontsize=6.3, color="#444444")
        del s
        y += rh
    if tail:
        text(1.0, y + rh / 2, tail, fontsize=8, color="#AA0000", fontweight="bold")
        y += rh
    text(1.0, y + 1.0, "threads 0 and 3 (A and D) compute until the HDEC poke; thread 3 is "
         "not shown. Shaded: the accesses the race is about.", fontsize=6.8,
         color="#666666")
    _boxes(target, boxes, lw=0.8)
    _draw_texts(target, texts)
    _displayable(fig)
    return fig


_EXT_PENDING = (1 << BOOK3S_IRQPRIO_EXTERNAL)
_DEC_PENDING = (1 << BOOK3S_IRQPRIO_DECREMENTER)


@dataclass(frozen=True)
class Reentry:
    """What ``kvmppc_cede_reentry`` did for one choice of pending interrupts
    (:func:`reentry`): the vector it synthesized (0: none), whether it set ``LPCR_MER``,
    the interrupts the guest then takes in order ``(vector, how)``, the step the guest
    takes next, the source lines of the function that ran and its event."""

    inputs: dict[str, bool]
    vector: int
    mer: bool
    ceded: int
    order: tuple[tuple[int, str], ...]
    still_pending: str
    next_step: str
    lines_run: frozenset[int]
    event: str


_REENTRY_BASE: list[tuple] = []


def _reentry_base():
    """A real state at ``kvmppc_cede_reentry``: S3's thread 2 just woken from nap (its
    model, the state and the time)."""
    if not _REENTRY_BASE:
        from .scenarios import scenario
        tr = scenario("S3").run()
        k = next(j for j in range(len(tr.steps))
                 if tr.state_after(j + 1).threads[2].loc == "kvmppc_cede_reentry"
                 and tr.state_after(j + 1).vcpus[2].guest == "cede")
        _REENTRY_BASE.append((tr._model, tr.state_after(k + 1), tr._now(tr.steps[k][0])))
    return _REENTRY_BASE[0]


def reentry(*, dec_expired: bool = True, external: bool = False, msr_ee: bool = True,
            injected: bool = False) -> Reentry:
    """Run ``kvmcede.realmode.kvmppc_cede_reentry`` on thread 2 of scenario S3 as it
    wakes from nap, with vcpu 2's pending interrupts set as chosen, then the guest's
    steps until it has taken every interrupt it can.

    ``dec_expired``: DEC is negative (else armed); ``external``: an external interrupt
    is pending in ``pending_exceptions``; ``msr_ee``: the guest's MSR[EE] (H_CEDE turns
    it on; off is an entry with interrupts disabled); ``injected``: the host already
    injected an interrupt at 0x900 (a DEC that expired while the vcpu was ceded in the
    host), which leaves MSR[EE] off whatever ``msr_ee`` says.
    """
    for name, v in (("dec_expired", dec_expired), ("external", external),
                    ("msr_ee", msr_ee), ("injected", injected)):
        _check_bool(name, v)
    from .edit import Step
    from .realmode import kvmppc_cede_reentry
    from .state import DEC_ARMED, DEC_NEGATIVE
    m, s, now = _reentry_base()
    v, i = 2, 2
    pending = (_EXT_PENDING if external else 0) | (_DEC_PENDING if injected else 0)
    u = s.vcpus[v]._replace(pending_exceptions=pending, raised=pending,
                            dec=DEC_NEGATIVE if dec_expired else DEC_ARMED,
                            msr_ee=msr_ee and not injected,
                            vector=0x900 if injected else 0, at_vector=False)
    s = s._replace(vcpus=s.vcpus[:v] + (u,) + s.vcpus[v + 1:])
    code = kvmppc_cede_reentry.__code__
    lines: set[int] = set()

    def tracer(frame, event, arg):
        if frame.f_code is not code:
            return None

        def local(f, ev, a):
            if ev == "line":
                lines.add(f.f_lineno)
            return local
        return local

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        s, evs = m.apply(s, Step("thread", i, "kvmppc_cede_reentry"), now)
    finally:
        sys.settrace(old)
    ev = next(e for e in evs if e.kind == "kvmppc_cede_reentry")
    vector, mer, ceded = ev.arg, s.threads[i].mer, s.vcpus[v].ceded
    order: list[tuple[int, str]] = []
    for e in evs:
        if e.kind == "deliver":
            how = ("synthesized by kvmppc_cede_reentry" if e.arg == vector and vector
                   else "injected by the host")
            order.append((e.arg, how))
    next_step = ""
    for _ in range(8):
        steps = [st for st in m.thread_steps(s) if st.index == i]
        if not steps or steps[0].name not in ("guest_interrupt", "guest_dec"):
            next_step = steps[0].name if steps else "(none)"
            break
        s, evs = m.apply(s, steps[0], now)
        for e in evs:
            if e.kind == "deliver":
                order.append((e.arg, "mediated external (LPCR_MER) when MSR[EE] turns on"
                              if "LPCR_MER" in e.detail else
                              "decrementer taken by the guest itself (DEC < 0, MSR[EE] on)"))
    left = s.vcpus[v].pending_exceptions & (_EXT_PENDING | (1 << BOOK3S_IRQPRIO_EXTERNAL_LEVEL))
    still = []
    if left:
        still.append("external (waits in pending_exceptions"
                     + ("; LPCR_MER fires it when MSR[EE] turns on)" if s.threads[i].mer
                        else ")"))
    if s.vcpus[v].dec == DEC_NEGATIVE:
        still.append("DEC < 0 (taken when MSR[EE] turns on)")
    return Reentry(inputs={"dec_expired": dec_expired, "external": external,
                           "msr_ee": msr_ee, "injected": injected},
                   vector=vector, mer=mer, ceded=ceded, order=tuple(order),
                   still_pending="; ".join(still), next_step=next_step,
                   lines_run=frozenset(lines), event=ev.detail)


def reentry_delivery(*, dec_expired: bool = True, external: bool = False,
                     msr_ee: bool = True, injected: bool = False,
                     fig: Figure | None = None) -> Figure:
    """Chapter 5's re-entry walk-through (:func:`reentry`): on the left what is pending
    when the woken vcpu re-enters, what ``kvmppc_cede_reentry`` synthesizes, whether it
    sets ``LPCR_MER``, and the interrupts the guest then takes, in order; on the right
    the model's ``kvmppc_cede_reentry``, taken from the package, with the lines that ran
    this time highlighted."""
    import inspect

    from .realmode import kvmppc_cede_reentry
    r = reentry(dec_expired=dec_expired, external=external, msr_ee=msr_ee,
                injected=injected)
    src, first = inspect.getsourcelines(kvmppc_cede_reentry)
    body = [(first + k, ln.rstrip("\n")) for k, ln in enumerate(src)]
    # skip the docstring: from the first line after its closing quotes
    start = next(k for k, (_n, ln) in enumerate(body) if k > 0 and ln.strip().endswith('"""'))
    body = body[start + 1:]
    W, rh = 118.0, 2.55
    H = max(8.0 + rh * len(body) + 2.0, 60.0)
    if fig is None:
        fig = _new_figure((W / 10, H / 10))
    else:
        fig.set_size_inches(W / 10, H / 10)
    target = (fig, _tenths(fig, H))
    texts: list[tuple[float, float, str, dict]] = []
    boxes: list[tuple] = []

    def text(x: float, y: float, s: str, **kw: Any) -> None:
        texts.append((x, y, s, kw))

    inp = r.inputs
    ee = inp["msr_ee"] and not inp["injected"]
    text(1, 2.2, "kvmppc_cede_reentry: what a woken vcpu gets", fontsize=10.5,
         fontweight="bold")
    y = 6.5
    text(1, y, "Pending as thread 2 re-enters (S3's wake-up):", fontsize=8.5,
         fontweight="bold")
    pend = pending_names((_EXT_PENDING if inp["external"] else 0)
                         | (_DEC_PENDING if inp["injected"] else 0)) or "none"
    for lab, val in (("pending_exceptions", pend),
                     ("DEC", "negative (expired)" if inp["dec_expired"] else "armed"),
                     ("MSR[EE]", ("0 (host's injection)" if inp["injected"] and inp["msr_ee"]
                                  else "1" if ee else "0")),
                     ("already injected", "0x900 by the host" if inp["injected"] else "no")):
        y += 3.0
        text(2, y, lab, fontsize=8)
        text(20, y, val, fontsize=8, family=_MONO)
    y += 5.0
    text(1, y, "kvmppc_cede_reentry:", fontsize=8.5, fontweight="bold")
    synth = {0: "nothing synthesized", 0x500: "external synthesized at 0x500",
             0x900: "decrementer synthesized at 0x900"}[r.vector]
    for lab, val, hot in (("synthesizes", synth, bool(r.vector)),
                          ("LPCR_MER", "set" if r.mer else "clear", r.mer),
                          ("ceded", str(r.ceded), False)):
        y += 3.0
        text(2, y, lab, fontsize=8)
        text(20, y, val, fontsize=8, family=_MONO, fontweight="bold" if hot else "normal",
             color="#AA3377" if hot else "#222222")
    y += 5.0
    text(1, y, "The guest then takes, in order:", fontsize=8.5, fontweight="bold")
    if not r.order:
        y += 3.0
        text(2, y, "nothing", fontsize=8)
    for k, (vec, how) in enumerate(r.order, 1):
        y += 3.0
        boxes.append((2, y - 1.2, 6.0, 2.4, VECTOR_COLOURS.get(vec, "#BBBBBB"), "none"))
        text(5, y, f"{vec:#x}", fontsize=7, ha="center", family=_MONO, color="white",
             fontweight="bold")
        text(9, y, f"{k}. {how}", fontsize=7.5)
    if r.still_pending:
        y += 3.0
        text(2, y, "still pending: " + r.still_pending, fontsize=7.2, color="#AA0000")
    y += 3.0
    text(2, y, f"next guest step: {r.next_step}", fontsize=7.2, color="#555555")
    x0 = 54.0
    text(x0, 6.5, "kvmcede/realmode.py, kvmppc_cede_reentry (lines run: highlighted)",
         fontsize=8, fontweight="bold")
    yy = 8.5
    for n, ln in body:
        run = n in r.lines_run
        if run:
            boxes.append((x0 - 0.5, yy, W - x0 - 0.5, rh, "#D9F0D3", "none"))
        text(x0, yy + rh / 2, ln.replace("\t", "    ")[:100], fontsize=6.8, family=_MONO,
             color="#111111" if run else "#999999")
        yy += rh
    _boxes(target, boxes, lw=0.4)
    _draw_texts(target, texts)
    _displayable(fig)
    return fig


# =============================================================================================
# Comparison of the two policies
# =============================================================================================

#: Whole-core exit reasons, grouped so that every comparison has the same legend.
EXIT_GROUPS: tuple[tuple[str, str, str], ...] = (
    ("H_CEDE", "H_CEDE (whole core to the host)", "#EE6677"),
    ("kick", "host kick: interrupt, DEC, prod", "#4477AA"),
    ("HDEC", "HDEC: host timer tick", "#CCBB44"),
    ("hcall", "H_PROD / H_CONFER / MMIO", "#AA3377"),
    ("other", "other", "#BBBBBB"),
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
    policies, and every bar carries its value."""

    def __init__(self, fig: Figure, title: str | None = None, *, animated: bool = False):
        self.fig = fig
        self.dynamic: list[Any] = []
        top = 0.89 if title is not None else 0.95
        gs = fig.add_gridspec(1, 4, left=0.03, right=0.99, top=top, bottom=0.52,
                              wspace=0.25)
        xs = np.arange(2)
        self.xs = xs
        w = self.w = 0.36
        names = ["before\n(host)", "19ccb76a\n(realmode)"]

        def panel(k: int, ttl: str):
            ax = fig.add_subplot(gs[0, k])
            ax.set_title(ttl, fontsize=9.5, loc="left")
            ax.set_xticks(xs, names, fontsize=8)
            ax.set_xlim(-0.6, 1.6)
            ax.set_ylim(0, 1.32)
            ax.set_yticks([])
            for side in ("top", "right", "left"):
                ax.spines[side].set_visible(False)
            return ax

        def bars(ax, x, colour, **kw):
            bs = list(ax.bar(x, np.zeros(len(x)), kw.pop("width", 0.6), color=colour, **kw))
            self.dynamic.extend(bs)
            return bs

        def label(ax, x, fontsize=7.5):
            t = ax.text(x, 0, "", ha="center", va="bottom", fontsize=fontsize)
            self.dynamic.append(t)
            return t

        def legend_below(ax, handles):
            ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper left",
                      bbox_to_anchor=(-0.02, -0.3), handlelength=1.0, borderaxespad=0)

        # 1. whole-core exits by reason group (stacked)
        ax = panel(0, "whole-core exits")
        self.exit_bars = {g: bars(ax, xs, c, edgecolor="white", linewidth=0.5)
                          for g, _, c in EXIT_GROUPS}
        self.exit_labels = [label(ax, x) for x in xs]
        legend_below(ax, [Patch(facecolor=c, label=lab) for _, lab, c in EXIT_GROUPS[:4]])
        # 2. IPIs
        ax = panel(1, "IPIs")
        self.ipi_bars = (bars(ax, xs - w / 2, "#222222", width=w),
                         bars(ax, xs + w / 2, "#999999", width=w))
        self.ipi_labels = ([label(ax, x - w / 2) for x in xs],
                           [label(ax, x + w / 2) for x in xs])
        legend_below(ax, [Patch(facecolor="#222222", label="to napping threads (exit path)"),
                          Patch(facecolor="#999999", label="host kick IPIs (POWER7: to thread 0)")])
        # 3. lost guest time
        ax = panel(2, "guest time lost to other\nvcpus' idleness")
        self.lost_bars = bars(ax, xs, [POLICY_COLOURS[p] for p in _POLICIES])
        self.lost_labels = [label(ax, x) for x in xs]
        ax.text(0.0, -0.3, "time vcpus with work spent out of the guest\nbecause another "
                "vcpu idled (µs, all vcpus)", transform=ax.transAxes, fontsize=7,
                va="top", color="#444444")
        # 4. latency
        ax = panel(3, "interrupt delivery latency")
        self.lat_bars = tuple(bars(ax, xs + (j - 0.5) * w, VECTOR_COLOURS[vec], width=w)
                              for j, vec in enumerate((0x500, 0x900)))
        self.lat_labels = tuple([label(ax, x + (j - 0.5) * w, 7) for x in xs]
                                for j in range(2))
        self.lat_max = ax.plot([], [], ls="", marker="_", ms=10, mew=1.6, color="black")[0]
        self.dynamic.append(self.lat_max)
        legend_below(ax, [Patch(facecolor=VECTOR_COLOURS[0x500], label="external: mean µs"),
                          Patch(facecolor=VECTOR_COLOURS[0x900],
                                label="decrementer: mean µs"),
                          Line2D([], [], ls="", marker="_", ms=9, mew=1.6, color="black",
                                 label="max")])
        # 5. time split
        gs2 = fig.add_gridspec(1, 1, left=0.13, right=0.99, top=0.27, bottom=0.1)
        ax = fig.add_subplot(gs2[0, 0])
        self.split_ax = ax
        colours = {"guest": VCPU_COLOURS[0], **{a: ACTIVITY_COLOURS[a] for a, _ in _SPLIT[1:]}}
        self.split_bars = {}
        self.split_labels = {}
        for act, _ in _SPLIT:
            bs = list(ax.barh([0, 1], [0, 0], 0.62, color=colours[act],
                              hatch=_NAP_HATCH if act == "nap" else None,
                              edgecolor="#6F87B5" if act == "nap" else "white",
                              linewidth=0.5))
            self.dynamic.extend(bs)
            self.split_bars[act] = bs
            ts = [ax.text(0, y, "", ha="center", va="center", fontsize=8,
                          color="white" if act in ("guest", "out") else "black")
                  for y in (0, 1)]
            self.dynamic.extend(ts)
            self.split_labels[act] = ts
        ax.set_yticks([0, 1], ["before (host)", "19ccb76a (realmode)"], fontsize=8.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(1.5, -0.5)
        ax.xaxis.set_major_formatter(_percent())
        ax.tick_params(axis="x", labelsize=7.5)
        ax.set_title("how the vcpus spent their time", fontsize=9.5, loc="left")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.legend(handles=[Patch(facecolor=colours[a], hatch=_NAP_HATCH if a == "nap"
                                 else None, edgecolor="#6F87B5" if a == "nap" else "white",
                                 label=lab) for a, lab in _SPLIT],
                  fontsize=7.5, frameon=False, ncol=len(_SPLIT), loc="upper center",
                  bbox_to_anchor=(0.45, -0.28))
        self.title = fig.text(0.01, 0.985, title or "", fontsize=11, ha="left", va="top")
        self.dynamic.append(self.title)
        for a in self.dynamic:
            a.set_animated(animated)

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
        for j, off in ((0, -w / 2), (1, w / 2)):
            for p in range(2):
                h = vals[j][p] / scale
                self.ipi_bars[j][p].set_height(h)
                put(self.ipi_labels[j][p], xs[p] + off, h, f"{vals[j][p]:,}")
        # lost guest time
        lost = [m.lost_guest_us for m in ms]
        scale = max(max(lost), 1e-9)
        for p in range(2):
            h = lost[p] / scale if max(lost) > 0 else 0.0
            self.lost_bars[p].set_height(h)
            put(self.lost_labels[p], xs[p], h, f"{lost[p]:,.0f}")
        # latency
        kinds = ("external", "decrementer")
        lat = [[m.latency.get(k, {}) for m in ms] for k in kinds]
        scale = max([1e-9, *(d.get("max", 0.0) for row in lat for d in row)])
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


# =============================================================================================
# Explorer result
# =============================================================================================

def explorer_result(result: Any, *, fig: Figure | None = None) -> Figure:
    """The explorer's verdict as a figure: what was explored and, for a violation, which
    property broke, and the shortest counterexample's timeline."""
    v = getattr(result, "violation", None)
    tr = getattr(v, "trace", None) if v is not None else None
    head_h = 1.15
    handles: list[Any] = []
    if tr is not None:
        d = _timeline_data(tr)
        handles = _trace_handles(d, False)
        ncol = min(_LEGEND_COLS, max(1, len(handles)))
        leg_h = 0.19 * -(-len(handles) // ncol) + 0.12
        rows_h = _ROW_IN * (1 + len(d.threads))
        h = head_h + 0.2 + rows_h + 0.5 + leg_h
    else:
        h = head_h
    if fig is None:
        fig = _new_figure((10.0, h))
    else:
        fig.set_size_inches(10.0, h)
    head = fig.add_axes((0, 1 - head_h / h, 1, head_h / h))
    head.set_axis_off()
    head.set_xlim(0, 1)
    head.set_ylim(0, 1)
    finished = getattr(result, "finished", True)
    # What stopped an unfinished run: the explorer says (state or time limit, Ctrl-C, or
    # the first violation with stop_at_first).
    stop = result.stop_reason() if hasattr(result, "stop_reason") else "stopped early"
    stats = (f"{result.states:,} states, {result.transitions:,} transitions explored in "
             f"{result.seconds:.1f} s" + ("" if finished else f" ({stop}: not "
                                                              "exhaustive)"))
    if v is None:
        verdict = ("✓ every property holds in every reachable state" if finished
                   else "no violation found in the explored states")
        colour = "#117733" if finished else "#997700"
        msg = ""
    else:
        verdict = f"✗ {v.kind} '{v.name}' violated"
        colour = "#AA2222"
        # Breadth-first: a shortest counterexample, unless the run stopped early at a
        # liveness dead end (a shorter one may end in a state that still has steps).
        first = not finished and v.kind == "liveness"
        msg = (f"{v.message}  ({'first dead end found' if first else 'shortest counterexample'}"
               f": {v.depth} steps)")
    head.text(0.01, 0.76, verdict, fontsize=13, fontweight="bold", color=colour,
              va="center")
    head.text(0.01, 0.42, stats, fontsize=9, va="center")
    if msg:
        head.text(0.01, 0.14, _ellipsize(msg, 150), fontsize=8.5, va="center",
                  color="#444444")
    if tr is not None:
        bottom = 0.5 + leg_h
        ax = fig.add_axes((1.0 / 10, bottom / h, 1 - 1.2 / 10, rows_h / h))
        timeline(tr, ax=ax, title="", legend=False)
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.01),
                   ncol=ncol, fontsize=7.5, frameon=False, handlelength=1.6,
                   columnspacing=1.4)
    return fig


def _ellipsize(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
