"""FINRA weekly files: open one (a path or an http(s) URL), check its header, stream its lines.

Called by ``pipelines.ingest`` for ``--file`` (and, through :func:`api_week`, for the records of
FINRA's API, so both become the same lines), and by the CLI to read a file's week off its dates
(:func:`scan_weekly`). FINRA's files are pipe-delimited despite the ``.csv`` name, with one header
row, no quoting and no pipe inside a field, so a plain ``str.split('|')`` is the parser.

Whatever the input, memory stays bounded: a file is read in blocks of :data:`BLOCK_BYTES` and
handed on in :class:`Batch` es of whole lines, and a line longer than :data:`MAX_LINE_BYTES` is cut
there (the rest is read, hashed and dropped). What this module refuses with one line
(:class:`InputFileError`, before anything is kept): a missing file, anything that is not a regular
file (a directory, a FIFO, a device such as ``/dev/zero``: a FIFO would block forever, a device
never ends), an empty file, a header that is not FINRA's, and (:meth:`WeekStats.check`) a file
that is for another week or tier as a whole. Row-level damage passes through to be rejected by
normalization with a reason: a short or long row, text in a number, and the lines that cannot be
stored as received (:class:`Defect`: bytes that are not UTF-8, a NUL byte, an over-long line).
Decoding is strict UTF-8 line by line: one bad byte marks its own line, never the whole file.

A weekly file says nothing about its trading week: its only date, ``lastUpdateDate``, is the day
FINRA published (or later corrected) each row. The week is what the user names, or what
:meth:`WeekStats.infer_week` reads off FINRA's publication calendar.
"""

from __future__ import annotations

import os
import re
import stat
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from hashlib import sha256
from pathlib import Path
from typing import BinaryIO, NamedTuple

from market_spine.core.calendar import PublicationCalendar, describe_week
from market_spine.core.partitions import Tier, UnknownTier, parse_tier
from market_spine.errors import InputFileError
from market_spine.finra.download import stream_url

HEADER: tuple[str, ...] = (
    "tierDescription",
    "issueSymbolIdentifier",
    "issueName",
    "marketParticipantName",
    "MPID",
    "totalWeeklyShareQuantity",
    "totalWeeklyTradeCount",
    "lastUpdateDate",
)
HEADER_LINE = "|".join(HEADER)
FIELD_COUNT = len(HEADER)
# What FINRA's Query API adds to the file's columns for a row; kept in raw (NULL for file rows).
API_FIELDS: tuple[str, ...] = (
    "weekStartDate",
    "summaryTypeCode",
    "initialPublishedDate",
    "lastReportedDate",
    "tierIdentifier",
    "firmCRDNumber",
    "productTypeCode",
    "totalNotionalSum",
)
# A FINRA row is about 100 bytes; no real one comes near this. A longer line is cut here.
MAX_LINE_BYTES = 64 * 1024
# Bytes read at a time (about 1,400 FINRA rows): one batch of lines per block.
BLOCK_BYTES = 128 * 1024
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_DEADLINE = 900.0
_BOM = b"\xef\xbb\xbf"
# Distinct lastUpdateDate / tierDescription spellings counted one by one; a file with more (never
# a real one) keeps only the most frequent and the earliest and latest date, so memory stays flat.
_MAX_KINDS = 1_000
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# What "blank" and "padded" mean for a value, here and in normalization's SQL.
WHITESPACE = " \t\n\r\f\v"

Fields = tuple[str | None, ...]


class SourceRow(NamedTuple):
    """One data row as received. ``fields`` always has :data:`FIELD_COUNT` entries: a short row
    has ``None`` for the fields it lacks, and a long row keeps its surplus in the last field, so
    nothing received is lost and normalization can say what was wrong."""

    line_number: int  # 1-based line in the file (the header is line 1); record number for the API
    text: str  # the record as received, without its line ending: what the record hash covers
    fields: Fields


class Defect(NamedTuple):
    """Why a line cannot be stored exactly as received, and the SHA-256 of its bytes. Its text is
    stored with the damage made visible (``\\xff`` for a byte that is not UTF-8, ``\\x00`` for NUL,
    the first :data:`MAX_LINE_BYTES` of an over-long line); normalization rejects it with ``reason``."""

    reason: str
    digest: str


@dataclass
class Batch:
    """Consecutive lines of a weekly file, blank ones included (they are not data, but they count
    in line numbers), or consecutive records of an API answer."""

    first: int  # the 1-based line (or record) number of lines[0]
    lines: list[str]  # without line endings
    defects: dict[int, Defect] | None = None  # index in ``lines`` → why it is damaged
    # For API records: each one's API_FIELDS values as text (None where absent).
    api_values: list[tuple[str | None, ...]] | None = None


def split_fields(line: str) -> Fields:
    parts = line.split("|")
    if len(parts) == FIELD_COUNT:
        return tuple(parts)
    if len(parts) > FIELD_COUNT:
        return (*parts[: FIELD_COUNT - 1], "|".join(parts[FIELD_COUNT - 1 :]))
    return (*parts, *([None] * (FIELD_COUNT - len(parts))))


def parse_day(value: str | None) -> date | None:
    """A ``lastUpdateDate`` as FINRA writes it (``YYYY-MM-DD``, padding ignored), else ``None``.
    Normalization's SQL applies the same rule."""
    if value is None:
        return None
    text = value.strip(WHITESPACE)
    if not _ISO_DAY.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


# --- statistics over a week's rows, in bounded memory -----------------------------------------


@dataclass
class WeekStats:
    """What is learnt about a week's rows while they stream by: how many there are, which FINRA
    publication dates and tiers they carry. Enough to refuse a file that is another week's or
    another tier's (:meth:`check`), to name a file's week (:meth:`infer_week`), and to record the
    capture's publication range; never more than a few thousand entries, whatever the input."""

    source: str
    rows: int = 0
    dates: Counter[date | None] = field(default_factory=Counter)
    earliest: date | None = None
    latest: date | None = None
    tiers: Counter[Tier | None] = field(default_factory=Counter)
    week_starts: Counter[str | None] | None = None  # weekStartDate values, for API records
    _tier_names: dict[str, Tier | None] = field(default_factory=dict)

    def add(self, lines: list[str], api_values: list[tuple[str | None, ...]] | None = None) -> None:
        """Count the data lines (non-blank) of one batch."""
        rows = [line for line in lines if line and not line.isspace()]
        self.rows += len(rows)
        for text, count in Counter(line.rpartition("|")[2] for line in rows).items():
            day = parse_day(text)
            self.dates[day] += count
            if day is not None:
                self.earliest = day if self.earliest is None else min(self.earliest, day)
                self.latest = day if self.latest is None else max(self.latest, day)
        if len(self.dates) > _MAX_KINDS:
            self.dates = Counter(dict(self.dates.most_common(_MAX_KINDS // 2)))
        for text, count in Counter(line.partition("|")[0] for line in rows).items():
            self.tiers[self._tier(text)] += count
        if api_values is not None:
            self.week_starts = self.week_starts or Counter()
            self.week_starts.update(values[0] for values in api_values)
            if len(self.week_starts) > _MAX_KINDS:
                self.week_starts = Counter(dict(self.week_starts.most_common(_MAX_KINDS // 2)))

    def _tier(self, text: str) -> Tier | None:
        if text not in self._tier_names:
            try:
                found: Tier | None = parse_tier(text)
            except UnknownTier:
                found = None
            if len(self._tier_names) < _MAX_KINDS:
                self._tier_names[text] = found
            return found
        return self._tier_names[text]

    def publication_range(self) -> tuple[date, date] | None:
        """(earliest, latest) ``lastUpdateDate`` of the rows, or ``None`` if no row has a readable
        one. A later latest than earliest means FINRA corrected some rows after first publishing."""
        if self.earliest is None or self.latest is None:
            return None
        return self.earliest, self.latest

    def infer_week(self, tier: Tier, calendar: PublicationCalendar) -> tuple[date, date]:
        """(trading week, publication day) for a file whose week was not named: the newest week
        FINRA had published for ``tier`` by the rows' earliest ``lastUpdateDate`` (the first
        publication; later dates are corrections)."""
        if self.earliest is None:
            raise InputFileError(f"{self.source}: no row has a readable lastUpdateDate; name the week with --week")
        return calendar.newest_published_week(tier, self.earliest), self.earliest

    def check(self, week: date, tier: Tier, calendar: PublicationCalendar) -> list[str]:
        """Refuse a file that is, as a whole, for another week or another tier; return notes worth
        telling the user about a file that is accepted.

        The week: a row cannot describe a week FINRA had not published yet, so a file none of
        whose rows was published (``lastUpdateDate``) on or after the week's first publication is
        another week's, and the error names the week its date fits. Rows from FINRA's API also
        carry ``weekStartDate``: then at least one row must be for the week. If some rows are for
        the partition, the file is its own and odd rows are rejected one by one during
        normalization; if none is, the user picked the wrong file, and mixing it in would be
        worse than stopping."""
        published = calendar.first_publication(week, tier)
        if self.earliest is None or self.latest is None:
            raise InputFileError(f"{self.source}: no row has a readable lastUpdateDate (FINRA's publication day)")
        if self.latest < published:
            dated = [(count, day) for day, count in self.dates.items() if day is not None]
            day = max(dated)[1] if dated else self.latest  # the day most rows were published
            fits = calendar.newest_published_week(tier, day)
            raise InputFileError(
                f"{self.source}: its rows were published on {day.isoformat()} (lastUpdateDate), before FINRA's "
                f"first publication of {tier.value} week {week.isoformat()} on {published.isoformat()}; "
                f"{day.isoformat()} fits week {describe_week(fits)}: use --week {fits.isoformat()}"
            )
        if self.week_starts and not self.week_starts[week.isoformat()]:
            found = max(self.week_starts.items(), key=lambda item: (item[1], item[0] or ""))[0]
            raise InputFileError(
                f"{self.source}: the rows are for week {found or 'unknown'} (weekStartDate), not {week.isoformat()}"
            )
        if self.tiers[tier] == 0:
            known = [(count, t.value) for t, count in self.tiers.items() if t is not None]
            found = max(known)[1] if known else "no recognised tierDescription"
            raise InputFileError(f"{self.source}: the file is for tier {found}, not the requested tier {tier.value}")
        notes = []
        if self.earliest > published:
            fits = calendar.newest_published_week(tier, self.earliest)
            if fits != week:
                notes.append(
                    f"every row of {self.source} was last updated after week {week.isoformat()}'s first "
                    f"publication ({published.isoformat()}), on {self.earliest.isoformat()} or later, which is when "
                    f"FINRA first published week {fits.isoformat()}: ingested as a correction of week "
                    f"{week.isoformat()}; if the file is week {fits.isoformat()}, "
                    f"run again with --week {fits.isoformat()}"
                )
        return notes


# --- a week's lines ------------------------------------------------------------------------------


class WeekInput:
    """A week's lines in batches, counted into :attr:`stats` as they pass. Iterate
    :meth:`batches` once; blank lines are in the batches, not in the counts."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.stats = WeekStats(source)

    def _batches(self) -> Iterator[Batch]:
        raise NotImplementedError

    def batches(self) -> Iterator[Batch]:
        for batch in self._batches():
            self.stats.add(batch.lines, batch.api_values)
            yield batch
        if not self.stats.rows:
            raise InputFileError(f"{self.source}: no data rows after the header")


def _cut(lines: list[bytes], limit: int) -> dict[int, tuple[int, str]]:
    """Cut lines longer than ``limit`` in place; return index → (length, SHA-256 of the whole)."""
    long = {}
    for index, line in enumerate(lines):
        if len(line) > limit:
            long[index] = (len(line), sha256(line).hexdigest())
            lines[index] = line[:limit]
    return long


def split_lines(
    blocks: Iterable[bytes], limit: int = MAX_LINE_BYTES
) -> Iterator[tuple[list[bytes], dict[int, tuple[int, str]]]]:
    """Bytes, as they arrive → lists of lines (without ``\\n``), each at most ``limit`` bytes, with
    the lines that were cut: index → (their full length, the SHA-256 of all their bytes). Memory:
    one block plus at most ``limit`` bytes of an unfinished line; an over-long line is hashed as
    it streams by and never held."""
    pending = b""
    long_hash = None  # the hash of an over-long line whose end has not come yet
    long_head = b""
    long_size = 0
    for received in blocks:
        block = received
        if long_hash is not None:
            end = block.find(b"\n")
            if end < 0:
                long_hash.update(block)
                long_size += len(block)
                continue
            long_hash.update(block[:end])
            yield [long_head], {0: (long_size + end, long_hash.hexdigest())}
            long_hash, long_head = None, b""
            block = block[end + 1 :]
        data = pending + block if pending else block
        end = data.rfind(b"\n")
        if end < 0:
            pending = data
        else:
            lines = data[:end].split(b"\n")
            pending = data[end + 1 :]
            yield lines, (_cut(lines, limit) if end > limit else {})
        if len(pending) > limit:
            long_hash, long_head, long_size = sha256(pending), pending[:limit], len(pending)
            pending = b""
    if long_hash is not None:
        yield [long_head], {0: (long_size, long_hash.hexdigest())}
    elif pending:
        yield [pending], {}


def decode_lines(lines: list[bytes], long: Mapping[int, tuple[int, str]]) -> tuple[list[str], dict[int, Defect] | None]:
    """Strict UTF-8, line by line: the lines as text (a trailing ``\\r`` of a CRLF file removed)
    and the damaged ones (:class:`Defect`). A clean batch, nearly every one, is decoded in one
    call; only a batch with a bad byte, a NUL or a cut line is taken line by line."""
    if not long:
        try:
            text = b"\n".join(lines).decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and "\x00" not in text:
            out = text.split("\n")
            if "\r" in text:
                out = [line[:-1] if line.endswith("\r") else line for line in out]
            return out, None
    out = []
    defects: dict[int, Defect] = {}
    for index, raw in enumerate(lines):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        reason = None
        digest = None
        if index in long:
            size, digest = long[index]
            reason = f"line of {size:,} bytes, longer than the {MAX_LINE_BYTES:,} a row may have: stored cut short"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = line.decode("utf-8", "backslashreplace")
            reason = reason or f"not UTF-8: byte 0x{line[exc.start]:02x} at byte {exc.start + 1} of the line"
        if "\x00" in text:
            reason = reason or f"NUL byte at byte {line.index(0) + 1} of the line"
            text = text.replace("\x00", "\\x00")
        if reason is not None:
            defects[index] = Defect(reason, digest or sha256(line).hexdigest())
        out.append(text)
    return out, defects or None


class WeeklyFile(WeekInput):
    """A weekly file's data lines, after its header, from a stream of bytes."""

    def __init__(self, source: str, blocks: Iterable[bytes]) -> None:
        super().__init__(source)
        self._blocks = blocks

    def _first_blocks(self) -> Iterator[bytes]:
        """The blocks, after making sure the header line ends within :data:`MAX_LINE_BYTES`: a
        file whose first line runs on (a 2 GB file of anything but FINRA's header) is refused
        from its first bytes, not after reading it all."""
        blocks = iter(self._blocks)
        head = b""
        for block in blocks:
            head += block
            if b"\n" in head or len(head) > MAX_LINE_BYTES:
                break
        if len(head) > MAX_LINE_BYTES and b"\n" not in head[: MAX_LINE_BYTES + 1]:
            got = head[:60].decode("utf-8", "backslashreplace")
            raise InputFileError(
                f"{self.source}: bad header: expected {HEADER_LINE!r}, got {got + '…'!r} "
                f"(no line end in the first {MAX_LINE_BYTES:,} bytes)"
            )
        if head:
            yield head
        yield from blocks

    def _batches(self) -> Iterator[Batch]:
        number = 1
        header: str | None = None
        blank_start = False
        for raw, long in split_lines(self._first_blocks()):
            if number == 1 and raw[0].startswith(_BOM):
                raw[0] = raw[0][len(_BOM) :]
            lines, defects = decode_lines(raw, long)
            first = number
            number += len(lines)
            if header is None:
                header = lines[0]
                self._check_header(header, defects is not None and 0 in defects)
                blank_start = not header.strip()
                lines, first, defects = lines[1:], first + 1, _shift(defects)
            if blank_start:  # a blank first line: an empty file, or a header missing
                if any(line.strip() for line in lines):
                    raise InputFileError(f"{self.source}: bad header: expected {HEADER_LINE!r}, got ''")
                continue
            if lines:
                yield Batch(first, lines, defects)
        if header is None or blank_start:
            raise InputFileError(f"{self.source}: empty file (expected a header line: {HEADER_LINE})")

    def _check_header(self, header: str, damaged: bool) -> None:
        if header == HEADER_LINE and not damaged:
            return
        if not header.strip() and not damaged:
            return  # blank: decided once the rest of the file is seen
        got = header if len(header) <= 200 else header[:200] + "…"
        raise InputFileError(f"{self.source}: bad header: expected {HEADER_LINE!r}, got {got!r}")


def _shift(defects: dict[int, Defect] | None) -> dict[int, Defect] | None:
    """Defects re-indexed after dropping the first line of their batch."""
    if not defects:
        return None
    shifted = {index - 1: defect for index, defect in defects.items() if index}
    return shifted or None


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(path: Path, mode: int) -> InputFileError:
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return InputFileError(
        f"{path}: is {kind}, not a FINRA weekly file: give a regular file or an http(s) URL"
        if kind == "a directory"
        else f"{path}: is {kind}, not a regular file: a FINRA weekly file must be a file on disk or an http(s) URL"
    )


@contextmanager
def open_regular(path: Path) -> Iterator[BinaryIO]:
    """Open a regular file for reading; :class:`InputFileError` for anything else. Opened without
    blocking (a FIFO would otherwise wait for a writer forever) and checked on the open file, so a
    file swapped after the check cannot slip through."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except NotADirectoryError:
        raise InputFileError(f"{path}: no such file (a part of the path is not a folder)") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb", buffering=0) as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        yield handle


def _file_blocks(handle: BinaryIO, path: Path) -> Iterator[bytes]:
    try:
        while block := handle.read(BLOCK_BYTES):
            yield block
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


@contextmanager
def open_weekly(
    source: str | Path, *, read_timeout: float = DEFAULT_READ_TIMEOUT, deadline: float = DEFAULT_DEADLINE
) -> Iterator[WeeklyFile]:
    """A weekly file at a local path or an http(s) URL, ready to stream (the header is checked
    when the first batch is read). A download stops after ``deadline`` seconds in all, or after
    ``read_timeout`` seconds without a byte (:mod:`market_spine.finra.download`)."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        with stream_url(text, read_timeout=read_timeout, deadline=deadline) as blocks:
            yield WeeklyFile(text, blocks)
        return
    path = Path(source).expanduser()
    with open_regular(path) as handle:
        # Absolute, but through the links the user named (resolve() would print a path they never typed).
        yield WeeklyFile(os.path.abspath(path), _file_blocks(handle, path))


def scan_weekly(
    source: str | Path, *, read_timeout: float = DEFAULT_READ_TIMEOUT, deadline: float = DEFAULT_DEADLINE
) -> WeekStats:
    """Read a weekly file through (bounded memory) and return what its rows carry."""
    with open_weekly(source, read_timeout=read_timeout, deadline=deadline) as week:
        for _ in week.batches():
            pass
        return week.stats


# --- FINRA API records as lines ---------------------------------------------------------------


def _field_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # JSON may carry 1234.0 for an integer column
    return str(value)


def _storable(text: str) -> str | None:
    """Why a value from JSON cannot be stored as text (a NUL, a lone surrogate), or ``None``."""
    if "\x00" in text:
        return f"NUL character at character {text.index(chr(0)) + 1} of the record"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid Unicode: {text[exc.start]!r} at character {exc.start + 1} of the record"
    return None


class ApiWeek(WeekInput):
    """FINRA API records (objects keyed by the file's column names) as the lines a file would have
    for them, numbered from 1, batch by batch as they arrive. A week's record hashes are the same
    whichever way it came; the API's other fields (:data:`API_FIELDS`) travel beside the lines."""

    def __init__(self, source: str, records: Iterable[Mapping[str, object]], batch_rows: int = 1_000) -> None:
        super().__init__(source)
        self._records = records
        self._batch_rows = batch_rows

    def _batches(self) -> Iterator[Batch]:
        number = 1
        chunk: list[Mapping[str, object]] = []
        for record in self._records:
            chunk.append(record)
            if len(chunk) >= self._batch_rows:
                yield self._batch(number, chunk)
                number += len(chunk)
                chunk = []
        if chunk:
            yield self._batch(number, chunk)

    @staticmethod
    def _batch(first: int, records: list[Mapping[str, object]]) -> Batch:
        lines = ["|".join(_field_text(record.get(name)) for name in HEADER) for record in records]
        values = [
            tuple(None if record.get(name) is None else _field_text(record.get(name)) for name in API_FIELDS)
            for record in records
        ]
        defects: dict[int, Defect] = {}
        for index, (line, extra) in enumerate(zip(lines, values, strict=True)):
            whole = line + "".join(value or "" for value in extra)
            reason = _storable(whole)
            if reason is not None:
                digest = sha256(line.encode("utf-8", "backslashreplace")).hexdigest()
                defects[index] = Defect(reason, digest)
                lines[index] = line.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")
                values[index] = tuple(
                    None if v is None else v.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")
                    for v in extra
                )
        return Batch(first, lines, defects or None, values)


# --- whole weeks in memory, for small inputs (tests, the fake FINRA API) ------------------------


@dataclass(frozen=True)
class WeeklyData:
    """A week's data lines as received, with their line numbers, held in memory: for tests and
    small tools. Ingest streams instead (:func:`open_weekly`)."""

    source: str
    lines: list[str]
    line_numbers: list[int]
    stats: WeekStats  # what the lines carry: publication dates, tiers (see WeekStats.check)
    api_values: list[tuple[str | None, ...]] | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def rows(self) -> list[SourceRow]:
        return [SourceRow(n, line, split_fields(line)) for n, line in zip(self.line_numbers, self.lines, strict=True)]


def _collect(week: WeekInput) -> WeeklyData:
    lines: list[str] = []
    numbers: list[int] = []
    values: list[tuple[str | None, ...]] | None = None
    for batch in week.batches():
        for offset, line in enumerate(batch.lines):
            if line and not line.isspace():
                lines.append(line)
                numbers.append(batch.first + offset)
                if batch.api_values is not None:
                    values = values or []
                    values.append(batch.api_values[offset])
    return WeeklyData(week.source, lines, numbers, week.stats, values)


def read_weekly(source: str | Path) -> WeeklyData:
    """Read a whole weekly file into memory; :class:`InputFileError` if it cannot be used at all."""
    with open_weekly(source) as week:
        return _collect(week)


def weekly_from_records(source: str, records: Iterable[Mapping[str, object]]) -> WeeklyData:
    """FINRA API records → a week in memory, numbered from 1 (see :class:`ApiWeek`)."""
    return _collect(ApiWeek(source, records))
