"""Training's choice between a bar, a line per epoch and silence follows BONETUMOR_PROGRESS like every bar."""

from __future__ import annotations

import pytest

from bonetumor.engine.progress import resolve_progress


@pytest.mark.parametrize("env, expected", [("off", "off"), ("final", "line")])
def test_the_environment_decides_when_the_caller_does_not(monkeypatch, env, expected):
    monkeypatch.setenv("BONETUMOR_PROGRESS", env)
    assert resolve_progress(None) == expected


def test_unset_means_a_bar_only_on_a_terminal(monkeypatch):
    monkeypatch.delenv("BONETUMOR_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    assert resolve_progress(None) == "line"


def test_an_explicit_choice_wins_and_a_bad_one_is_named(monkeypatch):
    monkeypatch.setenv("BONETUMOR_PROGRESS", "off")
    assert resolve_progress(True) == "bar" and resolve_progress(False) == "line"
    with pytest.raises(ValueError, match="progress must be"):
        resolve_progress("loud")
    monkeypatch.setenv("BONETUMOR_PROGRESS", "noisy")
    with pytest.raises(ValueError, match="BONETUMOR_PROGRESS"):
        resolve_progress(None)
