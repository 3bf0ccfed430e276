"""Helpers for the chapters (the book's ``kf_book``): what several chapters need, in one
place, so that no notebook pastes a helper of its own.

* :func:`show_source` shows a model function's source taken from the package, so a
  chapter that puts the model next to the kernel cannot drift from the code.
* :func:`show_events` prints an excerpt of a trace's kernel events (a few lines, not a
  dump).
* :func:`check_prose` makes the numbers a chapter's prose quotes loud when they drift: a
  number in a markdown cell followed by the invisible marker ``<!--q:NAME-->`` must equal
  the value the chapter computed for ``NAME``; the chapter's last code cell calls
  ``check_prose("NN-chapter", NAME=value, ...)``, and nbval, which re-executes every
  chapter in CI, fails on any mismatch.
* :func:`check` answers an exercise the reader can check, OSTEP-style: it computes the
  answer with the model (never a stored number) and says right or wrong, and why.

This module is presentation: the model never imports it.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .trace import Trace

__all__ = ["EXERCISES", "Exercise", "check", "check_prose", "prose_quotes", "show_events",
           "show_source"]

#: Where the chapters live in a checkout (an editable install, Binder, CI).
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

_MARK = re.compile(r"(?P<value>[-+]?[\d.,]*\d)(?P<unit>\s?(?:%|µs|us|ms|s|×)?)"
                   r"<!--q:(?P<name>[A-Za-z_][\w.-]*)-->")


def show_source(obj: Callable | type, *, title: bool = True):
    """The source of a model function or class, as the package has it.

    In Jupyter it is shown as highlighted Python (an ``IPython.display.Code`` object);
    without IPython the plain text is returned.  ``title`` adds the module and line, so
    the reader can open the file next to the kernel source.
    """
    if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)):
        raise ValueError(f"obj must be a function, method or class of kvmcede, got "
                         f"{type(obj).__name__}")
    lines, first = inspect.getsourcelines(obj)
    text = "".join(lines).rstrip() + "\n"
    if title:
        mod = inspect.getmodule(obj)
        where = (mod.__name__.replace(".", "/") + ".py") if mod else "?"
        text = f"# {where}, line {first}\n" + text
    return _Source(text)


class _Source:
    """Python source shown highlighted in Jupyter and on the site (HTML), as plain text
    elsewhere.  Unlike ``IPython.display.Code`` it offers no LaTeX form: a LaTeX output
    would make the book's pages load MathJax (from the network) for no mathematics."""

    def __init__(self, text: str) -> None:
        self.data = text

    def __repr__(self) -> str:
        return self.data

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        fmt = HtmlFormatter(noclasses=True, nobackground=True)
        return highlight(self.data, PythonLexer(), fmt)


def show_events(tr: Trace, *kinds: str, vcpu: int | None = None, start: float = 0.0,
                end: float | None = None, limit: int = 12) -> None:
    """Print at most ``limit`` kernel events of ``tr`` (only ``kinds`` if given, one
    ``vcpu``, the window ``start``..``end`` in µs), and say how many more there were."""
    if not isinstance(tr, Trace):
        raise ValueError(f"tr must be a Trace, got {type(tr).__name__}")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    lines = tr.format_events(kinds or None, start_us=start, end_us=end,
                             vcpu=vcpu).splitlines()
    head, rows = lines[0], lines[1:]
    print(head)
    for row in rows[:limit]:
        print(row)
    if len(rows) > limit:
        print(f"... and {len(rows) - limit} more")


def _markdown(chapter: str) -> str:
    if not isinstance(chapter, str) or not chapter:
        raise ValueError(f"chapter must be a notebook name such as '02-the-problem', got "
                         f"{chapter!r}")
    path = NOTEBOOKS / (chapter if chapter.endswith(".ipynb") else chapter + ".ipynb")
    if not path.exists():
        names = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
        raise ValueError(f"chapter: no notebook {path.name} in {NOTEBOOKS}; allowed: "
                         f"{names}")
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                     for c in nb["cells"] if c["cell_type"] == "markdown")


def prose_quotes(chapter: str) -> dict[str, list[str]]:
    """The numbers chapter ``chapter``'s prose quotes, by marker name (a name may be
    quoted more than once)."""
    out: dict[str, list[str]] = {}
    for m in _MARK.finditer(_markdown(chapter)):
        out.setdefault(m["name"], []).append(m["value"])
    return out


def _same(quoted: str, value: object) -> bool:
    text = quoted.replace(",", "")
    if isinstance(value, str):
        return text == value.replace(",", "")
    try:
        q = float(text)
    except ValueError:
        return False
    decimals = len(text.split(".")[1]) if "." in text else 0
    return round(float(value), decimals) == q  # the prose shows the value rounded


def check_prose(chapter: str, **values: object) -> str:
    """Check that every number the chapter's prose quotes (``123<!--q:NAME-->``) is the
    value computed for ``NAME``, and that every value given is quoted.  Raises
    ``AssertionError`` listing each mismatch; returns a one-line summary otherwise."""
    quotes = prose_quotes(chapter)
    bad = []
    for name, texts in sorted(quotes.items()):
        if name not in values:
            bad.append(f"{name}: quoted as {texts} but not computed in the chapter")
            continue
        bad += [f"{name}: the prose says {t}, the model gives {values[name]}"
                for t in texts if not _same(t, values[name])]
    bad += [f"{name}: computed but never quoted" for name in sorted(set(values) - set(quotes))]
    if bad:
        raise AssertionError(f"{chapter}: the prose and the model disagree:\n  "
                             + "\n  ".join(bad))
    return f"{len(quotes)} quoted figures agree with the model"


@dataclass(frozen=True)
class Exercise:
    """An exercise whose answer the model computes: ``answer()`` runs it; ``why`` says
    how the answer comes about (shown with the verdict)."""

    question: str
    answer: Callable[[], object]
    why: str


#: Registered exercises, by name ("ch06.3").  Chapters add theirs with :func:`exercise`.
EXERCISES: dict[str, Exercise] = {}


def exercise(name: str, question: str, why: str) -> Callable:
    """Register ``fn`` (no arguments, returns the answer) as exercise ``name``."""
    def register(fn: Callable[[], object]) -> Callable[[], object]:
        EXERCISES[name] = Exercise(question, fn, why)
        return fn
    return register


def check(name: str, answer: object) -> bool:
    """Check a reader's answer to exercise ``name``: prints right or not quite, the
    model's answer and why; returns whether it was right."""
    if name not in EXERCISES:
        raise ValueError(f"name must be one of {sorted(EXERCISES)}, got {name!r}")
    ex = EXERCISES[name]
    expected = ex.answer()
    ok = answer == expected or (isinstance(expected, float) and isinstance(answer, int | float)
                                and abs(answer - expected) <= 1e-6 * max(1.0, abs(expected)))
    verdict = "Right" if ok else f"Not quite: you said {answer!r}"
    print(f"{verdict}. The model gives {expected!r}. {ex.why}")
    return ok


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def scenario_numbers(name: str) -> str:
    """The "Numbers." sentence of scenario ``name`` in the book's scenario catalogue,
    computed by running it (a test checks that the catalogue says exactly this)."""
    from .scenarios import scenario
    from .sim import simulate

    sc = scenario(name)
    m = simulate(sc.config, sc.workload, until=sc.until_us, record="metrics")
    parts = []
    if m.whole_core_exits:
        why = ", ".join(f"{r} {n}" if n > 1 else r for r, n in m.exits_by_reason.items())
        parts.append(_count(m.whole_core_exits, "whole-core exit") + f" ({why})")
    else:
        parts.append("no whole-core exit")
    vcpu_exits = getattr(m, "vcpu_exits", 0)
    if vcpu_exits:
        parts.append(_count(vcpu_exits, "single-vcpu exit"))
    for n, one, many in ((m.ipis_to_nappers, "IPI to a napping thread",
                          "IPIs to napping threads"),
                         (m.host_ipis, "host IPI", None), (m.naps, "nap", None),
                         (m.vcore_sleeps, "vcore sleep", None),
                         (m.host_wakeups, "host wake-up", None)):
        if n:
            parts.append(_count(n, one, many))
    polls = getattr(m, "polls_succeeded", 0) + getattr(m, "polls_failed", 0)
    if polls:
        parts.append(f"{m.polls_succeeded} successful and {m.polls_failed} failed halt polls")
    for kind, d in sorted(m.latency.items()):
        if d["count"]:
            parts.append(f"{kind} delivery latency {d['mean']:.1f} µs (mean of "
                         f"{d['count']:.0f})")
    if m.lost_guest_us >= 0.05:
        parts.append(f"{m.lost_guest_us:.1f} µs of guest time lost to idleness")
    policy = "" if sc.config.policy == "realmode" else f", policy {sc.config.policy}"
    return (f"{sc.until_us:,g} µs of {sc.config.kernel}{policy}: " + "; ".join(parts)
            + ".")
