"""Run the real ``spine`` CLI in-process, as a user would from a shell, and capture what it prints."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from market_spine.cli import context
from market_spine.cli.main import run_cli


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Spine:
    """``spine(...)`` runs one command; ``clock`` pins the time the CLI sees (``None`` = real time)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self._capsys = capsys
        self.now: datetime | None = None
        real: Callable[[], datetime] = context.utcnow
        monkeypatch.setattr(context, "utcnow", lambda: self.now or real())

    def __call__(self, *args: str) -> Result:
        context.reset()  # each command reads settings afresh, like a new process
        self._capsys.readouterr()
        code = run_cli(list(args))
        captured = self._capsys.readouterr()
        context.reset()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def spine(spine_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Spine:
    return Spine(capsys, monkeypatch)
