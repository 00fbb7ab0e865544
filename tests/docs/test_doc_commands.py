"""The ``spine`` commands shown in README.md and docs/**/*.md parse with the real CLI.

Every line of a fenced ``bash``/``sh``/``shell``/``console`` block whose command is ``spine``
(or a path ending in ``/spine``) is parsed by the Typer app's own command tree without running
it: subcommand names, option names, arity, choices, value types and required arguments are all
checked, and nothing touches a database. Backslash continuations are joined, a leading ``$ ``
prompt is stripped (in ``console`` blocks that use prompts, only prompted lines are commands),
leading ``NAME=value`` assignments and ``if``/``!``/``exec`` are skipped, and the command ends at a
pipe, ``;``, ``&&``, ``||``, ``&`` or a comment; redirections are dropped.

Also: every document listed under README's "Documentation" heading exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer

from market_spine.cli import kubectl as kubectl_plugin
from market_spine.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console", "shell-session"})
# Words that may precede the command on a line: `if ! spine doctor …; then`, `exec spine …`.
PREFIX_WORDS = frozenset({"!", "exec", "time", "if", "elif", "while", "until", "then", "do", "else"})
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
MENTIONS_SPINE = re.compile(r"(^|[\s=/])spine\s")
PLACEHOLDER = re.compile(r"<[A-Za-z_…][\w.…-]*>")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)")


def documents() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


@dataclass(frozen=True)
class DocCommand:
    path: Path
    line: int  # 1-based line of the command's first line
    text: str  # as written, continuation lines joined
    argv: tuple[str, ...]  # the words after `spine` (or `kubectl spine`)
    problem: str | None = None  # why the line could not even be split into words
    program: str = "spine"  # or "kubectl spine", the kubectl plugin

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


# --- extraction ------------------------------------------------------------------------------


def code_blocks(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """(language, line number of the block's first content line, content lines) per fenced block."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        fence = opening["fence"]
        language = opening["info"].lower()
        start = index + 1
        index = start
        while index < len(lines):
            closing = FENCE.match(lines[index])
            if (
                closing
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"]
            ):
                break
            index += 1
        yield language, start + 1, lines[start:index]
        index += 1


def logical_lines(lines: list[str], first_number: int) -> Iterator[tuple[int, str]]:
    """Join backslash-continued lines; yield (line number of the first physical line, text)."""
    buffer: list[str] = []
    number = first_number
    for offset, physical in enumerate(lines):
        if not buffer:
            number = first_number + offset
        stripped = physical.strip()
        if stripped.endswith("\\") and not stripped.endswith("\\\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        yield number, " ".join(part for part in buffer if part)
        buffer = []
    if buffer:
        yield number, " ".join(part for part in buffer if part)


def _closing(line: str, start: int, opener: str, closer: str) -> int:
    """Index of the ``closer`` matching the ``opener`` at ``start`` (nesting counted)."""
    depth = 0
    for index in range(start, len(line)):
        if line[index] == opener:
            depth += 1
        elif line[index] == closer:
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced {opener}{closer}")


def shell_words(line: str) -> list[str]:
    """The words of the first simple command on ``line``, as the shell would pass them.

    Quotes are removed; ``$(…)``, ``${…}``, ``$NAME`` and backticks stay verbatim (the CLI then
    sees them as literal values); the command ends at ``|``, ``&``, ``;`` or a comment;
    redirections (``> file``, ``2>&1``, ``< file``) are dropped.
    """
    words: list[str] = []
    current: list[str] = []
    in_word = False
    drop_next = False
    index = 0

    def flush() -> None:
        nonlocal current, in_word, drop_next
        if in_word:
            if drop_next:
                drop_next = False
            else:
                words.append("".join(current))
        current, in_word = [], False

    while index < len(line):
        char = line[index]
        if char in " \t":
            flush()
            index += 1
        elif (char == "#" and not in_word) or char in "|&;":  # a comment or a control operator
            break
        elif char in "<>":
            if in_word and "".join(current).isdigit():  # a file descriptor: 2>&1
                current, in_word = [], False
            flush()
            while index < len(line) and line[index] in "<>&":
                index += 1
            drop_next = True
        elif char == "'":
            end = line.index("'", index + 1)
            current.append(line[index + 1 : end])
            in_word, index = True, end + 1
        elif char == '"':
            index += 1
            while line[index] != '"':
                if line[index] == "\\" and line[index + 1] in '"\\$`':
                    index += 1
                elif line.startswith("$(", index):
                    end = _closing(line, index + 1, "(", ")")
                    current.append(line[index : end + 1])
                    index = end + 1
                    continue
                current.append(line[index])
                index += 1
            in_word, index = True, index + 1
        elif char == "\\":
            current.append(line[index + 1 : index + 2])
            in_word, index = True, index + 2
        elif line.startswith("$(", index) or line.startswith("${", index):
            opener, closer = ("(", ")") if line[index + 1] == "(" else ("{", "}")
            end = _closing(line, index + 1, opener, closer)
            current.append(line[index : end + 1])
            in_word, index = True, end + 1
        elif char == "`":
            end = line.index("`", index + 1)
            current.append(line[index : end + 1])
            in_word, index = True, end + 1
        else:
            current.append(char)
            in_word, index = True, index + 1
    flush()
    return words


def spine_argv(words: list[str]) -> tuple[str, ...] | None:
    """The arguments after ``spine`` if ``words`` run spine, else None."""
    position = 0
    while position < len(words) and (ASSIGNMENT.match(words[position]) or words[position] in PREFIX_WORDS):
        position += 1
    if position < len(words) and (words[position] == "spine" or words[position].endswith("/spine")):
        return tuple(words[position + 1 :])
    return None


def plugin_argv(words: list[str]) -> tuple[str, ...] | None:
    """The arguments after ``kubectl spine`` if ``words`` run the kubectl plugin, else None."""
    position = 0
    while position < len(words) and (ASSIGNMENT.match(words[position]) or words[position] in PREFIX_WORDS):
        position += 1
    if words[position : position + 2] == ["kubectl", "spine"]:
        return tuple(words[position + 2 :])
    return None


def extract_commands(path: Path, text: str | None = None) -> list[DocCommand]:
    text = path.read_text(encoding="utf-8") if text is None else text
    found: list[DocCommand] = []
    for language, first, block in code_blocks(text):
        if language not in SHELL_LANGUAGES:
            continue
        lines = block
        if language in ("console", "shell-session") and any(ln.lstrip().startswith("$ ") for ln in block):
            # Keep prompted lines and their continuations; blank out output lines.
            lines = []
            continuing = False
            for ln in block:
                stripped = ln.lstrip()
                if stripped.startswith("$ ") or continuing:
                    lines.append(stripped.removeprefix("$ "))
                    continuing = stripped.rstrip().endswith("\\")
                else:
                    lines.append("")
        for number, line in logical_lines(lines, first):
            command = line.removeprefix("$ ").strip()
            if not command:
                continue
            try:
                words = shell_words(command)
            except (ValueError, IndexError) as exc:  # unbalanced quotes: report it, don't guess
                if MENTIONS_SPINE.search(command):
                    found.append(DocCommand(path, number, command, (), f"cannot split the shell line: {exc}"))
                continue
            argv = spine_argv(words)
            if argv is not None:
                found.append(DocCommand(path, number, command, argv))
            elif (plugin := plugin_argv(words)) is not None:
                found.append(DocCommand(path, number, command, plugin, program="kubectl spine"))
    return found


# --- checking against the CLI -----------------------------------------------------------------


@cache
def root_command() -> Any:
    return typer.main.get_command(app)


def _subcommand_args(ctx: Any) -> list[str]:
    protected = getattr(ctx, "_protected_args", None)
    if protected is None:
        protected = getattr(ctx, "protected_args", [])
    return [*protected, *ctx.args]


def _parse(command: Any, name: str, args: list[str], parent: Any) -> None:
    ctx = command.make_context(name, list(args), parent=parent, resilient_parsing=False)
    if not hasattr(command, "resolve_command"):  # a leaf command: parsed completely
        return
    rest = _subcommand_args(ctx)
    if not rest:
        if not getattr(command, "invoke_without_command", False):
            raise LookupError(f"`{ctx.command_path}` needs a subcommand")
        return
    sub_name, sub, sub_args = command.resolve_command(ctx, rest)
    if sub is None:
        raise LookupError(f"no such command {rest[0]!r} under `{ctx.command_path}`")
    _parse(sub, sub_name, sub_args, ctx)


@cache
def plugin_command() -> Any:
    return kubectl_plugin.command()


def plugin_parse_error(argv: tuple[str, ...] | list[str]) -> str | None:
    """None if ``kubectl spine *argv`` parses (flags anywhere, as the plugin takes them), else
    why not; a verb that hands its arguments to a spine command has them parsed as that command's."""
    args = kubectl_plugin.hoist_flags(argv)
    error = parse_error(args, plugin_command(), "kubectl spine")
    if error:
        return error
    rest = [word for word in args if word not in kubectl_plugin.GLOBAL_FLAGS]
    rest = [w for i, w in enumerate(rest) if i == 0 or rest[i - 1] not in kubectl_plugin.GLOBAL_FLAGS]
    verb = next((w for w in rest if not w.startswith("-")), None)
    forwarded = {"backfill": ["work", "backfill"], "doctor": ["doctor"]}
    if verb in forwarded:
        return parse_error([*forwarded[verb], *rest[rest.index(verb) + 1 :]])
    return None


def parse_error(argv: tuple[str, ...] | list[str], root: Any = None, name: str = "spine") -> str | None:
    """None if ``spine *argv`` parses, else why not (the CLI's own message)."""
    try:
        _parse(root or root_command(), name, list(argv), None)
    except Exception as exc:  # click's and Typer's vendored click's exceptions differ in type
        kind = type(exc).__name__
        if kind == "Exit" and getattr(exc, "exit_code", 1) == 0:  # --help, --version
            return None
        if kind == "NoArgsIsHelpError":  # a bare group such as `spine work`: prints its help
            return None
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return f"{kind}: {message}"
    return None


def check(command: DocCommand) -> str | None:
    if command.problem:
        return command.problem
    placeholder = PLACEHOLDER.search(command.text)
    if placeholder:
        return f"placeholder {placeholder.group()} instead of a real value"
    if command.program == "kubectl spine":
        return plugin_parse_error(command.argv)
    return parse_error(command.argv)


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_doc_commands_parse(doc: Path) -> None:
    failures = [(command, error) for command in extract_commands(doc) if (error := check(command))]
    report = "\n".join(f"{c.where()}: {c.text}\n    -> {error}" for c, error in failures)
    assert not failures, f"{len(failures)} `spine` command(s) in docs do not parse:\n{report}"


def test_readme_commands_are_found() -> None:
    """Guards the extractor: README's CLI section alone has over ten commands, doctor among them."""
    commands = extract_commands(README)
    assert len(commands) >= 10
    assert any(c.argv[:1] == ("doctor",) for c in commands)
    assert all(re.match(r"([A-Z_]+=\S* )*(\.venv/bin/)?spine |kubectl spine ", c.text) for c in commands)
    assert any(c.program == "kubectl spine" for c in commands)


def _documentation_section(text: str) -> str:
    match = re.search(r"^## Documentation\s*$(?P<body>.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, "README.md has no '## Documentation' section"
    return match["body"]


def test_readme_documentation_list_exists() -> None:
    body = _documentation_section(README.read_text(encoding="utf-8"))
    listed = re.findall(r"`([^`\s]+\.md)`|\]\(([^)\s#]+\.md)(?:#[^)]*)?\)", body)
    paths = sorted({a or b for a, b in listed})
    assert paths, "README's Documentation section lists no documents"
    missing = [p for p in paths if not (ROOT / p).is_file()]
    assert not missing, f"README's Documentation section lists documents that do not exist: {', '.join(missing)}"


# --- the checker itself -----------------------------------------------------------------------

SAMPLE = """\
Prose with `spine doctor --bogus` inline is not a command.

```bash
# a comment
SPINE_DATA_DIR=/tmp/x/pg spine doctor finra.otc_transparency --weeks 4 \\
    --as-of 2025-12-22 --format json | jq -r '.gaps[].remediation'
spine query hhi --week-ending 2025-12-15 --tier OTC > /tmp/hhi.txt 2>&1
if ! spine doctor finra.otc_transparency --format prometheus > "$DIR/spine.prom.$$"; then exit 1; fi
kubectl get swi
.venv/bin/spine db upgrade && echo done
```

  ```console
  $ spine work list --state FAILED
  NAME  PIPELINE
  spine is not a command here
  ```

```yaml
args: [spine, doctor]
```

```text
spine doctor --not-checked
```
"""


def test_extractor_understands_shell_syntax() -> None:
    commands = extract_commands(README, SAMPLE)
    assert [c.argv for c in commands] == [
        ("doctor", "finra.otc_transparency", "--weeks", "4", "--as-of", "2025-12-22", "--format", "json"),
        ("query", "hhi", "--week-ending", "2025-12-15", "--tier", "OTC"),
        ("doctor", "finra.otc_transparency", "--format", "prometheus"),
        ("db", "upgrade"),
        ("work", "list", "--state", "FAILED"),
    ]
    assert [c.line for c in commands] == [5, 7, 8, 10, 14]
    assert all(check(c) is None for c in commands)


@pytest.mark.parametrize(
    "argv",
    [
        ["doctor", "finra.otc_transparency", "--wekes", "2"],  # unknown option
        ["doctor", "finra.otc_transparency", "--format", "yaml"],  # not a choice
        ["doctor", "finra.otc_transparency", "--weeks", "two"],  # not an int
        ["doctor"],  # missing argument
        ["run", "finra.otc_transparency.ingest_week", "--week-ending", "2025-12-15"],  # missing --tier
        ["work", "enqeue", "x"],  # unknown subcommand
        ["query", "captures", "--week-ending", "2025-12-15", "--tier", "OTC", "extra"],  # extra argument
        ["db", "upgrade", "--force"],  # no such option
    ],
)
def test_checker_rejects_bad_commands(argv: list[str]) -> None:
    assert parse_error(argv) is not None


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["work"],
        ["doctor", "--help"],
        ["operator", "run"],
        ["work", "backfill", "finra.otc_transparency.ingest_week", "--from", "2025-10-06", "--to", "2025-12-22"],
    ],
)
def test_checker_accepts_good_commands(argv: list[str]) -> None:
    assert parse_error(argv) is None


def test_placeholders_and_broken_quotes_are_reported() -> None:
    text = "```bash\nspine work retry <pipeline> --week-ending <week> --tier OTC\nspine doctor 'unclosed\n```\n"
    placeholder, unbalanced = extract_commands(README, text)
    assert "placeholder" in (check(placeholder) or "")
    assert "cannot split" in (check(unbalanced) or "")


# --- the FINRA data page: its commands run, in order, as written ------------------------------------

FINRA_PAGE = ROOT / "docs" / "finra-data.md"
EXIT_COMMENT = re.compile(r"#\s*exit\s+(\d+)\s*$")


def runnable_commands(path: Path) -> list[tuple[DocCommand, int]]:
    """Each ``spine`` command of the page's shell blocks with the exit code its ``# exit N``
    comment documents (0 without one), in page order."""
    comments = {}
    text = path.read_text(encoding="utf-8")
    for language, first, lines in code_blocks(text):
        if language in SHELL_LANGUAGES:
            for number, line in logical_lines(lines, first):
                match = EXIT_COMMENT.search(line)
                comments[number] = int(match[1]) if match else 0
    return [(command, comments[command.line]) for command in extract_commands(path, text)]


def test_the_finra_data_page_is_listed_and_has_commands() -> None:
    readme = README.read_text(encoding="utf-8")
    assert "docs/finra-data.md" in readme
    commands = runnable_commands(FINRA_PAGE)
    assert len(commands) >= 6
    assert [code for _, code in commands].count(4) == 2  # the refused examples: a wrong week, /dev/zero


@pytest.mark.realdata
def test_the_finra_data_page_commands_run_as_written(
    spine: Any, finra_api: Any, finra_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run every command of docs/finra-data.md from the repository root (where its relative paths
    to ../shared/data point), with FINRA's API played by the test double and the clock on the day
    after FINRA published the second real file; each exits with the code the page documents."""
    from datetime import UTC, datetime

    monkeypatch.chdir(ROOT)
    spine.now = datetime(2025, 12, 23, 10, 0, tzinfo=UTC)
    for command, expected in runnable_commands(FINRA_PAGE):
        result = spine(*command.argv)
        assert result.code == expected, (command.where(), command.text, result.err)
        assert "Traceback" not in result.err, command.where()
