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
(:func:`to_png`, :func:`figure_strings` lists every string a figure shows,
:func:`figure_fontsizes` with its size).

Where things are (one module per kind of figure, as matplotlib keeps one per kind of
artist; every public name is imported here, so ``kvmcede.plots.X`` is the way to use them):
:mod:`~kvmcede.plots.style` (colours, labels, argument checks), :mod:`~kvmcede.plots.render`
(figures, fast text, PNG output, :func:`figure_strings`), :mod:`~kvmcede.plots.steps`
(step explanations), :mod:`~kvmcede.plots.timeline_data` and
:mod:`~kvmcede.plots.timelines`, :mod:`~kvmcede.plots.state_views`,
:mod:`~kvmcede.plots.registers`, :mod:`~kvmcede.plots.walkthroughs` (chapters 3, 5, 6),
:mod:`~kvmcede.plots.comparisons`, :mod:`~kvmcede.plots.explorer`.  The modules' names are
plural so that none is hidden by the function of the same name (``plots.timeline`` is the
function).

Text-heavy figures are drawn with their labels as glyph outlines (see
:class:`_PathTextRenderer`): since matplotlib 3.11 the Agg backend rasterizes text
glyph by glyph in Python, which would make a state view take a quarter of a second.

Colours are from Paul Tol's colour-blind-safe schemes and are the same in every figure:
a vcpu running guest code always has its vcpu colour, napping is always pale blue with
dots, exiting is always red (see :data:`ACTIVITY_COLOURS`, :data:`VCPU_COLOURS`).
"""

from __future__ import annotations

from .comparisons import (
    EXIT_GROUPS,
    ComparisonArtists,
    comparison,
    exit_group,
)
from .explorer import (
    explorer_result,
)
from .registers import (
    NapMoments,
    nap_moments,
    registers_view,
)
from .render import (
    fast_canvas,
    figure_fontsizes,
    figure_strings,
    rgba_to_png,
    show,
    to_png,
)
from .state_views import (
    pending_names,
    state_view,
)
from .steps import (
    STEP_EXPLANATIONS,
    explain_step,
)
from .style import (
    ACTIVITY_COLOURS,
    ACTIVITY_LABELS,
    POLICY_COLOURS,
    VCPU_COLOURS,
    VECTOR_COLOURS,
    WIDTH_RANGE,
)
from .timeline_data import (
    step_window,
)
from .timelines import (
    redraw_timeline,
    step_position,
    timeline,
    timeline_end,
    timeline_legend,
)
from .walkthroughs import (
    RACE_OFFSETS_US,
    RACE_OUTCOMES,
    ExitRace,
    Reentry,
    exit_race,
    exit_race_outcomes,
    exit_race_window,
    nap_save_restore,
    reentry,
    reentry_delivery,
)
from .walkthroughs import (
    _nap_demo as _nap_demo,
)

__all__ = [
    "ACTIVITY_COLOURS",
    "ACTIVITY_LABELS",
    "POLICY_COLOURS",
    "VECTOR_COLOURS",
    "WIDTH_RANGE",
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
    "figure_fontsizes",
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

# Names that ``kvmcede.plots`` showed before it became a package (it imported them for its
# own use).  Kept so that nothing reaching for them breaks; they are not part of the API.
import bisect as bisect
import struct as struct
import sys as sys
import weakref as weakref
import zlib as zlib
from dataclasses import dataclass as dataclass
from typing import TYPE_CHECKING as TYPE_CHECKING
from typing import Any as Any
from typing import ClassVar as ClassVar

import numpy as np  # noqa: F401  (see above)
from matplotlib.backend_bases import RendererBase as RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg as FigureCanvasAgg
from matplotlib.backends.backend_agg import RendererAgg as RendererAgg
from matplotlib.collections import LineCollection as LineCollection
from matplotlib.figure import Figure as Figure
from matplotlib.font_manager import FontProperties as FontProperties
from matplotlib.lines import Line2D as Line2D
from matplotlib.patches import Patch as Patch
from matplotlib.textpath import TextToPath as TextToPath

from ..config import is_finite as is_finite
from ..config import is_number as is_number
from ..sim import thread_activity as thread_activity
from ..sim import vcpu_activity as vcpu_activity
from ..state import (
    BOOK3S_IRQPRIO_DECREMENTER as BOOK3S_IRQPRIO_DECREMENTER,
)
from ..state import (
    BOOK3S_IRQPRIO_EXTERNAL as BOOK3S_IRQPRIO_EXTERNAL,
)
from ..state import (
    BOOK3S_IRQPRIO_EXTERNAL_LEVEL as BOOK3S_IRQPRIO_EXTERNAL_LEVEL,
)
from ..state import (
    REGS_LOST as REGS_LOST,
)
from ..state import (
    VCORE_STATE_NAMES as VCORE_STATE_NAMES,
)
from ..state import (
    VCPU_STATE_NAMES as VCPU_STATE_NAMES,
)
from ..state import (
    Dec as Dec,
)
from ..state import (
    Machine as Machine,
)
from ..state import (
    entry_count as entry_count,
)
from ..state import (
    exit_count as exit_count,
)
