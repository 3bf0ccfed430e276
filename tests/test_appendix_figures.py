"""The book's scenario catalogue (book/appendix-scenarios.md) says what the model does:
every scenario has a section, and its "Numbers." line is the one computed by running it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kvmcede.book import scenario_numbers
from kvmcede.scenarios import SCENARIOS

PAGE = Path(__file__).resolve().parents[1] / "book" / "appendix-scenarios.md"


def _sections() -> dict[str, str]:
    text = PAGE.read_text(encoding="utf-8")
    parts = re.split(r"(?m)^(?=\(scenario-[\w.\-]+\)=)", text)[1:]
    return {re.match(r"\(scenario-([\w.\-]+)\)=", p).group(1): p for p in parts}


def test_every_scenario_has_a_section_and_a_row():
    sections = _sections()
    assert set(sections) == set(SCENARIOS)
    text = PAGE.read_text(encoding="utf-8")
    for name in SCENARIOS:
        assert f"<scenario-{name}>`" in text, name  # the overview table links it


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_numbers_line_is_what_the_model_computes(name):
    numbers = re.search(r"^\*\*Numbers\.\*\* (.*?)(?=\n\n)", _sections()[name],
                        flags=re.S | re.M)
    assert numbers, f"{name}: no Numbers line"
    assert " ".join(numbers.group(1).split()) == scenario_numbers(name), (
        f"{name}: regenerate the line with kvmcede.book.scenario_numbers({name!r})")
