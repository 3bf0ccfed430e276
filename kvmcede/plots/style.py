"""Colours, labels and argument checks shared by every figure of :mod:`kvmcede.plots`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import _is_int, is_finite
from ..config import show as _v

if TYPE_CHECKING:
    from ..trace import Trace

# =============================================================================================
# Colours (Paul Tol's "bright" and "high-contrast" schemes: distinguishable with the common
# colour-vision deficiencies; nap additionally carries a dot hatch)
# =============================================================================================

#: Guest code of vcpu 0, 1, 2, 3 (a vcpu keeps its colour on whichever thread it runs;
#: timelines also write "v0" .. "v3" on its bars).
VCPU_COLOURS = ("#4477AA", "#228833", "#AA3377", "#CCBB44")

#: What a hardware thread (or a vcpu, or the host) is doing; "guest" uses VCPU_COLOURS.
#: Every activity has a colour of its own, used for nothing else.  The
#: idle path is cyan (pale and dotted while napping), leaving the guest is red, a vcpu
#: kept out although it has work is orange, a vcpu ceded in the host is pale yellow.  The
#: greys are all host or hypervisor code, never guest code, and are at least 12 CIELAB
#: lightness steps apart: host kernel (near black), vcore asleep, guest entry, offline,
#: not started (white, outlined).
ACTIVITY_COLOURS: dict[str, str] = {
    "nap": "#BBCCEE",  # napping in H_CEDE, still in the guest partition
    "cede": "#66CCEE",  # real-mode kvmppc_h_cede / kvm_end_cede code
    "entry": "#AAAAAA",  # kvm_start_guest / kvmppc_hv_entry / kvmppc_cede_reentry
    "exiting": "#EE6677",  # the exit path: hdec_soon .. switch_to_host / secondary_nap
    "offline": "#DDDDDD",  # secondary_nap: the thread is offline in the host
    "host": "#333333",  # thread 0 runs the host kernel (the vcore's runner)
    # vcpu rows
    "ceded": "#EEDD88",  # ceded and out of the guest (in the host)
    "out": "#EE7733",  # out of the guest although it has work
    "userspace": "#44BB99",  # in the host for its own exit (MMIO emulation, hcall, signal)
    "stopped": "#FFFFFF",  # before its first KVM_RUN (drawn outlined)
    # host row
    "sleeping": "#777777",  # the vcore's runner sleeps on vc->wq (kvmppc_vcore_blocked)
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

#: Outline of spans drawn in white ("not started"), and of the dotted nap spans.
_STOPPED_EDGE = "#999999"
_NAP_EDGE = "#6F87B5"
#: Timeline markers: HDEC pokes and host ticks (★), IPIs from the exit path (solid
#: arrows) and from the host (dashed).
HDEC_COLOUR = "#BB5566"
#: Guest code of all vcpus together (comparisons' time split), not any one vcpu's colour.
GUEST_COLOUR = "#332288"
IPI_COLOURS = {"exit": "#000000", "host": "#555555"}

#: Colours of the two policies in comparisons (Tol high-contrast).
POLICY_COLOURS = {"host": "#DDAA33", "realmode": "#004488"}
#: Interrupt vectors: external (0x500) and decrementer (0x900).
VECTOR_COLOURS = {0x500: "#EE3377", 0x900: "#009988"}
_NAP_HATCH = "...."
_MONO = "DejaVu Sans Mono"


def _span_colour(code: tuple[str, int]) -> str:
    act, v = code
    if act == "guest":
        return VCPU_COLOURS[v % len(VCPU_COLOURS)] if v >= 0 else "#222222"
    return ACTIVITY_COLOURS[act]


def _span_edge(code: tuple[str, int]) -> str:
    """The outline of a span: dotted nap spans and white "not started" spans need one."""
    act = code[0]
    return _NAP_EDGE if act == "nap" else _STOPPED_EDGE if act == "stopped" else "white"


def _span_label(code: tuple[str, int]) -> str:
    act, v = code
    if act == "guest":
        return f"guest code: vcpu {v}"
    return ACTIVITY_LABELS[act]


def _x_unit(tr: Trace) -> str:
    return "step" if tr.source == "explore" else "µs"


# ---- argument checks (ValueError "name: got V; allowed: ...", before any drawing) ----------

#: Figure widths (inches) the plots accept.
WIDTH_RANGE = (1.0, 100.0)


def _check_trace(trace: object) -> None:
    from ..trace import Trace as _Trace
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



def _ellipsize(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
