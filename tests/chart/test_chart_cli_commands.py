"""Every command the chart runs is a valid `spine` invocation, parsed by the real CLI.

The image's entrypoint is `spine` and the chart only sets `args`, so the args of each container
(Deployment, migration Job, CronJobs) are parsed with the Typer app of market_spine.cli.main, down
to the leaf command: an unknown command, option or bad option value fails here, not in the cluster.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer

from .chartlib import ROOT, Rendered, containers, pod_specs

try:  # Typer >= 0.26 vendors Click as typer._click; older Typer uses Click itself.
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - depends on the installed Typer
    from click.exceptions import ClickException, UsageError  # type: ignore[assignment]


def parse_spine(args: list[str]) -> Any:
    """Parse ``spine <args>`` like the console script would, without running anything; returns
    the leaf command's context (a Click context)."""
    from market_spine.cli.main import app

    command: Any = typer.main.get_command(app)
    ctx = command.make_context("spine", list(args))
    while hasattr(command, "resolve_command"):  # a group: descend into the subcommand
        protected = ctx.__dict__.get("_protected_args")
        rest = [*(protected if protected is not None else ctx.protected_args), *ctx.args]
        assert rest, f"`spine {' '.join(args)}` stops at the group {command.name!r}"
        name, sub, sub_args = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        ctx = sub.make_context(name, sub_args, parent=ctx)
        command = sub
    return ctx


def _invocations(rendered: Rendered) -> list[tuple[str, list[str]]]:
    found = []
    for doc in rendered.docs:
        for pod in pod_specs(doc):
            for c in containers(pod):
                assert "command" not in c, "the chart relies on the image's `spine` entrypoint"
                found.append((f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}", list(c["args"])))
    return found


def _leaf_path(ctx: Any) -> list[str]:
    names = []
    node = ctx
    while node is not None:
        names.insert(0, node.info_name or "")
        node = node.parent
    return names


def test_chart_commands_parse_with_the_real_cli(rendered: Rendered) -> None:
    invocations = _invocations(rendered)
    assert len(invocations) == 6  # operator, migration, three enqueue CronJobs, doctor
    leaves = set()
    for where, args in invocations:
        try:
            ctx = parse_spine(args)
        except ClickException as exc:
            pytest.fail(f"{where}: `spine {' '.join(args)}` is not a valid invocation: {exc.format_message()}")
        leaves.add(" ".join(_leaf_path(ctx)))
        _check_params(where, args, ctx.params)
    assert leaves == {"spine operator run", "spine db upgrade", "spine work enqueue", "spine doctor"}


def _check_params(where: str, args: list[str], params: dict[str, Any]) -> None:
    """The parsed values are the ones the chart meant (no option swallowed by another)."""
    if args[:2] == ["work", "enqueue"]:
        assert params["pipeline"] == "finra.otc_transparency.ingest_week", where
        assert str(params["week"]) == "latest", where  # per tier, the newest week FINRA has published
        assert params["week_ending"] is None, where
        assert str(params["tier"]).rsplit(".", 1)[-1] in {"NMS_TIER_1", "NMS_TIER_2", "OTC"}, where
        assert params["chain"] is True, where
    if args[0] == "doctor":
        assert params["domain"] == "finra.otc_transparency", where
        assert params["weeks"] in {12, 26}, where


def test_parser_rejects_a_bad_invocation() -> None:
    """The helper really parses down to the leaf: a wrong option of a subcommand fails."""
    with pytest.raises(UsageError):
        parse_spine(["work", "enqueue", "finra.otc_transparency.ingest_week", "--no-such-option"])
    with pytest.raises(UsageError):
        parse_spine(["doctor", "finra.otc_transparency", "--weeks", "many"])
    with pytest.raises(UsageError):
        parse_spine(["no-such-command"])


DOCS = ("docs/ops/install.md", "docs/ops/alerts.md", "helm/market-spine/README.md")
# `spine …`, but not `kubectl spine …` (the kubectl plugin, checked by tests/docs/test_doc_commands.py).
_COMMAND = re.compile(r"(?:^|(?<=[\s`(]))(?<!kubectl )spine ([a-z][^`#\n]*)")


def doc_commands(text: str) -> list[str]:
    """`spine ...` commands in inline code and code blocks (line continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", text)
    found = []
    in_block = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        spans = [line] if in_block else re.findall(r"`([^`]+)`", line)
        for span in spans:
            found += [m.group(1).strip() for m in _COMMAND.finditer(span)]
    return [c for c in found if "…" not in c and "..." not in c]


@pytest.mark.parametrize("doc", DOCS)
def test_documented_spine_commands_parse(doc: str) -> None:
    commands = doc_commands((ROOT / doc).read_text())
    assert commands, f"{doc} shows no spine command"
    for command in commands:
        try:
            parse_spine(shlex.split(command))
        except ClickException as exc:
            pytest.fail(f"{doc}: `spine {command}` is not valid: {exc.format_message()}")
