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
