"""Every example in README.md runs as written, in seconds, without a traceback.

Each ``python -m kvmcede ...`` line of the README's ``bash`` blocks is run as a process;
a trailing ``# exit N`` comment gives the exit status the README promises (default 0).
The ``python`` blocks are run as scripts.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TIMEOUT = 60


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


def _cli_examples() -> list[tuple[list[str], int]]:
    out = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            if not line.startswith("python -m kvmcede"):
                continue
            command, _, comment = line.partition("#")
            m = re.search(r"exit (\d+)", comment)
            out.append((shlex.split(command)[3:], int(m.group(1)) if m else 0))
    return out


CLI_EXAMPLES = _cli_examples()


def _run(argv: list[str], what: str, tmp_path: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True,
                              timeout=TIMEOUT, env=_env())
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} did not finish in {TIMEOUT} s")


def _env() -> dict[str, str]:
    # Run the package of this checkout whatever the current directory.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg"}


def test_the_readme_has_command_line_and_python_examples():
    assert len(CLI_EXAMPLES) >= 4
    assert any(a[:1] == ["explore"] for a, _ in CLI_EXAMPLES)
    assert _blocks("python")


@pytest.mark.parametrize(("argv", "code"), CLI_EXAMPLES,
                         ids=[" ".join(a) or "(none)" for a, _ in CLI_EXAMPLES])
def test_readme_command_line_example_runs(argv, code, tmp_path):
    from kvmcede.cli import EXIT_CODES
    assert code in EXIT_CODES
    p = _run([sys.executable, "-m", "kvmcede", *argv], f"kvmcede {' '.join(argv)}",
             tmp_path)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == code, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert p.stdout.strip()


@pytest.mark.parametrize("block", _blocks("python"))
def test_readme_python_example_runs(block, tmp_path):
    p = _run([sys.executable, "-c", block], "the README's Python example", tmp_path)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip()
    if "kvmcede.explore(" in block:  # called like kvmcede.simulate, with its verdict
        assert "VIOLATED" in p.stdout


def test_the_readme_lists_every_later_kernel_change():
    from kvmcede.config import CHANGES
    for change, (version, _title, _what) in CHANGES.items():
        assert f"| `{change}` | {version} |" in README, change
    assert 'cpu="POWER9"' in README
