"""The ``spine`` entry point: the Typer app, and the one place errors become one-line messages.

Every :class:`~market_spine.errors.SpineError` is printed as ``spine: error: …`` with its exit code;
a lost database connection is reported the same way. No command shows a traceback to a user
(set ``SPINE_DEBUG=1`` to see one).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import typer
import typer.main
from sqlalchemy.exc import DBAPIError, OperationalError

# Typer 0.29 vendors its own Click: usage errors are that copy's ClickException (pinned in pyproject).
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from market_spine import __version__
from market_spine.cli import db, query, work
from market_spine.cli.doctor import EXIT_UNCHECKED, doctor
from market_spine.cli.helptext import plain_metavars
from market_spine.cli.run import run
from market_spine.db.engine import first_line
from market_spine.errors import DatabaseUnavailable, SpineError

app = typer.Typer(
    name="spine",
    help="Market Spine: recurring FINRA OTC Transparency pipelines, as a local work queue or a Kubernetes operator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: no option name cut at 80 columns (see cli.helptext)
)
app.add_typer(db.app, name="db")
app.add_typer(work.app, name="work")
app.add_typer(query.app, name="query")
app.command("run")(run)
app.command("doctor")(doctor)
app.command("worker")(work.worker)

operator_app = typer.Typer(help="The Kubernetes operator.", no_args_is_help=True)
app.add_typer(operator_app, name="operator")


@operator_app.command("run")
def operator_run() -> None:
    """Run the operator: reconcile SpineWorkItems into Jobs, mirror state into PostgreSQL."""
    from market_spine.cli import context
    from market_spine.operator.runner import run as run_operator

    run_operator(context.settings())


def _version(value: bool) -> None:
    if value:
        print(f"spine {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens, to stderr."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _fail(message: str, code: int, who: str = "spine") -> int:
    print(f"{who}: error: {message}", file=sys.stderr)
    return code


def command() -> Any:
    """The Click command tree of ``spine``, with help placeholders in words (``cli.helptext``)."""
    built = typer.main.get_command(app)
    plain_metavars(built)
    return built


def run_cli(argv: list[str] | None = None, *, path: Sequence[str] = (), who: str = "spine") -> int:
    """Run ``spine`` with ``argv`` and return its exit code (tests call this directly).

    ``path`` runs one subcommand (``("work", "retry")``) as its own program named ``who`` plus the
    path's last word in usage lines: the kubectl plugin's verbs are ``spine`` commands this way."""
    args = list(sys.argv[1:] if argv is None else argv)
    target = command()
    for name in path:
        target = target.commands[name]
    prog = f"{who} {path[-1]}" if path else who
    return invoke(target, args, prog=prog, who=who, doctor=(list(path) or args)[:1] == ["doctor"])


def invoke(target: Any, args: list[str], *, prog: str, who: str, doctor: bool = False) -> int:
    """Run a Click command and turn every failure into one line and its exit code (the doctor's
    failures all into 2: it could not check). Shared by ``spine`` and ``kubectl spine``."""
    try:
        result = target.main(args=args, prog_name=prog, standalone_mode=False)
        return result if isinstance(result, int) else 0
    except SpineError as exc:
        return _fail(str(exc), EXIT_UNCHECKED if doctor else exc.exit_code, who)
    except OperationalError as exc:
        if os.environ.get("SPINE_DEBUG"):
            raise
        err = DatabaseUnavailable(f"lost the database connection: {first_line(exc.orig or exc)}")
        return _fail(str(err), EXIT_UNCHECKED if doctor else err.exit_code, who)
    except DBAPIError as exc:
        if os.environ.get("SPINE_DEBUG"):
            raise
        return _fail(f"the database refused the change: {first_line(exc.orig or exc)}", 1, who)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except NoArgsIsHelpError as exc:
        exc.show()
        return 0
    except ClickException as exc:
        exc.show()  # "Usage: … Error: Invalid value for '--weeks': …", as any CLI user expects
        return EXIT_UNCHECKED if doctor else exc.exit_code
    except typer.Abort:
        return _fail("aborted", 130, who)
    except KeyboardInterrupt:
        return 130


def main() -> None:
    sys.exit(run_cli())
