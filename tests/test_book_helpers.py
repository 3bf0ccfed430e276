"""The chapters' helpers (kvmcede.book): shown source, event excerpts, checked prose
figures and checkable exercises."""

from __future__ import annotations

import json

import pytest

from kvmcede import Config, book, simulate
from kvmcede.realmode import napping_decision
from kvmcede.scenarios import scenario


def _chapter(tmp_path, monkeypatch, *markdown: str) -> str:
    nb = {"cells": [{"cell_type": "markdown", "source": m, "metadata": {}} for m in markdown]
          + [{"cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": [],
              "execution_count": None}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "99-test.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    monkeypatch.setattr(book, "NOTEBOOKS", tmp_path)
    return "99-test"


def test_show_source_is_the_package_function_with_its_place():
    code = book.show_source(napping_decision)
    text = getattr(code, "data", code)
    assert text.startswith("# kvmcede/realmode.py, line ")
    assert "def napping_decision(e: Edit, i: int) -> None:" in text
    with pytest.raises(ValueError, match="obj"):
        book.show_source(42)


def test_show_events_prints_an_excerpt_and_counts_the_rest(capsys):
    sc = scenario("S4")
    tr = simulate(sc.config, sc.workload, until=sc.until_us)
    book.show_events(tr, limit=3)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and out[-1].startswith("... and ")
    with pytest.raises(ValueError, match="limit"):
        book.show_events(tr, limit=0)


def test_check_prose_accepts_true_figures(tmp_path, monkeypatch):
    ch = _chapter(tmp_path, monkeypatch, "The core left the guest 86<!--q:exits--> times, "
                  "losing 12.5 µs<!--q:lost--> (86<!--q:exits--> exits).")
    assert book.prose_quotes(ch) == {"exits": ["86", "86"], "lost": ["12.5"]}
    assert "2 quoted figures agree" in book.check_prose(ch, exits=86, lost=12.4999)


def test_check_prose_is_loud_about_drift_and_about_unquoted_values(tmp_path, monkeypatch):
    ch = _chapter(tmp_path, monkeypatch, "It took 13<!--q:steps--> steps.")
    with pytest.raises(AssertionError, match="the prose says 13, the model gives 12"):
        book.check_prose(ch, steps=12)
    with pytest.raises(AssertionError, match="naps: computed but never quoted"):
        book.check_prose(ch, steps=13, naps=4)
    with pytest.raises(AssertionError, match="not computed"):
        book.check_prose(ch)
    with pytest.raises(ValueError, match="chapter"):
        book.check_prose("no-such-chapter")


def test_check_says_right_or_wrong_with_the_models_answer(capsys, monkeypatch):
    monkeypatch.setattr(book, "EXERCISES", {})

    @book.exercise("t.1", "How many vcpus does the default core have?",
                   "SMT4: one vcpu per hardware thread.")
    def _answer():
        return Config().vcpus

    assert book.check("t.1", 4) is True
    assert "Right. The model gives 4." in capsys.readouterr().out
    assert book.check("t.1", 3) is False
    assert "Not quite: you said 3" in capsys.readouterr().out
    with pytest.raises(ValueError, match="name"):
        book.check("t.2", 1)
