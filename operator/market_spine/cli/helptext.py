"""Help text in words a user types: ``--weeks N``, ``--format table|json|csv``, ``PIPELINE``.

Typer 0.29 shows Python types in help (``<bool>``, ``<list[str]>``, ``<int range>``) and wraps
required arguments in braces (``{pipeline}``); its Rich panels cut long option names at 80
columns (``--max-backoff-se…``). ``spine`` uses plain (Click-style) help, which never cuts an
option name, and :func:`plain_metavars` gives every parameter a placeholder before the command
runs: an option's own ``metavar`` if it set one; otherwise ``N`` for numbers, the choices for an
enum, and the option's name in capitals (``--file FILE``, argparse's convention); an argument's
name in capitals, required ones bare (``PIPELINE``) and optional ones in brackets.

Called by ``cli.main`` and the kubectl plugin on the command tree Typer builds for each run.
"""

from __future__ import annotations

from typing import Any

NUMBER_LABELS = ("int", "float")


def _label(param: Any, ctx: Any) -> str:
    """Typer's own type label without its angle brackets (``int range``, ``table|json|csv``)."""
    return str(param.display_type(ctx)).strip("<>")


def _option_metavar(param: Any, ctx: Any) -> str:
    label = _label(param, ctx)
    if label.startswith(NUMBER_LABELS):
        return "N"
    if "|" in label:
        return label
    return str(param.name).upper()


def plain_metavars(command: Any, ctx: Any = None) -> None:
    """Give every parameter of ``command`` and its subcommands a placeholder (see the module doc)."""
    for param in command.params:
        if param.param_type_name == "option":
            if param.metavar is None and not (param.is_flag or param.count):
                param.metavar = _option_metavar(param, ctx)
        elif param.param_type_name == "argument":
            name = param.metavar or str(param.name).upper()
            param.metavar = name
            usage = name if param.required else f"[{name}]"
            # Instance attributes shadow Typer's methods: no type after the name, no braces.
            param.display_type_rich = lambda ctx: None
            param.get_usage_pieces = lambda ctx, usage=usage, many=param.nargs != 1: [usage + ("..." if many else "")]
    if command.help and not command.short_help:
        # Click cuts a command's summary in its group's listing to fit the width; the first
        # sentence, given as the summary, is wrapped instead.
        first = command.help.strip().split("\n\n")[0].replace("\n", " ")
        command.short_help = first.split(". ")[0].rstrip(".") + "."
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub, ctx)
