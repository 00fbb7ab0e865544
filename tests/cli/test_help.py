"""Help text (issue 10): every command's ``--help``, of ``spine`` and of ``kubectl spine``, at 80
columns: placeholders in words (``N``, ``DATE``, ``table|json|csv``, ``PIPELINE``), never a Python
type (``<bool>``, ``<list[str]>``, ``<int range>``) or ``{pipeline}``, and every option name whole."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from market_spine.cli import kubectl
from market_spine.cli.main import command, run_cli


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """kubectl spine points spine's settings at a cluster through os.environ (it is a process of
    its own); in-process calls here must not leave them to later tests."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


# Typer's type labels (<bool>, <str>, <int range>, <list[str]>, <table|json|csv>) and {argument}.
TYPE_PLACEHOLDER = re.compile(
    r"<(?:bool|str|int|float|path|file|datetime|uuid|list\[[^\]]*\]|(?:int|float) range|\w+(?:\|\w+)+)>|\{\w+\}"
)


def paths(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, sub in getattr(group, "commands", {}).items():
        yield from paths(sub, (*prefix, name))


def _options(cmd: Any) -> list[str]:
    return [o for p in cmd.params if p.param_type_name == "option" for o in (*p.opts, *p.secondary_opts)]


def _command_at(root: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        root = root.commands[name]
    return root


SPINE_PATHS = sorted(paths(command()))
PLUGIN_PATHS = sorted(paths(kubectl.command()))


def _check(text: str, cmd: Any) -> None:
    assert not TYPE_PLACEHOLDER.search(text), TYPE_PLACEHOLDER.search(text)
    assert "…" not in text and "..." not in text.replace("[ARGS]...", "")
    for option in _options(cmd):
        if option != "--help":
            assert re.search(rf"(^|[\s,]){re.escape(option)}(\s|,|$)", text, re.M), (option, text)
    assert all(len(line) <= 80 for line in text.splitlines()), text


@pytest.mark.parametrize("path", SPINE_PATHS, ids=lambda p: " ".join(p) or "spine")
def test_spine_help_is_in_words_and_whole(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert run_cli([*path, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Usage: spine {' '.join(path)}".rstrip())
    _check(text, _command_at(command(), path))


@pytest.mark.parametrize("path", PLUGIN_PATHS, ids=lambda p: " ".join(p) or "kubectl spine")
def test_kubectl_spine_help_is_in_words_and_whole(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    forwarded = {("backfill",): ("work", "backfill"), ("doctor",): ("doctor",)}
    monkeypatch.setenv("KUBECONFIG", "/nonexistent")  # help needs no cluster
    assert kubectl.run([*path, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Usage: kubectl spine {' '.join(path)}".rstrip())
    _check(text, _command_at(command(), forwarded[path]) if path in forwarded else _command_at(kubectl.command(), path))


def test_the_placeholders_are_words() -> None:
    enqueue = _command_at(command(), ("work", "enqueue"))
    metavars = {p.opts[0]: p.metavar for p in enqueue.params if p.param_type_name == "option" and not p.is_flag}
    assert metavars["--week"] == "DATE"
    assert metavars["--tier"] == "TIER"
    assert metavars["--max-backoff-seconds"] == "N"
    assert metavars["--file"] == "FILE"
    hhi = _command_at(command(), ("query", "hhi"))
    formats = [p.metavar for p in hhi.params if p.opts and p.opts[0] == "--format"]
    assert formats == ["table|json|csv"]
