"""sriovctl's top: a failure sriovkit describes is its lines and exit status 1, never a traceback;
a bug (any other exception) still surfaces as one."""

from __future__ import annotations

import argparse

import pytest

from sriovkit import cli
from sriovkit.commands import inventory
from sriovkit.errors import SriovkitError
from sriovkit.provision.plan import PlanRefused


def _failing(exc: BaseException):
    def run(args: argparse.Namespace) -> int:
        raise exc

    return run


def test_a_described_failure_is_its_lines_and_status_1(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(inventory, "cmd_discover", _failing(SriovkitError("first line\nsecond line")))
    assert cli.main(["discover"]) == 1
    assert capsys.readouterr().err.splitlines() == ["sriovctl: first line", "sriovctl: second line"]


def test_a_subclass_without_text_names_its_kind(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(inventory, "cmd_discover", _failing(PlanRefused([])))
    assert cli.main(["discover"]) == 1
    assert capsys.readouterr().err.splitlines() == ["sriovctl: PlanRefused"]


def test_a_bug_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory, "cmd_discover", _failing(KeyError("bug")))
    with pytest.raises(KeyError):
        cli.main(["discover"])
