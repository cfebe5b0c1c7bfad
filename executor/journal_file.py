"""Is this file an evac journal, and is it intact? Answered without writing a byte to it.

An evac journal is an SQLite database marked `PRAGMA application_id = 0x45564143` ("EVAC") with its
schema version in `PRAGMA user_version`, holding the tables `run`, `intent`, `state` and `event`
(journals written before the mark existed are recognised by those tables alone, and nothing else).
Anything else, another application's database, random bytes, a directory, is refused as "not an
evac journal" and left untouched: evac adds no table, no WAL file, no mark to it.

A marked journal whose contents evac cannot trust (a table dropped, a state evac never writes, a JSON
cell that does not parse, pages SQLite reports corrupt) is refused as "damaged": resuming from it
could migrate a VM twice or never, and guessing is not evac's to do.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from executor.states import State
from planner.documents import read_json_value
from planner.errors import InputError, PlanFileError, Problem, UsageError

APPLICATION_ID = 0x45564143  # "EVAC" in ASCII, as `PRAGMA application_id` stores it
# Raise it with any change to SCHEMA; an older evac then refuses the journal by name.
# 2: `hop` in intent and state (plans whose VMs move several times); a version-1 journal is read as
#    hop 0 everywhere and gets the column when a run resumes it.
SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    plan_sha256 TEXT NOT NULL,
    inventory_sha256 TEXT NOT NULL,
    flags TEXT NOT NULL,
    plan TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS intent (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    at REAL NOT NULL,
    vm TEXT NOT NULL,
    uuid TEXT,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    flags TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    hop INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS state (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    at REAL NOT NULL,
    vm TEXT NOT NULL,
    state TEXT NOT NULL,
    event TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    hop INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS event (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    vm TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS state_vm ON state (vm, id);
"""


def _expected(schema: str) -> tuple[dict[str, tuple[str, ...]], dict[str, dict[str, tuple[str, ...]]]]:
    """The columns of each table and the SQLite types each column may hold, read from SCHEMA itself."""
    kinds = {"INTEGER": ("integer",), "REAL": ("real", "integer"), "TEXT": ("text",)}
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        db.executescript(schema)
        names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY rowid")]
        info = {n: list(db.execute(f"PRAGMA table_info({n})")) for n in names}
    tables = {n: tuple(c[1] for c in cols) for n, cols in info.items()}
    # a column may be NULL unless NOT NULL or the rowid (INTEGER PRIMARY KEY)
    types = {n: {c[1]: kinds[c[2]] + (() if c[3] or c[5] else ("null",)) for c in cols} for n, cols in info.items()}
    return tables, types


TABLES, TYPES = _expected(SCHEMA)
HOP_TABLES = ("intent", "state")  # the tables that gained `hop` in schema version 2
# The columns of a journal of schema version 1 (also an unmarked one, from before the mark): no `hop`.
TABLES_V1 = {t: tuple(c for c in cols if not (t in HOP_TABLES and c == "hop")) for t, cols in TABLES.items()}
_SQLITE_MAGIC = b"SQLite format 3\x00"
_STATES = frozenset(s.value for s in State)
MAX_SHOWN = 20  # problems listed; a journal damaged everywhere says how many more
# SQLite stores any type in any column: TYPES (from SCHEMA) says what evac writes in each.
_TIME = ("real", "integer")
_TEXT_COLUMNS = {t: frozenset(c for c, kinds in cols.items() if "text" in kinds) for t, cols in TYPES.items()}
MAX_TIME = 1e12  # seconds since 1970: year 33658; anything beyond is not a time evac wrote


class Kind(Enum):
    ABSENT = "absent"  # no file: a fresh run creates it
    EMPTY = "empty"  # a 0-byte file (`touch evac.db`): nothing to lose, a fresh run fills it
    JOURNAL = "journal"


@dataclass(frozen=True, slots=True)
class JournalFile:
    path: Path
    kind: Kind
    marked: bool = False  # False: a journal of an evac from before the application_id mark


class JournalFileError(UsageError):
    """The file is not an evac journal, or one evac cannot trust (exit code 2)."""


def not_a_journal(path: Path, why: str) -> JournalFileError:
    return JournalFileError(f"journal {path}", [Problem("", f"not an evac journal: {why}; evac leaves it untouched "
                                                          f"(choose another --journal file)")])


def inspect(path: Path) -> JournalFile:
    """What `path` is, reading only; raises JournalFileError for anything but an evac journal."""
    if not path.exists():
        return JournalFile(path, Kind.ABSENT)
    if path.is_dir():
        raise not_a_journal(path, "a directory")
    if not path.is_file():
        raise not_a_journal(path, "not a regular file")
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as e:
        raise JournalFileError(f"journal {path}", [Problem("", f"cannot read: {e.strerror or e}")]) from None
    if not head:
        return JournalFile(path, Kind.EMPTY)
    if head != _SQLITE_MAGIC:
        raise not_a_journal(path, "not an SQLite database")
    try:
        with contextlib.closing(connect_read_only(path)) as conn:
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            tables = {name: tuple(c[1] for c in conn.execute(f"PRAGMA table_info({name!r})"))
                      for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        raise not_a_journal(path, f"SQLite cannot read it ({e})") from None
    if app_id not in (0, APPLICATION_ID):
        raise not_a_journal(path, f"it belongs to another application (SQLite application_id {app_id:#x}; "
                                  f"evac's is {APPLICATION_ID:#x})")
    if app_id == 0:
        if tables not in (TABLES, TABLES_V1):
            shown = ", ".join(sorted(tables)) or "none"
            raise not_a_journal(path, f"an SQLite database without evac's mark (tables: {shown})")
        return JournalFile(path, Kind.JOURNAL, marked=False)  # an evac journal from before the mark
    if version > SCHEMA_VERSION:
        raise JournalFileError(f"journal {path}", [Problem("", f"written by a newer evac (journal schema {version}; "
                                                              f"this evac reads {SCHEMA_VERSION}): upgrade evac")])
    expected = TABLES_V1 if version <= 1 and tables == TABLES_V1 else TABLES
    problems = [Problem(f"table {t}", "missing" if t not in tables else
                        f"columns {', '.join(tables[t])}; evac's are {', '.join(cols)}")
                for t, cols in expected.items() if tables.get(t) != cols]
    if problems:
        raise damaged(path, problems)
    return JournalFile(path, Kind.JOURNAL, marked=True)


def damaged(path: Path, problems: list[Problem]) -> JournalFileError:
    shown = problems[:MAX_SHOWN]
    if len(problems) > MAX_SHOWN:
        shown.append(Problem("", f"... and {len(problems) - MAX_SHOWN} more"))
    shown.append(Problem("", "damaged evac journal: evac will not resume from it nor show it (check where the VMs "
                             "run, then start a fresh run with another --journal file)", "note"))
    return JournalFileError(f"journal {path}", shown)


def contents_problems(conn: sqlite3.Connection) -> list[Problem]:
    """Every row evac would read back, checked: states it writes, JSON objects it writes, a plan it can load.

    The journal is small (a few rows per migration), so reading all of it on open costs little."""
    from planner.plan import plan_from_dict

    problems: list[Problem] = []
    try:
        check = [r[0] for r in conn.execute("PRAGMA quick_check(20)")]
        if check != ["ok"]:
            return [Problem("sqlite", f"corrupt: {c}") for c in check]
        problems += _type_problems(conn)
        problems += _encoding_problems(conn)
        if problems:
            return problems
        for rid, flags, plan in conn.execute("SELECT id, flags, plan FROM run ORDER BY id"):
            where = f"run id {rid}"
            _json_object(flags, f"{where} flags", problems)
            doc = _json_object(plan, f"{where} plan", problems)
            if doc is not None:
                try:
                    plan_from_dict(doc, f"{where} plan")
                except RecursionError:
                    problems.append(Problem(f"{where} plan", "nested too deeply"))
                except PlanFileError as e:
                    problems += [Problem(f"{where} plan {p.where}".rstrip(), p.message) for p in e.problems[:3]]
        for sid, vm, state in conn.execute("SELECT id, vm, state FROM state ORDER BY id"):
            if state not in _STATES:
                problems.append(Problem(f"state id {sid}", f"VM {vm!r}: unknown state {state!r} (evac writes "
                                                           f"{', '.join(sorted(_STATES))})"[:300]))
        for iid, flags in conn.execute("SELECT id, flags FROM intent ORDER BY id"):
            _json_object(flags, f"intent id {iid} flags", problems)
        for eid, data in conn.execute("SELECT id, data FROM event ORDER BY id"):
            _json_object(data, f"event id {eid} data", problems)
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        problems.append(Problem("sqlite", f"cannot read: {e}"))
    return problems


def _type_problems(conn: sqlite3.Connection) -> list[Problem]:
    out = []
    present = _present_columns(conn)
    for table, columns in TYPES.items():
        for column, kinds in columns.items():
            if column not in present[table]:
                continue  # `hop` in a journal of schema version 1
            allowed = ",".join(f"'{k}'" for k in kinds)
            for rid, kind in conn.execute(f"SELECT rowid, typeof({column}) FROM {table} "  # table and column: ours
                                          f"WHERE typeof({column}) NOT IN ({allowed}) LIMIT 5"):
                out.append(Problem(f"{table} id {rid} {column}", f"holds {kind}; evac writes {' or '.join(kinds)}"))
            if kinds == _TIME:
                for (rid,) in conn.execute(f"SELECT rowid FROM {table} WHERE abs({column}) > {MAX_TIME} "
                                           f"LIMIT 5"):
                    out.append(Problem(f"{table} id {rid} {column}", "is not a time evac wrote"))
    return out


def _encoding_problems(conn: sqlite3.Connection) -> list[Problem]:
    """Text cells that are not UTF-8 (Python's sqlite3 would raise on reading them back)."""
    out = []
    present = _present_columns(conn)  # before text_factory: names as str
    previous = conn.text_factory
    conn.text_factory = bytes
    try:
        for table, all_columns in TABLES.items():
            columns = tuple(c for c in all_columns if c in present[table])
            for row in conn.execute(f"SELECT {', '.join(columns)} FROM {table}"):  # table and columns: ours
                for column, cell in zip(columns, row, strict=True):
                    if isinstance(cell, bytes) and column in _TEXT_COLUMNS[table]:
                        try:
                            cell.decode("utf-8")
                        except UnicodeDecodeError:
                            out.append(Problem(f"{table} id {row[0]} {column}", "text that is not UTF-8"))
                            if len(out) >= MAX_SHOWN:
                                return out
    finally:
        conn.text_factory = previous
    return out


def _present_columns(conn: sqlite3.Connection) -> dict[str, frozenset[str]]:
    """The columns each of evac's tables has in this journal (`inspect` checked they are a known layout)."""
    return {t: frozenset(c[1] for c in conn.execute(f"PRAGMA table_info({t})")) for t in TABLES}


def _json_object(cell: object, where: str, problems: list[Problem]) -> dict[str, object] | None:
    if not isinstance(cell, str):
        problems.append(Problem(where, f"must be JSON text, got {type(cell).__name__}"))
        return None
    try:
        value = read_json_value(cell, where)
    except InputError as e:
        problems += [Problem(f"{where} {p.where}".rstrip(), p.message) for p in e.problems[:1]]
        return None
    if not isinstance(value, dict):
        problems.append(Problem(where, "must be a JSON object"))
        return None
    return value


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write: `mode=ro` opens without creating, `query_only` refuses writes."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    conn.execute("PRAGMA query_only=1")
    return conn
