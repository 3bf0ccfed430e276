"""Spans and markers of a trace, extracted once for the timeline figures."""

from __future__ import annotations

import bisect
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config import _is_int
from ..config import show as _v
from ..sim import thread_activity, vcpu_activity
from ..state import (
    Machine,
)
from .style import (
    _check_index,
    _check_trace,
)

if TYPE_CHECKING:
    from ..trace import Trace

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
