"""The single test entry point of kvmcede: ``python -m tests.run_all``.

Stages, in order (every stage runs even if an earlier one failed):

1. ``ruff``      ``ruff check kvmcede tests benchmarks``
2. ``tests``     pytest on ``tests/`` without the browser tests: unit, property, scenario,
                 widget and environment tests. Collecting no test is a failure here.
3. ``notebooks`` ``pytest --nbval --nbval-current-env --nbval-sanitize-with
                 tests/nbval_sanitize.cfg notebooks/``: re-executes every chapter and
                 compares its outputs with the stored ones. Skipped while
                 ``notebooks/`` has no ``.ipynb``. The plugin ``tests.nbval_history`` (loaded
                 for every pytest run by pyproject's ``addopts``) makes a trailing ``;``
                 suppress a cell's result under nbval as it does in JupyterLab.
4. ``chromium``  installs Debian's chromium (``apt-get update && apt-get install -y
                 chromium``) if ``/usr/bin/chromium`` is missing and we are root;
                 if that is impossible the browser stage is skipped with the reason.
5. ``book``      ``jupyter-book build book/ --all --warningiserror --keep-going``
                 (only when notebooks exist; ``--all`` so that a stale build cannot hide
                 a warning).
6. ``browser``   ``pytest -m browser tests/browser``: the built site in chromium, and a
                 live JupyterLab session (only when notebooks exist and the book built).

Exit status is non-zero if any stage failed. The output ends with one summary line per
stage (with wall time) and a total line in pytest's form, e.g.
``TOTAL: 312 passed, 0 failed, 4 skipped``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
NO_TESTS_COLLECTED = 5  # pytest's exit code


@dataclass
class Counts:
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0

    def add(self, other: Counts) -> None:
        self.passed += other.passed
        self.failed += other.failed
        self.errors += other.errors
        self.skipped += other.skipped

    def __str__(self) -> str:
        text = f"{self.passed} passed, {self.failed + self.errors} failed"
        return text + (f", {self.skipped} skipped" if self.skipped else "")


@dataclass
class Stage:
    name: str
    status: str = "not run"  # passed | failed | skipped
    seconds: float = 0.0
    detail: str = ""
    counts: Counts | None = None
    notes: list[str] = field(default_factory=list)


def banner(text: str) -> None:
    print(f"\n{'=' * 20} {text} {'=' * max(0, 58 - len(text))}", flush=True)


def run(cmd: list[str], **kwargs) -> int:
    """Run a command with live output; return its exit code."""
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=REPO, check=False, **kwargs).returncode


def junit_counts(path: Path) -> Counts | None:
    """Test counts from a pytest --junitxml report (None if there is none)."""
    if not path.exists():
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = Counts()
    for suite in suites:
        tests = int(suite.get("tests", 0))
        failed = int(suite.get("failures", 0))
        errors = int(suite.get("errors", 0))
        skipped = int(suite.get("skipped", 0))
        counts.add(Counts(tests - failed - errors - skipped, failed, errors, skipped))
    return counts


def run_pytest_stage(stage: Stage, args: list[str], tmp: Path, *, empty_is_failure: bool) -> None:
    report = tmp / f"{stage.name}.xml"
    code = run([*PYTEST, f"--junitxml={report}", *args])
    stage.counts = junit_counts(report)
    if code == 0:
        stage.status = "passed"
    elif code == NO_TESTS_COLLECTED:
        stage.status = "failed" if empty_is_failure else "passed"
        stage.detail = "no tests collected"
    else:
        stage.status = "failed"
        stage.detail = f"pytest exit code {code}"


def notebooks() -> list[Path]:
    return sorted((REPO / "notebooks").glob("*.ipynb"))


def ensure_chromium(stage: Stage) -> bool:
    """Make /usr/bin/chromium exist if we can; say why not otherwise."""
    if CHROMIUM.exists():
        stage.status, stage.detail = "passed", f"{CHROMIUM} present"
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        stage.status = "skipped"
        stage.detail = f"{CHROMIUM} missing and cannot install it (needs root and apt-get)"
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    code = run(["apt-get", "update"], env=env)
    if code == 0:
        code = run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], env=env)
    if code == 0 and CHROMIUM.exists():
        stage.status, stage.detail = "passed", "installed Debian chromium"
        return True
    stage.status = "skipped"
    if code == 0:
        stage.detail = f"apt-get installed chromium but {CHROMIUM} is still missing"
    else:
        stage.detail = f"could not install Debian chromium (apt-get exit code {code})"
    return False


def jupyter_book() -> list[str]:
    script = Path(sys.executable).with_name("jupyter-book")
    return [str(script)] if script.exists() else ["jupyter-book"]


def main() -> int:
    os.chdir(REPO)
    stages = {
        name: Stage(name) for name in ("ruff", "tests", "notebooks", "chromium", "book", "browser")
    }
    chapters = notebooks()

    with tempfile.TemporaryDirectory(prefix="kvmcede-run-all-") as tmpdir:
        tmp = Path(tmpdir)

        def timed(name: str, body) -> None:
            stage = stages[name]
            banner(name)
            start = time.monotonic()
            try:
                body(stage)
            finally:
                stage.seconds = time.monotonic() - start
            if stage.status == "skipped":
                print(f"SKIPPED {name}: {stage.detail}", flush=True)

        def ruff(stage: Stage) -> None:
            targets = [p for p in ("kvmcede", "tests", "benchmarks") if (REPO / p).exists()]
            code = run([sys.executable, "-m", "ruff", "check", *targets])
            stage.status = "passed" if code == 0 else "failed"
            stage.detail = "" if code == 0 else f"ruff exit code {code}"

        def unit_tests(stage: Stage) -> None:
            run_pytest_stage(stage, ["-m", "not browser", "tests/"], tmp, empty_is_failure=True)

        def nbval(stage: Stage) -> None:
            if not chapters:
                stage.status, stage.detail = "skipped", "notebooks/ has no .ipynb yet"
                return
            args = [
                "--nbval",
                "--nbval-current-env",
                "--nbval-sanitize-with",
                "tests/nbval_sanitize.cfg",
                "--nbval-cell-timeout=600",
                "notebooks/",
            ]
            run_pytest_stage(stage, args, tmp, empty_is_failure=False)

        def chromium(stage: Stage) -> None:
            if not chapters:
                stage.status, stage.detail = "skipped", "no notebooks, so no browser tests to run"
                return
            ensure_chromium(stage)

        def book(stage: Stage) -> None:
            if not chapters:
                stage.status, stage.detail = "skipped", "no notebooks to build the book from"
                return
            code = run(
                [*jupyter_book(), "build", "book/", "--all", "--warningiserror", "--keep-going"]
            )
            stage.status = "passed" if code == 0 else "failed"
            stage.detail = "" if code == 0 else f"jupyter-book exit code {code}"

        def browser(stage: Stage) -> None:
            if not chapters:
                stage.status, stage.detail = "skipped", "no notebooks yet"
            elif stages["chromium"].status != "passed":
                stage.status = "skipped"
                stage.detail = f"no chromium: {stages['chromium'].detail}"
            elif stages["book"].status != "passed":
                stage.status, stage.detail = "skipped", "the book did not build"
            else:
                run_pytest_stage(
                    stage, ["-m", "browser", "tests/browser"], tmp, empty_is_failure=False
                )

        timed("ruff", ruff)
        timed("tests", unit_tests)
        timed("notebooks", nbval)
        timed("chromium", chromium)
        timed("book", book)
        timed("browser", browser)

    total = Counts()
    banner("summary")
    for stage in stages.values():
        counts = f" ({stage.counts})" if stage.counts else ""
        detail = f": {stage.detail}" if stage.detail else ""
        print(f"{stage.name:<10} {stage.status.upper():<8} {stage.seconds:8.1f} s{counts}{detail}")
        if stage.counts:
            total.add(stage.counts)
    failed = [s.name for s in stages.values() if s.status == "failed"]
    if failed:
        print(f"FAILED stages: {', '.join(failed)}")
    print(f"TOTAL: {total}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
