"""Plan v1 as a value: `Plan`, `Migration`, `Unplaced` (shared/contracts/plan-v1.md).

A plan is produced by the planner and consumed by the checker, the simulator, the executor,
the reports and the notebooks. Nothing mutates a plan; re-planning makes a new one.

Optional fields evac adds to plan v1 (documented in docs/plan.md):
* `solver` (str): what produced it: "cp-sat", "greedy", or a baseline's name.
* `drain_labels` (list of "key=value"): the `--drain-label` selectors that chose `drained`.
* `migrations[].priority` (int): the VM's priority, copied for the executor's ordering.
* `migrations[].memory_mib`, `migrations[].disk_mib` (float): what the duration model moved.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from planner.documents import read_document
from planner.errors import PlanFileError, Problem


class PlanStatus(StrEnum):
    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"


@dataclass(frozen=True, slots=True)
class Migration:
    vm: str
    source: str
    destination: str
    wave: int
    start_s: float
    end_s: float
    bandwidth_mibs: float
    path: tuple[str, ...]
    copy_storage: tuple[str, ...] = ()
    live: bool = True
    converges: bool = True
    auto_converge: bool = False
    predicted_downtime_ms: float = 0.0
    priority: int = 0
    memory_mib: float = 0.0
    disk_mib: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def active_at(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


@dataclass(frozen=True, slots=True)
class Unplaced:
    vm: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    inventory_sha256: str
    drained: tuple[str, ...]
    status: PlanStatus
    makespan_s: float
    lower_bound_s: float
    solve_s: float
    migrations: tuple[Migration, ...]
    unplaced: tuple[Unplaced, ...] = ()
    solver: str = "cp-sat"
    drain_labels: tuple[str, ...] = ()
    version: int = 1

    @property
    def gap(self) -> float:
        """makespan / lower bound: the honest measure of plan quality (1.0 = provably optimal)."""
        if self.lower_bound_s <= 0:
            return 1.0 if self.makespan_s <= 0 else math.inf
        return self.makespan_s / self.lower_bound_s

    @property
    def waves(self) -> Mapping[int, tuple[Migration, ...]]:
        out: dict[int, list[Migration]] = {}
        for m in sorted(self.migrations, key=lambda m: (m.wave, m.start_s, m.vm)):
            out.setdefault(m.wave, []).append(m)
        return {k: tuple(v) for k, v in out.items()}

    def migration_of(self, vm: str) -> Migration | None:
        for m in self.migrations:
            if m.vm == vm:
                return m
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "inventory_sha256": self.inventory_sha256,
            "drained": list(self.drained),
            "status": self.status.value,
            "makespan_s": round(self.makespan_s, 3),
            "lower_bound_s": round(self.lower_bound_s, 3),
            "solve_s": round(self.solve_s, 3),
            "solver": self.solver,
            "drain_labels": list(self.drain_labels),
            "migrations": [_migration_to_dict(m) for m in self.migrations],
            "unplaced": [{"vm": u.vm, "reasons": list(u.reasons)} for u in self.unplaced],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _migration_to_dict(m: Migration) -> dict[str, Any]:
    return {
        "vm": m.vm,
        "source": m.source,
        "destination": m.destination,
        "wave": m.wave,
        "start_s": round(m.start_s, 3),
        "end_s": round(m.end_s, 3),
        "bandwidth_mibs": round(m.bandwidth_mibs, 3),
        "path": list(m.path),
        "copy_storage": list(m.copy_storage),
        "live": m.live,
        "converges": m.converges,
        "auto_converge": m.auto_converge,
        "predicted_downtime_ms": round(m.predicted_downtime_ms, 1),
        "priority": m.priority,
        "memory_mib": m.memory_mib,
        "disk_mib": m.disk_mib,
    }


# ---------------------------------------------------------------- reading plan files


@dataclass
class _Reader:
    """Collects every problem of a plan document instead of stopping at the first."""

    problems: list[Problem] = field(default_factory=list)

    def err(self, where: str, msg: str) -> None:
        self.problems.append(Problem(where, msg))

    def get(self, obj: Mapping[str, Any], key: str, where: str, kind: str, required: bool = True,
            default: Any = None) -> Any:
        if key not in obj:
            if required:
                self.err(f"{where}.{key}" if where else key, "is required")
            return default
        val = obj[key]
        ok = {
            "str": isinstance(val, str),
            "int": isinstance(val, int) and not isinstance(val, bool),
            "num": isinstance(val, int | float) and not isinstance(val, bool)
            and math.isfinite(float(val)),
            "bool": isinstance(val, bool),
            "list": isinstance(val, list),
            "strlist": isinstance(val, list) and all(isinstance(x, str) for x in val),
        }[kind]
        if not ok:
            names = {"str": "a string", "int": "an integer", "num": "a finite number", "bool": "true or false",
                     "list": "a list", "strlist": "a list of strings"}
            self.err(f"{where}.{key}" if where else key, f"must be {names[kind]}, got {val!r}"[:200])
            return default
        return val


def plan_from_dict(doc: Any, source: str = "plan") -> Plan:
    """Builds a `Plan` from plan v1 data; raises `PlanFileError` naming every problem."""
    r = _Reader()
    if not isinstance(doc, dict):
        raise PlanFileError(source, [Problem("", "a plan must be a JSON object")])
    version = r.get(doc, "version", "", "int")
    if version is not None and version != 1:
        r.err("version", f"unsupported plan version {version}; this evac reads version 1")
    sha = r.get(doc, "inventory_sha256", "", "str", default="")
    drained = r.get(doc, "drained", "", "strlist", default=[])
    status_raw = r.get(doc, "status", "", "str", default="feasible")
    try:
        status = PlanStatus(status_raw)
    except ValueError:
        r.err("status", f"must be one of optimal, feasible, infeasible; got {status_raw!r}")
        status = PlanStatus.FEASIBLE
    makespan = r.get(doc, "makespan_s", "", "num", default=0.0)
    lb = r.get(doc, "lower_bound_s", "", "num", default=0.0)
    solve = r.get(doc, "solve_s", "", "num", default=0.0)
    solver = r.get(doc, "solver", "", "str", required=False, default="unknown")
    labels = r.get(doc, "drain_labels", "", "strlist", required=False, default=[])
    migs: list[Migration] = []
    seen: set[str] = set()
    for i, m in enumerate(r.get(doc, "migrations", "", "list", default=[])):
        w = f"migrations[{i}]"
        if not isinstance(m, dict):
            r.err(w, "must be an object")
            continue
        n = len(r.problems)
        vm = r.get(m, "vm", w, "str", default="")
        if vm in seen:
            r.err(f"{w}.vm", f"VM {vm!r} migrates more than once")
        seen.add(vm)
        mig = Migration(
            vm=vm,
            source=r.get(m, "source", w, "str", default=""),
            destination=r.get(m, "destination", w, "str", default=""),
            wave=r.get(m, "wave", w, "int", default=0),
            start_s=float(r.get(m, "start_s", w, "num", default=0.0)),
            end_s=float(r.get(m, "end_s", w, "num", default=0.0)),
            bandwidth_mibs=float(r.get(m, "bandwidth_mibs", w, "num", default=0.0)),
            path=tuple(r.get(m, "path", w, "strlist", default=[])),
            copy_storage=tuple(r.get(m, "copy_storage", w, "strlist", default=[])),
            live=r.get(m, "live", w, "bool", default=True),
            converges=r.get(m, "converges", w, "bool", default=True),
            auto_converge=r.get(m, "auto_converge", w, "bool", default=False),
            predicted_downtime_ms=float(r.get(m, "predicted_downtime_ms", w, "num", default=0.0)),
            priority=r.get(m, "priority", w, "int", required=False, default=0),
            memory_mib=float(r.get(m, "memory_mib", w, "num", required=False, default=0.0)),
            disk_mib=float(r.get(m, "disk_mib", w, "num", required=False, default=0.0)),
        )
        if len(r.problems) == n:
            if mig.end_s < mig.start_s:
                r.err(f"{w}.end_s", f"ends ({mig.end_s}) before it starts ({mig.start_s})")
            if mig.bandwidth_mibs <= 0:
                r.err(f"{w}.bandwidth_mibs", f"must be positive, got {mig.bandwidth_mibs}")
            if mig.wave < 0:
                r.err(f"{w}.wave", f"must be >= 0, got {mig.wave}")
        migs.append(mig)
    unplaced: list[Unplaced] = []
    for i, u in enumerate(r.get(doc, "unplaced", "", "list", default=[])):
        w = f"unplaced[{i}]"
        if not isinstance(u, dict):
            r.err(w, "must be an object")
            continue
        unplaced.append(Unplaced(r.get(u, "vm", w, "str", default=""),
                                 tuple(r.get(u, "reasons", w, "strlist", default=[]))))
    if r.problems:
        raise PlanFileError(source, r.problems)
    return Plan(
        inventory_sha256=sha,
        drained=tuple(drained),
        status=status,
        makespan_s=float(makespan),
        lower_bound_s=float(lb),
        solve_s=float(solve),
        migrations=tuple(migs),
        unplaced=tuple(unplaced),
        solver=solver,
        drain_labels=tuple(labels),
    )


def load_plan(path: str | Path) -> Plan:
    """Reads a plan file with the reader every evac document goes through (planner.documents): UTF-8 with or
    without BOM, depth and number limits. A key given twice is an error here, not a warning: a plan says
    what evac will do to running VMs, and which of two values it meant is not evac's guess to make."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise PlanFileError(str(p), [Problem("", f"cannot read: {e.strerror or e}")]) from None
    doc, _ = read_document(raw, str(p), error=PlanFileError, duplicates="error")
    try:
        return plan_from_dict(doc, str(p))
    except RecursionError:  # parsed just below Python's limit, then one repr() deeper in a message
        raise PlanFileError(str(p), [Problem("", "nested too deeply")]) from None
