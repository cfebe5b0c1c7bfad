"""Only evac journals are opened, only intact ones are resumed or shown; nothing else is written to.

Every refusal is exit 2 through the CLI (in-process), names the file and what is wrong, and leaves the
file byte for byte as it was (no table added, no WAL, no lock file beside a foreign file)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from executor.cli.main import main
from executor.journal import Journal
from executor.journal_file import APPLICATION_ID, SCHEMA_VERSION, JournalFileError
from planner.inventory import load_inventory
from tests.fleet import greedy_plan, make_inventory

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    inv_path = tmp_path / "inv.json"
    inv_path.write_text(json.dumps(make_inventory(3, 2).to_dict()))
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(greedy_plan(load_inventory(inv_path).inventory).to_json())
    return plan_path, inv_path


def _run(files: tuple[Path, Path], journal: Path, *extra: str) -> list[str]:
    plan_path, inv_path = files
    return ["run", str(plan_path), "-i", str(inv_path), "--simulate", "--speedup", "1000", "--journal",
            str(journal), "--json", *extra]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def _finished_journal(files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    journal = tmp_path / "good.db"
    assert main(_run(files, journal)) == 0
    capsys.readouterr()
    return journal


def _sql(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    for sql in statements:
        db.execute(sql)
    db.commit()
    db.close()


def _other_application_db(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    db.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    db.commit()
    db.close()


@pytest.mark.parametrize("resume", [False, True])
def test_another_applications_database_is_not_taken_over(files: tuple[Path, Path], tmp_path: Path, resume: bool,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "app.db"
    _other_application_db(other)
    before = _digest(other)
    _refused(_run(files, other, *(["--resume"] if resume else [])), capsys, str(other),
             "not an evac journal", "tables: invoices")
    _refused(["status", str(other)], capsys, "not an evac journal")
    assert _digest(other) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db", "inv.json", "plan.json"]  # no -wal, no .lock


def test_a_database_marked_by_another_application(files: tuple[Path, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "app.db"
    db = sqlite3.connect(other)
    db.execute("PRAGMA application_id=1234")
    db.commit()
    db.close()
    _refused(_run(files, other), capsys, "not an evac journal", "another application", "0x4d2")


@pytest.mark.parametrize("content", [b"\x00" * 5000, b"SQLite format 3\x00" + b"\xff" * 4000, b"just text\n"])
def test_corrupt_bytes_are_refused_untouched(files: tuple[Path, Path], tmp_path: Path, content: bytes,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(content)
    _refused(_run(files, bad), capsys, "not an evac journal", str(bad))
    _refused(_run(files, bad, "--resume"), capsys, "not an evac journal")
    _refused(["status", str(bad)], capsys, "not an evac journal")
    assert bad.read_bytes() == content


def test_a_directory_is_not_a_journal(files: tuple[Path, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    # run refuses it as an output it cannot write, before anything runs; status as a journal it cannot read
    _refused(_run(files, tmp_path), capsys, "--journal", "is a directory")
    _refused(["status", str(tmp_path)], capsys, "not an evac journal: a directory")


def test_resume_without_a_journal_does_not_start_a_fresh_run(files: tuple[Path, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.db"
    _refused(_run(files, missing, "--resume"), capsys, "no run to resume: no such file", str(missing))
    assert not missing.exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    _refused(_run(files, empty, "--resume"), capsys, "no run to resume: the file is empty")
    assert empty.read_bytes() == b""
    assert main(_run(files, empty)) == 0  # an empty file holds nothing to lose: a fresh run may fill it


def test_a_new_journal_is_marked(files: tuple[Path, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    journal = _finished_journal(files, tmp_path, capsys)
    db = sqlite3.connect(journal)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_journal_from_before_the_mark_still_resumes(files: tuple[Path, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    journal = _finished_journal(files, tmp_path, capsys)
    _sql(journal, "PRAGMA application_id=0", "PRAGMA user_version=0")
    assert main(["status", str(journal)]) == 0
    assert main(_run(files, journal, "--resume")) == 0
    assert sqlite3.connect(journal).execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_a_journal_from_a_newer_evac(files: tuple[Path, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    journal = _finished_journal(files, tmp_path, capsys)
    _sql(journal, f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    _refused(_run(files, journal, "--resume"), capsys, "newer evac")


DAMAGE = {
    "unknown state": ("UPDATE state SET state='weird' WHERE id=(SELECT MAX(id) FROM state)",
                      "unknown state 'weird'"),
    "flags not JSON": ("UPDATE run SET flags='{not json'", "run id 1 flags line 1 column 2: malformed JSON"),
    "flags not an object": ("UPDATE run SET flags='[1, 2]'", "run id 1 flags: must be a JSON object"),
    "event data not JSON": ("UPDATE event SET data='' WHERE id=1", "event id 1 data line 1 column 1: malformed JSON"),
    "plan not a plan": ("UPDATE run SET plan='{\"version\": 7}'", "run id 1 plan"),
    "state is a number": ("UPDATE state SET state=3 WHERE id=1", "unknown state '3'"),
    "intent flags a blob": ("UPDATE intent SET flags=x'00ff' WHERE id=1",
                            "intent id 1 flags: holds blob; evac writes text"),
    "a time that is text": ("UPDATE state SET at='soon' WHERE id=2", "state id 2 at: holds text; evac writes real"),
    "a time beyond any clock": ("UPDATE event SET at=1e300 WHERE id=1", "event id 1 at: is not a time evac wrote"),
    "dropped table": ("DROP TABLE state", "table state: missing"),
    "renamed column": ("ALTER TABLE event RENAME COLUMN data TO payload", "table event: columns"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_journal_is_neither_resumed_nor_shown(files: tuple[Path, Path], tmp_path: Path, case: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    sql, needle = DAMAGE[case]
    journal = _finished_journal(files, tmp_path, capsys)
    _sql(journal, sql)
    before = _digest(journal)
    _refused(_run(files, journal, "--resume"), capsys, str(journal), needle, "damaged evac journal")
    _refused(["status", str(journal)], capsys, needle)
    _refused(["status", str(journal), "--json"], capsys, needle)
    assert _digest(journal) == before


def test_a_fresh_run_over_a_journal_says_which_plan_it_holds(files: tuple[Path, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    journal = _finished_journal(files, tmp_path, capsys)
    _refused(_run(files, journal), capsys, "already records a run of this plan", "--resume")
    other_inv = tmp_path / "inv2.json"
    other_inv.write_text(json.dumps(make_inventory(3, 3).to_dict()))
    other_plan = tmp_path / "plan2.json"
    other_plan.write_text(greedy_plan(load_inventory(other_inv).inventory).to_json())
    for extra in ([], ["--resume"]):
        _refused(["run", str(other_plan), "-i", str(other_inv), "--simulate", "--journal", str(journal), *extra],
                 capsys, "records a run of a different plan", "another --journal file")


def test_journal_api_refuses_like_the_cli(tmp_path: Path) -> None:
    other = tmp_path / "app.db"
    _other_application_db(other)
    plan = greedy_plan(make_inventory(3, 2))
    with pytest.raises(JournalFileError, match="not an evac journal"):
        Journal.open(other, plan)
    with pytest.raises(JournalFileError, match="not an evac journal"):
        Journal.read(other)
    with pytest.raises(JournalFileError, match="cannot create its lock file"):
        Journal.open(tmp_path / "no" / "such" / "dir.db", plan)


def test_resume_of_a_journal_without_runs_writes_nothing(files: tuple[Path, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    journal = _finished_journal(files, tmp_path, capsys)
    _sql(journal, "DELETE FROM run")
    before = _digest(journal)
    _refused(_run(files, journal, "--resume"), capsys, "no run to resume: the journal records no run")
    assert _digest(journal) == before


def test_text_that_is_not_utf8_is_damage(files: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    journal = _finished_journal(files, tmp_path, capsys)
    _sql(journal, "UPDATE state SET detail=CAST(x'80ff' AS TEXT) WHERE id=1")
    _refused(["status", str(journal)], capsys, "state id 1 detail: text that is not UTF-8")
