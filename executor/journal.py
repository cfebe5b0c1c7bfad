"""The run journal: a write-ahead record of what evac did, in SQLite (NOTES §6).

Invariants:
1. Before a migrate call, the intent (VM, uuid, source, destination, flags, attempt) is durably
   committed (WAL mode, synchronous=FULL: the row is on disk when `intent()` returns).
2. A state is recorded only after it was observed (the runner calls `record()` after looking).
3. Rows are only ever appended; the latest state row of a VM is its state.
4. One writer at a time: an exclusive `fcntl` lock on `<journal>.lock`, held while open.
5. No credentials: URIs are not stored, only host names from the inventory.
6. Only evac journals are opened: the file is marked (`PRAGMA application_id`, schema version in
   `user_version`) and checked, tables, columns and every row, before anything is written
   (executor/journal_file.py). Another application's database, random bytes or a damaged journal
   are refused (exit 2) and left untouched; `--resume` without a recorded run is refused too.

`evac run --resume` reopens the journal of the same plan (same digest), reconciles every VM whose
state is in flight with both hosts, and continues.

Hops: intent and state rows carry the `hop` of the VM's migration they are about (0 for the first,
the only one in a drain plan); a VM's state is the state of its current hop (its first hop not done).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor import journal_file
from executor.journal_file import SCHEMA, JournalFileError, Kind
from executor.states import State
from planner.documents import read_json_value
from planner.errors import EvacError, Problem
from planner.plan import Plan, plan_from_dict

# The journal must never turn into a credential store: flags and event data are checked for these.
_SECRET_KEYS = ("password", "passwd", "secret", "token", "keyfile", "sshkey")


class JournalLocked(EvacError):
    """Another evac process holds the journal."""

    exit_code = 3


def plan_digest(plan: Plan) -> str:
    canon = json.dumps(plan.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class VMRecord:
    """What `evac status` shows for one VM."""

    vm: str
    source: str
    destination: str
    state: State
    attempts: int
    error: str
    started_at: float | None
    ended_at: float | None
    hop: int = 0  # the VM's current hop (its first not done; its last once all are)
    route: tuple[str, ...] = ()  # every host the VM's hops go through, its source first (empty: source → destination)

    @property
    def elapsed_s(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at if self.ended_at is not None else time.time()) - self.started_at


class Journal:
    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int | None, run_id: int, plan: Plan) -> None:
        self.path = path
        self._conn = conn
        self._lock_fd = lock_fd
        self.run_id = run_id
        self.plan = plan
        self._mutex = threading.Lock()  # one connection shared by the runner's threads
        # A journal from before hops (schema version 1) read without the lock has no `hop`: all hop 0.
        columns = {r[1] for r in conn.execute("PRAGMA table_info(state)")}
        self._hop = "hop" if "hop" in columns else "(0 + 0)"  # an expression: a bare 0 in GROUP BY is a column number

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | Path, plan: Plan, *, inventory_sha256: str | None = None,
             flags: dict[str, Any] | None = None, resume: bool = False) -> Journal:
        """Opens (creating) the journal for a run of `plan`, taking the single-writer lock.

        A journal that already holds runs is only reopened with `resume=True` and the same plan. A file that
        is not an evac journal, or a damaged one, is refused (exit 2) before anything is written, even the
        lock file beside it; `resume=True` without a recorded run is refused too ("no run to resume")."""
        p = Path(path)
        found = journal_file.inspect(p)
        if resume and found.kind is not Kind.JOURNAL:
            why = "no such file" if found.kind is Kind.ABSENT else "the file is empty"
            raise JournalFileError(f"journal {p}", [Problem("", f"no run to resume: {why} (run without --resume to "
                                                                f"start one, or name the journal of the run)")])
        lock_fd = _lock(p)
        try:
            previous = None
            if found.kind is Kind.JOURNAL:
                with contextlib.closing(journal_file.connect_read_only(p)) as ro:
                    problems = journal_file.contents_problems(ro)
                    if problems:
                        raise journal_file.damaged(p, problems)
                    previous = ro.execute("SELECT plan_sha256, started_at FROM run ORDER BY id DESC LIMIT 1").fetchone()
            _may_start(p, plan, previous, resume)  # every refusal before the first write
            conn = _connect(p)
            try:
                run_id = _start_run(conn, plan, inventory_sha256, dict(flags or {}))
            except BaseException:
                conn.close()
                raise
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(p, conn, lock_fd, run_id, plan)

    @classmethod
    def read(cls, path: str | Path) -> Journal:
        """Opens a journal read-only, without the lock (for `evac status` while a run goes on)."""
        p = Path(path)
        found = journal_file.inspect(p)
        if found.kind is not Kind.JOURNAL:
            why = "no such file" if found.kind is Kind.ABSENT else "the file is empty: it records no run"
            raise JournalFileError(f"journal {p}", [Problem("", why)])
        conn = journal_file.connect_read_only(p)
        try:
            problems = journal_file.contents_problems(conn)
            if problems:
                raise journal_file.damaged(p, problems)
            row = conn.execute("SELECT id, plan FROM run ORDER BY id DESC LIMIT 1").fetchone()
            if row is None:
                raise JournalFileError(f"journal {p}", [Problem("", "records no run")])
            plan = plan_from_dict(read_json_value(row[1], f"journal {p}"), str(p))
        except BaseException:
            conn.close()
            raise
        return cls(p, conn, None, int(row[0]), plan)

    def close(self) -> None:
        with self._mutex:
            self._conn.close()
            if self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing (append only)

    def intent(self, vm: str, uuid: str | None, source: str, destination: str, flags: dict[str, Any],
               attempt: int, hop: int = 0) -> None:
        """Durably records that migrate is about to be called (invariant 1)."""
        _refuse_secrets(flags)
        self._write("INSERT INTO intent (run_id, at, vm, uuid, source, destination, flags, attempt, hop) "
                    "VALUES (?,?,?,?,?,?,?,?,?)",
                    (self.run_id, time.time(), vm, uuid, source, destination, json.dumps(flags, sort_keys=True),
                     attempt, hop))

    def record(self, vm: str, state: State, event: str, attempt: int = 0, detail: str = "", hop: int = 0) -> None:
        """Records an observed state change of one migration (the VM's hop `hop`)."""
        self._write("INSERT INTO state (run_id, at, vm, state, event, attempt, detail, hop) VALUES (?,?,?,?,?,?,?,?)",
                    (self.run_id, time.time(), vm, state.value, str(event), attempt, detail, hop))

    def event(self, kind: str, vm: str | None = None, **data: Any) -> None:
        """Anything else worth keeping: escalations, aborts, run end."""
        _refuse_secrets(data)
        self._write("INSERT INTO event (run_id, at, kind, vm, data) VALUES (?,?,?,?,?)",
                    (self.run_id, time.time(), kind, vm, json.dumps(data, sort_keys=True, default=str)))

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._mutex, self._conn:
            self._conn.execute(sql, args)

    # ------------------------------------------------------------------ reading

    def state_of(self, vm: str, hop: int | None = None) -> State:
        """The latest state of the VM's hop `hop` (default: of its latest row, whichever hop)."""
        if hop is None:
            row = self._one("SELECT state FROM state WHERE vm=? ORDER BY id DESC LIMIT 1", (vm,))
        else:
            row = self._one(f"SELECT state FROM state WHERE vm=? AND {self._hop}=? ORDER BY id DESC LIMIT 1",
                            (vm, hop))
        return State(row[0]) if row else State.PENDING

    def hop_states(self) -> dict[tuple[str, int], State]:
        """The latest state of every migration of the plan, keyed (vm, hop) (pending when never touched)."""
        out = {(m.vm, m.hop): State.PENDING for m in self.plan.migrations}
        with self._mutex:
            rows = self._conn.execute(
                f"SELECT vm, {self._hop}, state FROM state WHERE id IN "
                f"(SELECT MAX(id) FROM state GROUP BY vm, {self._hop})").fetchall()
        out.update({(vm, int(hop)): State(st) for vm, hop, st in rows if (vm, int(hop)) in out})
        return out

    def states(self) -> dict[str, State]:
        """The state of every VM of the plan: its current hop's (its first hop not done; done when all are)."""
        out: dict[str, State] = {}
        for (vm, _), st in sorted(self.hop_states().items()):
            if vm not in out or out[vm] is State.DONE:
                out[vm] = st
        return out

    def attempts_of(self, vm: str, hop: int | None = None) -> int:
        """How many times migrate was called for the VM (for its hop `hop` only, when given)."""
        if hop is None:
            row = self._one("SELECT COUNT(*) FROM intent WHERE vm=?", (vm,))
        else:
            row = self._one(f"SELECT COUNT(*) FROM intent WHERE vm=? AND {self._hop}=?", (vm, hop))
        return int(row[0]) if row else 0

    def in_flight(self) -> list[str]:
        """VMs whose latest state lies between intent and a verified outcome (reconcile on resume)."""
        return [vm for vm, st in self.states().items() if st.in_flight]

    def summary(self) -> dict[str, int]:
        counts = Counter(st.value for st in self.states().values())
        return dict(sorted(counts.items()))

    def flags(self) -> dict[str, Any]:
        row = self._one("SELECT flags FROM run WHERE id=?", (self.run_id,))
        return dict(_cell(row[0])) if row else {}

    def runs(self) -> list[dict[str, Any]]:
        with self._mutex:
            rows = self._conn.execute(
                "SELECT id, started_at, plan_sha256, inventory_sha256, flags FROM run ORDER BY id").fetchall()
        return [{"id": r[0], "started_at": r[1], "plan_sha256": r[2], "inventory_sha256": r[3],
                 "flags": _cell(r[4])} for r in rows]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT at, kind, vm, data FROM event" + (" WHERE kind=?" if kind else "") + " ORDER BY id"
        with self._mutex:
            rows = self._conn.execute(sql, (kind,) if kind else ()).fetchall()
        return [{"at": r[0], "kind": r[1], "vm": r[2], **_cell(r[3])} for r in rows]

    def records(self) -> list[VMRecord]:
        """One row per VM of the plan, for `evac status` (a VM of several hops: its current hop's state)."""
        with self._mutex:
            states = self._conn.execute("SELECT vm, at, state, detail FROM state ORDER BY id").fetchall()
            intents = self._conn.execute("SELECT vm, COUNT(*) FROM intent GROUP BY vm").fetchall()
            # After `--replan` a VM may have gone elsewhere than the plan said: its last intent tells.
            headed = dict(self._conn.execute("SELECT vm, destination FROM intent ORDER BY id").fetchall())
        current = self.states()
        hops: dict[str, list[tuple[int, str, str]]] = {}
        for m in sorted(self.plan.migrations, key=lambda m: m.hop):
            hops.setdefault(m.vm, []).append((m.hop, m.source, m.destination))
        hop_states = self.hop_states()
        attempts = dict(intents)
        latest: dict[str, tuple[State, str]] = {}
        first: dict[str, float] = {}
        last: dict[str, float] = {}
        error: dict[str, str] = {}
        for vm, at, st, detail in states:
            state = State(st)
            latest[vm] = (state, detail)
            if state is State.PRECHECKED:
                first.setdefault(vm, at)
            last[vm] = at
            if state in (State.FAILED, State.QUARANTINED, State.RETRY_WAIT, State.ABORTED) and detail:
                error[vm] = detail
            elif state is State.DONE:
                error.pop(vm, None)
        out = []
        for m in sorted(self.plan.migrations, key=lambda m: (m.start_s, m.vm)):
            chain = hops[m.vm]
            if m.hop != chain[0][0]:
                continue  # one row per VM, placed by its first hop
            state = current.get(m.vm, latest.get(m.vm, (State.PENDING, ""))[0])
            hop = next((h for h, _, _ in chain if hop_states[(m.vm, h)] is not State.DONE), chain[-1][0])
            route = (chain[0][1], *(d for _, _, d in chain)) if len(chain) > 1 else ()
            destination = chain[-1][2] if len(chain) > 1 else headed.get(m.vm, m.destination)
            out.append(VMRecord(m.vm, m.source, destination, state, int(attempts.get(m.vm, 0)),
                                error.get(m.vm, "") if state is not State.DONE else "", first.get(m.vm),
                                last.get(m.vm) if state.final else None, hop, route))
        return out

    def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        with self._mutex:
            return self._conn.execute(sql, args).fetchone()


def _lock(path: Path) -> int:
    try:
        lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise JournalFileError(f"journal {path}", [Problem("", f"cannot create its lock file {path}.lock: "
                                                              f"{e.strerror or e}")]) from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise JournalLocked(f"{path}: another evac process is using this journal") from None
    return lock_fd


def _connect(path: Path) -> sqlite3.Connection:
    """The writer's connection; marks the file as an evac journal (a new one, or one from before the mark)."""
    try:
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level="DEFERRED")
        with contextlib.suppress(sqlite3.OperationalError):
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(f"PRAGMA application_id={journal_file.APPLICATION_ID};"
                           f"PRAGMA user_version={journal_file.SCHEMA_VERSION};{SCHEMA}")
        for table in journal_file.HOP_TABLES:  # a journal from before hops (schema 1) gets the column
            if "hop" not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN hop INTEGER NOT NULL DEFAULT 0")
    except sqlite3.Error as e:
        raise JournalFileError(f"journal {path}", [Problem("", f"cannot write it: {e}")]) from None
    return conn


def _may_start(path: Path, plan: Plan, previous: tuple[str, float] | None, resume: bool) -> None:
    """Refuses a run the journal cannot take: `previous` is its last run (plan digest, start time), if any."""
    where = f"journal {path}"
    if previous is None:
        if resume:
            raise JournalFileError(where, [Problem("", "no run to resume: the journal records no run (run without "
                                                       "--resume to start one)")])
        return
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(previous[1])))
    if previous[0] != plan_digest(plan):
        raise JournalFileError(where, [Problem("", f"records a run of a different plan (plan sha256 "
                                                   f"{previous[0][:12]}…, started {started}); resume with the plan "
                                                   f"it was started with, or choose another --journal file")])
    if not resume:
        raise JournalFileError(where, [Problem("", f"already records a run of this plan (started {started}); pass "
                                                   f"--resume to continue it or choose another --journal file")])


def _start_run(conn: sqlite3.Connection, plan: Plan, inventory_sha256: str | None, flags: dict[str, Any]) -> int:
    _refuse_secrets(flags)
    with conn:
        cur = conn.execute(
            "INSERT INTO run (started_at, plan_sha256, inventory_sha256, flags, plan) VALUES (?,?,?,?,?)",
            (time.time(), plan_digest(plan), inventory_sha256 or plan.inventory_sha256,
             json.dumps(flags, sort_keys=True), plan.to_json(indent=None)))
    return int(cur.lastrowid or 0)


def _cell(text: str) -> dict[str, Any]:
    """A JSON column, read back through the one document reader (checked on open: always an object)."""
    value = read_json_value(text, "journal cell")
    return value if isinstance(value, dict) else {}


def _refuse_secrets(data: dict[str, Any]) -> None:
    for key in data:
        if any(s in key.lower() for s in _SECRET_KEYS):
            raise ValueError(f"refusing to journal {key!r}: the journal never stores credentials")
