"""What the docs say is what the code does: exit codes, outputs and behaviours, checked, not parsed.

- **Exit codes.** ``docs/reference/exit-codes.md`` is the one table: every error class's code is
  in it, naming the class, with the retry behaviour the class declares; every code it lists is one
  the code produces; every "exit code N" anywhere in README.md or docs/ is in it; every page that
  talks about exit codes links to it.
- **Outputs.** A ``console`` block right after a ``<!-- docs-test: run -->`` line is run, command by
  command, with the real ``spine`` on a fresh database (one per page, shared by its blocks in page
  order): each ``$ spine …`` must print exactly the lines shown under it (stderr, then stdout), and
  each ``$ echo $?`` the exit code shown. ``NAME=value`` before a command sets that variable for it;
  ``now=…`` on the marker pins the clock the CLI sees.
- **Behaviours the issue found contradicted** (issue 10): invalid settings are one line and exit 2,
  not a traceback; backfill follows trading weeks; the stale check counts from the next week's due
  day; the chart's enqueue CronJobs have a source (``tests/chart/test_chart_docs.py``); exit code 6
  is documented. Each is checked against the code, and the wrong sentences may not come back.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

import market_spine
from market_spine.cli import db as db_cli
from market_spine.cli import doctor as doctor_cli
from market_spine.core.calendar import WEEK
from market_spine.core.gaps import detect_gaps
from market_spine.core.partitions import Tier
from market_spine.core.stages import Stage
from market_spine.errors import SpineError
from market_spine.finra.schedule import finra_calendar
from tests.docs.test_doc_commands import ASSIGNMENT, README, ROOT, code_blocks, documents, logical_lines, shell_words
from tests.support.cli import Spine

EXIT_CODES = ROOT / "docs" / "reference" / "exit-codes.md"
MARKER = re.compile(r"^<!--\s*docs-test:\s*run(?P<options>[^>]*)-->\s*$")
EMBEDDED_NOTE = re.compile(r"^spine: using the embedded PostgreSQL in .*$")
# "exit code 7", "exit codes 3 and 7", "(exit 4)", "exits with code 2", "# exit 4", "exit 0/1/2"
MENTION = re.compile(
    r"\bexit(?:s with)?(?: status| codes?| code)?\s+(?P<codes>\d+(?:\s*(?:/|,|and|or)\s*\d+)*)\b", re.I
)


# --- the table and the code ------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    code: int
    errors: tuple[str, ...]
    meaning: str
    retried: str


def table() -> dict[int, Row]:
    rows: dict[int, Row] = {}
    for line in EXIT_CODES.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].isdigit():
            errors = tuple(re.findall(r"`(\w+)`", cells[1]))
            rows[int(cells[0])] = Row(int(cells[0]), errors, cells[2], cells[3])
    return rows


def error_classes() -> list[type[SpineError]]:
    """Every public SpineError subclass in the product (all its modules imported)."""
    for module in pkgutil.walk_packages(market_spine.__path__, "market_spine."):
        if not module.name.startswith(("market_spine.db.migrations", "market_spine.operator")):
            importlib.import_module(module.name)
    found: list[type[SpineError]] = []
    todo = [SpineError]
    while todo:
        cls = todo.pop()
        if not cls.__name__.startswith("_"):
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_class_is_in_the_table_with_its_code_and_retry() -> None:
    rows = table()
    assert rows, f"{EXIT_CODES} has no table"
    for cls in error_classes():
        row = rows.get(cls.exit_code)
        assert row is not None, f"{cls.__name__} exits {cls.exit_code}, which {EXIT_CODES.name} does not list"
        named = [base.__name__ for base in cls.__mro__ if base.__name__ in row.errors]
        assert named, f"row {cls.exit_code} names none of {cls.__name__}'s classes: {row.errors}"
        if row.retried in ("yes", "no"):
            assert row.retried == ("yes" if cls.retryable else "no"), (cls.__name__, row.retried)


def test_every_code_in_the_table_is_one_spine_produces() -> None:
    produced = {cls.exit_code for cls in error_classes()}
    # Besides the error classes: success, the doctor's verdicts, a declined reset, Ctrl-C.
    produced |= {doctor_cli.EXIT_HEALTHY, doctor_cli.EXIT_GAPS, doctor_cli.EXIT_UNCHECKED, db_cli.EXIT_DECLINED, 130}
    rows = table()
    assert set(rows) == produced
    for row in rows.values():  # a class a row names is a real class with that code
        for name in row.errors:
            (cls,) = [c for c in error_classes() if c.__name__ == name]
            assert cls.exit_code == row.code, (name, row.code)
    assert "gaps found" in rows[doctor_cli.EXIT_GAPS].meaning
    assert "`spine doctor` exits 2 for every failure" in rows[doctor_cli.EXIT_UNCHECKED].meaning


def test_every_exit_code_the_docs_mention_is_in_the_table() -> None:
    documented = set(table())
    wrong = []
    for doc in documents():
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
            for match in MENTION.finditer(line):
                for code in map(int, re.findall(r"\d+", match["codes"])):
                    if code not in documented:
                        wrong.append(f"{doc.relative_to(ROOT)}:{number}: exit code {code}: {line.strip()}")
    assert not wrong, "exit codes missing from docs/reference/exit-codes.md:\n" + "\n".join(wrong)


def test_pages_that_talk_about_exit_codes_link_to_the_one_table() -> None:
    unlinked = [
        doc.relative_to(ROOT).as_posix()
        for doc in documents()
        if doc != EXIT_CODES
        and re.search(r"exit code", doc.read_text(encoding="utf-8"), re.I)
        and "reference/exit-codes.md" not in doc.read_text(encoding="utf-8")
    ]
    assert not unlinked, f"these pages mention exit codes but do not link to the table: {unlinked}"


# --- documented outputs, run ------------------------------------------------------------------------


@dataclass
class Step:
    line: int
    command: str
    expected: list[str]


@dataclass
class Block:
    path: Path
    line: int
    now: datetime | None
    steps: list[Step]
    setup: str | None = None  # a scenario the page builds first (see SETUPS)


def checked_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    for language, first, content in code_blocks("\n".join(lines)):
        marker = MARKER.match(lines[first - 3]) if first >= 3 else None
        if not marker:
            continue
        assert language == "console", f"{path.name}:{first}: a docs-test block must be a console block"
        now = re.search(r"now=(\S+)", marker["options"])
        steps: list[Step] = []
        for offset, text in enumerate(content):
            if text.startswith("$ "):
                steps.append(Step(first + offset, text[2:], []))
            else:
                assert steps, f"{path.name}:{first + offset}: output before any command"
                steps[-1].expected.append(text.rstrip())
        when = datetime.fromisoformat(now[1]).astimezone(UTC) if now else None
        setup = re.search(r"setup=(\S+)", marker["options"])
        blocks.append(Block(path, first, when, steps, setup[1] if setup else None))
    return blocks


def pages_with_checked_blocks() -> list[Path]:
    return [doc for doc in documents() if checked_blocks(doc)]


def run_step(
    spine: Spine, step: Step, last: int, monkeypatch: pytest.MonkeyPatch, paths: dict[str, str]
) -> tuple[int, list[str]]:
    words = [_moved(word, paths) for word in shell_words(step.command)]
    if words == ["echo", "$?"]:
        return last, [str(last)]
    env = {}
    while words and ASSIGNMENT.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[:1] == ["spine"], f"a docs-test block runs only `spine …` and `echo $?`, not: {step.command}"
    with monkeypatch.context() as scoped:
        for name, value in env.items():
            scoped.setenv(name, value)
        result = spine(*words[1:])
    printed = [ln for ln in (result.err + result.out).splitlines() if not EMBEDDED_NOTE.match(ln)]
    return result.code, [ln.rstrip() for ln in printed]


def test_some_pages_have_checked_examples() -> None:
    """Guards the marker: the exit-code page, README and the ops pages carry run examples."""
    pages = {p.relative_to(ROOT).as_posix() for p in pages_with_checked_blocks()}
    assert {"docs/reference/exit-codes.md", "README.md", "docs/ops/scheduling.md"} <= pages


def _moved(text: str, paths: dict[str, str]) -> str:
    """``text`` with the page's example folders (``/tmp/finra-landing``) moved to the test's own."""
    for documented, actual in paths.items():
        text = text.replace(documented, actual)
    return text


@pytest.mark.parametrize("page", pages_with_checked_blocks(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_documented_output_is_what_spine_prints(
    page: Path, spine: Spine, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    last = 0
    paths: dict[str, str] = {}
    done: set[str] = set()
    for block in checked_blocks(page):
        if block.setup and block.setup not in done:
            paths |= SETUPS[block.setup](page, spine, request, tmp_path)
            done.add(block.setup)
        spine.now = block.now
        for step in block.steps:
            last, printed = run_step(spine, step, last, monkeypatch, paths)
            expected = [_moved(line, paths) for line in step.expected if not EMBEDDED_NOTE.match(line)]
            where = f"{page.relative_to(ROOT)}:{step.line}: $ {step.command}"
            assert printed == expected, f"{where}\n  documented: {expected}\n  printed:    {printed}"


def build_the_pages_scratch_database(
    page: Path, spine: Spine, request: pytest.FixtureRequest, tmp_path: Path
) -> dict[str, str]:
    """Run the page's own recipe (the shell block that writes sample weeks): its folders become the
    test's, its ``cp`` of FINRA's real files, its ``python -c`` and its ``spine`` commands run as
    written. Needs ../shared/data (skips without it)."""
    request.getfixturevalue("finra_files")
    paths = {"/tmp/finra-landing": str(tmp_path / "finra-landing"), "/tmp/finra-incoming": str(tmp_path / "incoming")}
    text = page.read_text(encoding="utf-8")
    (recipe,) = [lines for language, _, lines in code_blocks(text) if language == "bash" and any(
        "write_sample_week" in line for line in lines)]  # fmt: skip
    script = "\n".join(recipe)
    snippet = re.search(r"^\S*python -c '(?P<code>.*?)'\n", script, re.S | re.M)
    assert snippet, "the recipe writes its sample weeks with `.venv/bin/python -c '…'`"
    script = script.replace(snippet.group(0), "PYTHON_SNIPPET\n")  # run where the page runs it
    for _, line in logical_lines(script.splitlines(), 1):
        words = [_moved(word, paths) for word in shell_words(line)] if line and not line.startswith("#") else []
        if not words or words[0] == "export":  # SPINE_DATA_DIR: the test's database is SPINE_DATABASE_URL
            continue
        if words[:2] == ["mkdir", "-p"]:
            Path(words[2]).mkdir(parents=True, exist_ok=True)
        elif words[0] == "cp":
            for source in words[1:-1]:
                shutil.copy(ROOT / source, words[-1])
        elif words[0] == "spine":
            result = spine(*words[1:])
            assert result.code == 0, (line, result.err)
        elif words == ["PYTHON_SNIPPET"]:
            exec(_moved(snippet["code"], paths), {})  # the page's own Python, as documented
        else:
            raise AssertionError(f"{page.name}: the recipe runs something the test cannot: {line}")
    return paths


SETUPS = {"gap-detection-example": build_the_pages_scratch_database}


# --- the contradictions issue 10 listed ---------------------------------------------------------------


def _text(path: Path) -> str:
    return re.sub(r"\s+", " ", path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("wrong", "why"),
    [
        (r"traceback,? exit code 1", "an invalid SPINE_* value is one line and exit code 2"),
        (r"pydantic traceback", "an invalid SPINE_* value is one line and exit code 2"),
        (r"have no data source", "the chart's enqueue CronJobs run with --source finra-api"),
        (r"does not subtract the (publication )?lag", "the stale check counts from the next week's due day"),
        (r"\bspine_demo\b", "the demo uses spine's own database and creates none"),
        (r"drops? and recreates?", "the demo drops nothing"),
    ],
)
def test_the_contradictions_do_not_come_back(wrong: str, why: str) -> None:
    found = [doc.relative_to(ROOT).as_posix() for doc in documents() if re.search(wrong, _text(doc), re.I)]
    assert not found, f"{found} say {wrong!r}, but {why}"


def test_readme_documents_invalid_settings_as_one_line_and_exit_2() -> None:
    readme = _text(README)
    assert "An invalid `SPINE_*` value stops the command the same way" in readme
    steps = [s for b in checked_blocks(README) for s in b.steps]
    assert any(s.command.startswith("SPINE_PUBLICATION_GRACE_DAYS=") for s in steps)  # run above, exit 2


def test_the_stale_check_counts_from_when_the_next_week_became_due() -> None:
    """gap-detection.md: stale when "the week after a tier's newest complete (CALC) week has been
    due for more than --stale-days days"; due is FINRA's first publication plus the grace."""
    doc = _text(ROOT / "docs" / "ops" / "gap-detection.md")
    assert "the week after a tier's newest complete (`CALC`) week has been due for more than `--stale-days` days" in doc
    calendar = finra_calendar(1)
    week, tier = date(2025, 11, 10), Tier.OTC
    next_due = calendar.due(week + WEEK, tier)
    manifest = {(week, tier): {stage: datetime(2025, 12, 16, tzinfo=UTC) for stage in Stage}}

    def stale(as_of: date) -> bool:
        report = detect_gaps(
            as_of=as_of, expected=[(week, tier)], manifest=manifest, stale_after_days=14, due=calendar.due
        )
        return bool(report.stale)

    assert not stale(next_due + timedelta(days=14))
    assert stale(next_due + timedelta(days=15))
    assert next_due - week > timedelta(days=35)  # counted from the publication, not the week's Monday
