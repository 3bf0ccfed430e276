"""`kvmcede explore` as a user runs it: the real tqdm bar under a pseudo-terminal, Ctrl-C.

Every other test passes ``progress=False``; this one runs the command the way a user
types it, with stdout and stderr on a terminal, long enough (more than a second) for
the bar to appear — which once crashed with ``TypeError: bool() undefined when
iterable == total == None``.
"""

from __future__ import annotations

import os
import re
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("tqdm")
if not hasattr(os, "openpty") or sys.platform == "win32":  # pragma: no cover
    pytest.skip("needs a pseudo-terminal (os.openpty)", allow_module_level=True)

import fcntl  # noqa: E402  (POSIX only, after the skip)
import termios  # noqa: E402


def _run_in_pty(argv: list[str], timeout: float) -> tuple[int, str]:
    """Run ``python -m kvmcede *argv`` with a pseudo-terminal as stdin, stdout and stderr;
    return (exit status, everything it wrote).  Killed (and failed) after ``timeout``."""
    master, slave = os.openpty()
    # A real terminal has a size; tqdm draws nothing on one of 0 x 0 columns.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {**os.environ, "COLUMNS": "100", "LINES": "30", "TERM": "xterm"}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.Popen([sys.executable, "-m", "kvmcede", *argv], cwd=ROOT, env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                pytest.fail(f"kvmcede {' '.join(argv)} did not finish in {timeout} s; "
                            f"output so far:\n{b''.join(chunks).decode(errors='replace')}")
            ready, _, _ = select.select([master], [], [], min(left, 0.5))
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal (Linux)
                break
            if not data:
                break
            chunks.append(data)
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return rc, b"".join(chunks).decode(errors="replace")


def test_explore_shows_the_progress_bar_in_a_terminal_and_finishes_cleanly():
    # Three vcpus, reduced: about 80,000 states, a few seconds — long enough for the bar.
    rc, text = _run_in_pty(["explore", "--vcpus", "3", "--interrupts", "0", "--reduce",
                            "--no-events"], timeout=120)
    assert "Traceback" not in text, text
    assert rc == 0, text
    assert re.search(r"holds: all \d+ properties hold in every reachable state", text), text
    assert "explore:" in text and "states" in text  # the tqdm bar was drawn


def test_explore_time_limit_in_a_terminal_is_a_labelled_exit_3():
    rc, text = _run_in_pty(["explore", "--vcpus", "3", "--max-seconds", "1.5",
                            "--no-events"], timeout=120)
    assert "Traceback" not in text, text
    assert rc == 3, text
    assert "not finished" in text and "stopped by the time limit" in text


def test_ctrl_c_on_explore_prints_the_counts_reached_and_exits_130():
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvmcede", "explore", "--vcpus", "3", "--interrupts", "0",
         "--no-events", "--progress"], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
        # (a background job may inherit SIGINT ignored; Ctrl-C must reach this one)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = b""
    try:
        # Wait until the search shows progress (it runs for 20 s or more), then Ctrl-C.
        deadline = time.monotonic() + 60
        while b"states" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
        assert b"states" in seen, seen
        proc.send_signal(signal.SIGINT)
        out_b, err_b = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out, err = out_b.decode(), (seen + err_b).decode(errors="replace")
    assert "Traceback" not in err, err
    assert proc.returncode == 130, (out, err)
    assert out.startswith("not finished:") and "interrupted (Ctrl-C)" in out
    assert "interrupted after" in err
