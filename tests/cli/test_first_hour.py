"""A new user's first hour (issue 10, acceptance criteria 1 and 2), with real processes: ``make
demo``'s program, then ``spine`` commands, on a fresh per-user data folder (``XDG_DATA_HOME``), as
on a fresh clone. The demo writes into the database ``spine`` uses, so ``work list``, ``query hhi``
and ``doctor`` show its work; a second run drops nothing and says what was already done; on a real
80-column terminal (``script``), nothing ``work list`` or ``doctor`` prints is cut.

The demo reads the sample weeks it generates (``SPINE_DEMO_DATA`` names no folder), so these run
with or without ../shared/data.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from market_spine.db.engine import stop_embedded

BIN = Path(sys.executable).parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class User:
    home: Path  # XDG_DATA_HOME
    cwd: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_")}
        env.update(XDG_DATA_HOME=str(self.home), SPINE_DEMO_DATA=str(self.cwd / "no-such-folder"), TERM="xterm")
        return env

    @property
    def data_dir(self) -> Path:
        return self.home / "market-spine" / "pgdata"

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=600, check=False
        )

    def spine(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(BIN / "spine"), *args)

    def demo(self) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "market_spine.demo")

    def terminal(self, *args: str, columns: int = 80) -> str:
        """``spine`` on a real terminal (a pty, through ``script``) ``columns`` wide; what it drew,
        without colour codes and carriage returns."""
        if shutil.which("script") is None:
            pytest.skip("needs `script` (util-linux) to run spine on a terminal")
        command = shlex.join([str(BIN / "spine"), *args])
        env = {**self.env, "COLUMNS": str(columns), "LINES": "50"}
        done = subprocess.run(
            ["script", "-qec", f"stty cols {columns} rows 50; {command}", "/dev/null"],
            cwd=self.cwd, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        return done.stdout.replace("\r", "")


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    folder = Path(tempfile.mkdtemp(prefix="spine-first-hour-"))
    (folder / "checkout").mkdir()
    person = User(home=folder / "data", cwd=folder / "checkout")
    try:
        yield person
    finally:
        stop_embedded(person.data_dir)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def first_demo(user: User) -> subprocess.CompletedProcess[str]:
    done = user.demo()
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_demo_writes_where_spine_looks(user: User, first_demo: subprocess.CompletedProcess[str]) -> None:
    out = first_demo.stdout
    assert f"Database: the embedded PostgreSQL in {user.data_dir} (spine's default)" in out
    assert "sample files in FINRA's format, 2 weeks of each of 3 tiers (6 files), in" in out
    assert "HEALTHY: 6 partitions expected, 0 missing, 0 incomplete, 0 failed" in out
    enqueued = re.findall(r"^  (\S+): enqueued$", out, re.M)
    assert len(enqueued) == 6

    listed = user.spine("work", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert len(items) == 18  # 6 partitions × ingest, normalize, compute
    assert {i["state"] for i in items} == {"COMPLETE"}
    assert set(enqueued) <= {i["name"] for i in items}

    top = user.spine("query", "hhi", "--sort", "hhi", "--limit", "5", "--min-venues", "2", "--format", "json")
    assert top.returncode == 0, top.stderr
    rows = json.loads(top.stdout)
    assert len(rows) == 5 and all(r["venue_count"] >= 2 for r in rows)
    assert [r["hhi"] for r in rows] == sorted((r["hhi"] for r in rows), reverse=True)
    # The demo printed, per tier, the command behind its list: it gives the demo's rows.
    for command in re.findall(r"^  \S+/spine (query hhi --week .*)$", out, re.M):
        again = user.spine(*shlex.split(command), "--format", "json")
        symbols = [r["symbol"] for r in json.loads(again.stdout)]
        tier = shlex.split(command)[shlex.split(command).index("--tier") + 1]
        block = re.search(rf"^  {tier}, week .*\n((?:    .*\n)+)", out, re.M)
        assert block, out
        assert symbols == re.findall(r"^    (\S+)\s+HHI", block[1], re.M)

    doctor = user.spine("doctor", "finra.otc_transparency")
    assert doctor.returncode == 1  # today's window holds none of the demo's 2025 weeks …
    assert (  # … and the report says what the database does hold
        "computed weeks held: NMS_TIER_1 2 weeks (2025-11-24 to 2025-12-01); "
        "NMS_TIER_2 2 weeks (2025-11-10 to 2025-11-17); OTC 2 weeks (2025-11-10 to 2025-11-17)"
    ) in doctor.stdout
    checked = re.search(r"^  \S+/spine (doctor .*)$", out, re.M)
    assert checked, out
    assert user.spine(*shlex.split(checked[1])).returncode == 0  # the demo's own check, reproduced


def test_a_second_demo_drops_nothing_and_says_what_was_done(
    user: User, first_demo: subprocess.CompletedProcess[str]
) -> None:
    before = json.loads(user.spine("query", "captures", "--format", "json").stdout)
    again = user.demo()
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(re.findall(r"^  \S+: already enqueued, COMPLETE$", again.stdout, re.M)) == 6
    assert "nothing to run: already done (18 work items COMPLETE in this database)" in again.stdout
    assert "HEALTHY" in again.stdout
    assert json.loads(user.spine("query", "captures", "--format", "json").stdout) == before  # same captures, same times


def _whole_on_a_line(value: str, drawn: str) -> bool:
    return any(value in line for line in drawn.splitlines())


@pytest.mark.parametrize("columns", [80, 160])
def test_nothing_work_list_or_doctor_prints_is_cut_on_a_terminal(
    user: User, first_demo: subprocess.CompletedProcess[str], columns: int
) -> None:
    """Acceptance criterion 2: on a real terminal ``columns`` wide, every identifier of ``work
    list`` and every remediation command of ``doctor`` is printed whole, on one line."""
    failing = ("finra.otc_transparency.ingest_week", "--week", "2025-12-08", "--tier", "NMS_TIER_2")
    if not user.spine("work", "list", "--state", "FAILED", "--format", "json").stdout.strip("[]\n"):
        enqueued = user.spine("work", "enqueue", *failing, "--file", "/nowhere/finra_otc_weekly_nms_tier_2.csv",
                              "--max-attempts", "1")  # fmt: skip
        assert enqueued.returncode == 0, enqueued.stderr
        assert user.spine("worker", "--until-idle").returncode == 0

    items = json.loads(user.spine("work", "list", "--format", "json").stdout)
    drawn = ANSI.sub("", user.terminal("work", "list", columns=columns))
    assert "…" not in drawn
    for item in items:
        for field in ("name", "pipeline", "state", "week", "tier"):
            assert _whole_on_a_line(str(item[field]), drawn), (field, item[field], drawn)
        if item["last_error"]:
            assert _whole_on_a_line(item["last_error"], drawn)

    report = json.loads(user.spine("doctor", "finra.otc_transparency", "--weeks", "2", "--format", "json").stdout)
    assert {g["kind"] for g in report["gaps"]} >= {"missing_partition", "failed_work"}
    raw = user.terminal("doctor", "finra.otc_transparency", "--weeks", "2", columns=columns)
    assert "\x1b[1mGAPS FOUND" in raw  # it did draw for a terminal
    drawn = ANSI.sub("", raw)
    for gap in report["gaps"]:
        lines = [line.strip() for line in drawn.splitlines()]
        assert gap["remediation"] in lines, (gap["remediation"], drawn)  # a line of its own


def test_piped_output_is_plain_and_complete(user: User, first_demo: subprocess.CompletedProcess[str]) -> None:
    listed = user.spine("work", "list")
    assert "\x1b[" not in listed.stdout
    names = [i["name"] for i in json.loads(user.spine("work", "list", "--format", "json").stdout)]
    rows = listed.stdout.splitlines()[1:]
    assert [re.split(r"\s{2,}", row)[0] for row in rows] == names


def test_the_demo_never_drops_a_database_named_by_spine_database_url(database_url: str, tmp_path: Path) -> None:
    """With SPINE_DATABASE_URL set, the demo migrates and writes into that database, keeps what
    was there, and creates (or drops) no other database."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE users_own (note text)"))
        conn.execute(text("INSERT INTO users_own VALUES ('keep me')"))
        databases = set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_")}
    env.update(SPINE_DATABASE_URL=database_url, SPINE_DEMO_DATA=str(tmp_path / "none"), XDG_DATA_HOME=str(tmp_path))
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "market_spine.demo"], env=env, capture_output=True, text=True, timeout=600,
            check=False, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Database: SPINE_DATABASE_URL (" in done.stdout
    with engine.connect() as conn:
        assert conn.execute(text("SELECT note FROM users_own")).scalars().all() == ["keep me"]
        assert conn.execute(text("SELECT count(*) FROM core_work_items")).scalar() == 18
        assert set(conn.execute(text("SELECT datname FROM pg_database")).scalars()) == databases
    engine.dispose()
