"""Hostile journals, generated: a real journal changed by random SQL (values of every type in every column,
dropped tables, renamed columns, foreign marks), random bytes written over it, and other applications'
databases. Read (`evac status`'s path) and reopened for `--resume`.

Always: the journal opens and reads back without an exception, or it is refused with an InputError (exit 2)
naming the file, and a refused file is left byte for byte as it was."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executor.cli.main import main
from executor.journal import Journal
from executor.journal_file import TABLES
from planner.errors import InputError
from planner.inventory import load_inventory
from planner.plan import Plan, load_plan
from tests.fleet import greedy_plan, make_inventory
from tests.hostile import assert_refusal_names, count, fast_tmp, hostile_settings, report_cases, run_cli

__all__ = ["fast_tmp", "report_cases"]
pytestmark = pytest.mark.timeout(300)


class Template(tuple[bytes, Plan]):
    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing case: not 40 KiB of SQLite
        return "<finished journal of a simulated run, and its plan>"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Plan]:
    """A finished journal of a simulated run (bytes) and its plan."""
    folder = tmp_path_factory.mktemp("journal")
    inv = folder / "inventory.json"
    inv.write_text(json.dumps(make_inventory(3, 2).to_dict()))
    plan_path = folder / "plan.json"
    plan_path.write_text(greedy_plan(load_inventory(inv).inventory).to_json())
    journal = folder / "run.db"
    assert main(["run", str(plan_path), "-i", str(inv), "--simulate", "--speedup", "1000", "--journal",
                 str(journal), "--json"]) == 0
    assert not Path(f"{journal}-wal").exists()
    return Template((journal.read_bytes(), load_plan(plan_path)))


CELL = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=16), st.binary(max_size=8),
                 st.sampled_from(["{", "[]", "{}", '"x"', "pending", "done", "running", "weird", '{"a": 1, "a": 2}',
                                  '{"version": 1}', "[" * 2000, '{"unsafe": true}', "1" * 5000, "NaN"]))


@st.composite
def sql_damage(draw: st.DrawFn) -> list[tuple[str, tuple[Any, ...]]]:
    out: list[tuple[str, tuple[Any, ...]]] = []
    for _ in range(draw(st.integers(1, 3))):
        table = draw(st.sampled_from(sorted(TABLES)))
        column = draw(st.sampled_from(TABLES[table]))
        kind = draw(st.sampled_from(["update", "update", "update", "update_all", "delete", "insert_state", "drop",
                                     "rename", "extra_table", "app_id", "user_version", "drop_index"]))
        if kind == "update":
            out.append((f"UPDATE {table} SET {column}=? WHERE id=?", (draw(CELL), draw(st.integers(1, 12)))))
        elif kind == "update_all":
            out.append((f"UPDATE {table} SET {column}=?", (draw(CELL),)))
        elif kind == "delete":
            out.append((f"DELETE FROM {table} WHERE id>=?", (draw(st.integers(1, 12)),)))
        elif kind == "insert_state":
            out.append(("INSERT INTO state (run_id, at, vm, state, event, attempt, detail) VALUES (?,?,?,?,?,?,?)",
                        tuple(draw(CELL) for _ in range(7))))
        elif kind == "drop":
            out.append((f"DROP TABLE {table}", ()))
        elif kind == "rename":
            out.append((f"ALTER TABLE {table} RENAME COLUMN {column} TO {column}_x", ()))
        elif kind == "extra_table":
            out.append(("CREATE TABLE IF NOT EXISTS notes (x)", ()))
        elif kind == "app_id":
            out.append((f"PRAGMA application_id={draw(st.integers(-(2**31), 2**31 - 1))}", ()))
        elif kind == "user_version":
            out.append((f"PRAGMA user_version={draw(st.integers(-(2**31), 2**31 - 1))}", ()))
        else:
            out.append(("DROP INDEX IF EXISTS state_vm", ()))
    return out


def _apply(path: Path, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    db = sqlite3.connect(path)
    for sql, args in statements:
        # a statement SQLite refuses (a column already dropped...) is skipped: the others still apply
        with contextlib.suppress(sqlite3.Error, OverflowError):
            db.execute(sql, args)
    db.commit()
    db.close()


def _read_back(path: Path, plan: Plan) -> None:
    """What evac does with a journal: read it whole (status), reopen it to resume; refusals leave it as it was."""
    before = path.read_bytes()
    try:
        j = Journal.read(path)
    except InputError as e:
        assert str(path) in str(e) and path.read_bytes() == before
    else:
        try:
            j.records(), j.summary(), j.runs(), j.events(), j.flags(), j.in_flight()
        finally:
            j.close()
    before = path.read_bytes()
    try:
        Journal.open(path, plan, resume=True).close()
    except InputError as e:
        assert str(path) in str(e) and path.read_bytes() == before


@hostile_settings(900)
@given(statements=sql_damage())
def test_journals_changed_by_sql(statements: list[tuple[str, tuple[Any, ...]]], template: tuple[bytes, Plan],
                                 fast_tmp: Path) -> None:
    count("journal sql")
    content, plan = template
    path = fast_tmp / "j.db"
    for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.lock")):
        stale.unlink(missing_ok=True)
    path.write_bytes(content)
    _apply(path, statements)
    _read_back(path, plan)


@hostile_settings(600)
@given(data=st.data())
def test_journals_with_bytes_written_over(data: st.DataObject, template: tuple[bytes, Plan], fast_tmp: Path) -> None:
    count("journal bytes")
    content, plan = template
    raw = bytearray(content)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        chunk = data.draw(st.binary(min_size=1, max_size=64))
        raw[at:at + len(chunk)] = chunk
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    path = fast_tmp / "j.db"
    for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    path.write_bytes(bytes(raw))
    _read_back(path, plan)


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)


@hostile_settings(300)
@given(tables=st.dictionaries(NAMES, st.lists(NAMES, min_size=1, max_size=4, unique=True), min_size=0, max_size=4),
       app_id=st.sampled_from([0, 0, 1, 0x45564143, -5]))
def test_other_applications_databases_are_left_alone(tables: dict[str, list[str]], app_id: int,
                                                      template: tuple[bytes, Plan], fast_tmp: Path) -> None:
    count("foreign database")
    _, plan = template
    path = fast_tmp / "other.db"
    for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.lock")):
        stale.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA application_id={app_id}")
    for name, columns in tables.items():
        quoted = ", ".join(f'"{c}"' for c in columns)
        db.execute(f'CREATE TABLE IF NOT EXISTS "{name}" ({quoted})')
        db.execute(f'INSERT INTO "{name}" VALUES ({", ".join("?" * len(columns))})', tuple(range(len(columns))))
    db.commit()
    db.close()
    before = path.read_bytes()
    for action in (lambda: Journal.read(path), lambda: Journal.open(path, plan),
                   lambda: Journal.open(path, plan, resume=True)):
        with pytest.raises(InputError):
            action()
        assert path.read_bytes() == before
    assert not Path(f"{path}.lock").exists() and not Path(f"{path}-wal").exists()


@hostile_settings(200)
@given(statements=sql_damage())
def test_status_of_a_changed_journal(statements: list[tuple[str, tuple[Any, ...]]], template: tuple[bytes, Plan],
                                     fast_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    count("journal sql (evac status)")
    content, _ = template
    path = fast_tmp / "j.db"
    for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    path.write_bytes(content)
    _apply(path, statements)
    before = path.read_bytes()
    code, out, err = run_cli(["status", str(path), "--json"], capsys)
    assert code in (0, 2), err
    if code == 2:
        assert_refusal_names(err, str(path))
        assert path.read_bytes() == before
    else:
        json.loads(out)


@hostile_settings(150)
@given(statements=sql_damage())
def test_return_of_a_changed_journal(statements: list[tuple[str, tuple[Any, ...]]], template: tuple[bytes, Plan],
                                     fast_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`evac return`: a plan, nothing to do, or exit 2 naming the journal, which is left as it was, and no
    plan file."""
    count("journal sql (evac return)")
    content, _ = template
    path, inv, out = fast_tmp / "j.db", fast_tmp / "inventory.json", fast_tmp / "back.json"
    for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), out):
        stale.unlink(missing_ok=True)
    inv.write_text(json.dumps(make_inventory(3, 2).to_dict()))
    path.write_bytes(content)
    _apply(path, statements)
    before = path.read_bytes()
    code, _, err = run_cli(["return", str(path), "-i", str(inv), "-o", str(out), "--time-limit", "1"], capsys)
    assert code in (0, 1, 2), err
    if code == 2:
        assert_refusal_names(err, str(path))
        assert path.read_bytes() == before and not out.exists()
