"""Making figures and turning them into pixels: the display convention, fast text as
glyph outlines, PNG output, and :func:`figure_strings`."""

from __future__ import annotations

import struct
import sys
import zlib
from typing import Any, ClassVar

import numpy as np
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

from ..config import is_number
from ..config import show as _v

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
    (``kvmcede_strings``) for :func:`figure_strings`, and their sizes in points
    (``kvmcede_fontsizes``) for :func:`figure_fontsizes`."""
    from matplotlib.collections import PathCollection
    from matplotlib.path import Path

    groups: dict[str, tuple[list, list]] = {}
    strings = []
    sizes = []
    for x, y, s, kw in texts:
        strings.append(s)
        sizes.append(float(kw.get("fontsize", 8)))
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
    coll.kvmcede_fontsizes = sizes
    _add(target, coll)


def _text_width(s: str, size: float, family: str | None = None, weight: str = "normal",
                unit_pt: float = 7.2) -> float:
    """The width of ``s`` as :func:`_draw_texts` draws it, in its layout units."""
    verts, _ = _TEXT2PATH.get_text_path(_font(family, weight), s)
    return float(verts[:, 0].max()) * size / _TEXT2PATH.FONT_SCALE / unit_pt if len(verts) else 0.0


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


def figure_fontsizes(fig: Figure) -> list[tuple[str, float]]:
    """``(string, size in points)`` of every string shown in ``fig`` (text artists, tick
    labels, legends, and the labels drawn as outlines): what a legibility test reads."""
    from matplotlib.text import Text

    out = [(t.get_text(), float(t.get_fontsize())) for t in fig.findobj(Text)
           if t.get_text() and t.get_visible()]
    for c in fig.findobj(lambda a: hasattr(a, "kvmcede_strings")):
        out.extend(zip(c.kvmcede_strings, getattr(c, "kvmcede_fontsizes", ()), strict=False))
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
