"""What went wrong with an attempt, in words: one specific sentence per kind of failure.

Called by the local worker (``services.worker``) for its output line and the failure's reason.
The exception's own message stays in ``last_error`` as it is (``<Type>: <first line>``); this adds
what a user needs first: a host name that does not resolve is a DNS problem, not "did not answer
three times"; a refused connection, a timeout, an HTTP status, the database, the input file and a
week FINRA has not published yet each read differently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, OperationalError

from market_spine.db.engine import first_line
from market_spine.errors import (
    DatabaseUnavailable,
    InputFileError,
    NotFound,
    NotPublishedYet,
    SourceUnavailable,
    SpineError,
    UsageError,
)

_DNS = re.compile(
    r"name or service not known|nodename nor servname|temporary failure in name resolution|"
    r"no address associated with hostname|getaddrinfo|name resolution",
    re.IGNORECASE,
)
_REFUSED = re.compile(r"connection refused|errno 111", re.IGNORECASE)
_TIMEOUT = re.compile(r"timed? ?out|timeout", re.IGNORECASE)
_STATUS = re.compile(r"\banswered (\d{3})\b|HTTP (\d{3})\b")
_URL = re.compile(r"https?://[^\s,;)]+")
_CAUSE = re.compile(r"(\w+(?:Error|Timeout|Exception)): ([^|]*)$")


def _where_and_why(line: str, everything: str) -> tuple[str, str]:
    """The address a network failure was about, and the low-level error that says what happened
    (``ConnectError: [Errno -2] Name or service not known``), from the messages."""
    url = _URL.search(line)
    cause = _CAUSE.search(line) or _CAUSE.search(everything)
    return (url.group(0) if url else "the source"), (f"{cause.group(1)}: {cause.group(2).strip()}" if cause else line)


@dataclass(frozen=True)
class Failure:
    reason: str  # CamelCase, for status.reason / core_work_items.state_reason and history
    error: str  # ``<Type>: <first line>``, kept in last_error and core_executions.error
    text: str  # the sentence a user reads
    retryable: bool


def _chain(exc: BaseException) -> str:
    """The messages of an exception and its causes, for matching."""
    parts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " | ".join(parts)


def describe(exc: BaseException) -> Failure:
    """The failure of an attempt, from the exception that ended it."""
    line = first_line(exc)
    error = f"{type(exc).__name__}: {line}"
    retryable = not (isinstance(exc, SpineError) and not exc.retryable)
    everything = _chain(exc)
    if isinstance(exc, NotPublishedYet):
        return Failure("NotPublishedYet", error, f"FINRA has not published the week yet: {line}", True)
    if isinstance(exc, SourceUnavailable):
        where, why = _where_and_why(line, everything)
        if _DNS.search(everything):
            text = f"the host name of {where} does not resolve (DNS: {why}); check the address and this machine's DNS"
            return Failure("SourceDnsFailure", error, text, True)
        if _REFUSED.search(everything):
            text = f"{where} refused the connection ({why}): nothing listens at that address"
            return Failure("SourceRefused", error, text, True)
        if (status := _STATUS.search(line)) is not None:
            code = status.group(1) or status.group(2)
            return Failure("SourceHttpError", error, f"the source answered HTTP {code}: {line}", True)
        if _TIMEOUT.search(everything):
            return Failure("SourceTimeout", error, f"{where} did not answer in time ({why})", True)
        return Failure("SourceUnavailable", error, f"the source is unavailable: {line}", True)
    if isinstance(exc, DatabaseUnavailable | OperationalError):
        original = getattr(exc, "orig", None)
        detail = first_line(original) if original is not None else line
        return Failure("DatabaseUnavailable", error, f"the database connection failed: {detail}", True)
    if isinstance(exc, DBAPIError):
        original = exc.orig if exc.orig is not None else exc
        return Failure("DatabaseError", error, f"the database refused a statement: {first_line(original)}", True)
    if isinstance(exc, InputFileError):
        return Failure("InputFileError", error, f"the input cannot be used: {line}", False)
    if isinstance(exc, UsageError):
        return Failure("UsageError", error, f"the work item cannot run as given: {line}", False)
    if isinstance(exc, NotFound):
        return Failure("NotFound", error, f"something it needs does not exist: {line}", retryable)
    if isinstance(exc, SpineError):
        return Failure(type(exc).__name__, error, line, retryable)
    return Failure("UnexpectedError", error, f"unexpected error (a bug; run with -v for details): {error}", True)
