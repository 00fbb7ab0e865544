"""Errors a user can act on. Every entry point turns a :class:`SpineError` into one line, no traceback.

Each subclass carries the CLI exit code that fits it, so ``spine`` and the pipeline container
report the same failure the same way, and whether another attempt could succeed: the local
worker reads ``retryable`` from the exception, the operator reads :data:`PERMANENT_EXIT_CODES`
from the Job's exit code. Both decide from this one table.
"""

from __future__ import annotations


class SpineError(Exception):
    """Base of expected, user-facing failures."""

    exit_code = 1
    retryable = True


class UsageError(SpineError):
    """Bad arguments: an unknown pipeline or tier, a malformed date."""

    exit_code = 2
    retryable = False


class DatabaseUnavailable(SpineError):
    """PostgreSQL could not be reached (retryable)."""

    exit_code = 3


class SchemaMismatch(SpineError):
    """The database schema is not the revision this code needs (retryable: a migration may be on its way)."""

    exit_code = 7


class InputFileError(SpineError):
    """A source file cannot be used at all (bad header, wrong week); nothing was written."""

    exit_code = 4
    retryable = False


class SourceUnavailable(SpineError):
    """A remote source (FINRA's API, a URL) failed after retries (retryable)."""

    exit_code = 5


class NotPublishedYet(SourceUnavailable):
    """FINRA has not published the week yet (retryable: it will, on the day its calendar says)."""


class OutsideDataWindow(SpineError):
    """The source no longer holds what was asked for (a week older than FINRA keeps): permanent."""

    exit_code = 9
    retryable = False


class NotFound(SpineError):
    """A work item, capture or partition that does not exist."""

    exit_code = 6


class ChangedMeanwhile(SpineError):
    """A work item was written by someone else between reading and writing it (retryable: read it
    again and decide again). Commands re-read a few times before they report it."""


def _all_errors(cls: type[SpineError]) -> list[type[SpineError]]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _all_errors(child))]


# Exit codes of failures that no retry can fix: a Job that ends with one goes straight to FAILED.
PERMANENT_EXIT_CODES: frozenset[int] = frozenset(e.exit_code for e in _all_errors(SpineError) if not e.retryable)
