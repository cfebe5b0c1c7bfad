"""Plan v1 as a value: `Plan`, `Migration`, `Unplaced` (shared/contracts/plan-v1.md).

A plan is produced by the planner and consumed by the checker, the simulator, the executor,
the reports and the notebooks. Nothing mutates a plan; re-planning makes a new one.

Optional fields evac adds to plan v1 (documented in docs/plan.md):
* `solver` (str): what produced it: "cp-sat", "greedy", or a baseline's name.
* `drain_labels` (list of "key=value"): the `--drain-label` selectors that chose `drained`.
* `migrations[].priority` (int): the VM's priority, copied for the executor's ordering.
* `migrations[].memory_mib`, `migrations[].disk_mib` (float): what the duration model moved.
* `target` ({vm: host}): in a `target` plan, the placement the operator asked for.
* `inventory_path` (str): where the inventory the plan was made for was read from (`evac plan` writes
  it absolute; a relative one is read against the plan file's folder), so `evac run PLAN` and
  `evac check PLAN` need no `--inventory`. Only a hint: `inventory_sha256` still decides.

The reconfiguration section of plan v1 (docs/plan.md): `kind`, `migrations[].hop`,
`migrations[].staging` and `balance` — a VM may move several times (hops) in every kind but `drain`.
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
from planner.duration import DEFAULT_MODEL, DurationModel, model_constants, model_from_constants
from planner.errors import PlanFileError, Problem


class PlanStatus(StrEnum):
    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"


class PlanKind(StrEnum):
    """What a reconfiguration plan is for (plan v1, reconfiguration section)."""

    DRAIN = "drain"  # empty hosts; one migration per VM
    REPAIR = "repair"  # only VMs whose current host breaks a hard rule move
    TARGET = "target"  # reach a placement the operator gave
    REBALANCE = "rebalance"  # level load
    RETURN = "return"  # VMs back to the hosts a journal says they came from

    @property
    def hops_allowed(self) -> bool:
        """Every kind but a drain may move a VM several times (staging hops)."""
        return self is not PlanKind.DRAIN


@dataclass(frozen=True, slots=True)
class Spread:
    """Utilisation of the hosts that are up and not drained, in % of capacity."""

    spread_pct: float  # max − min
    max_pct: float
    stddev_pct: float


@dataclass(frozen=True, slots=True)
class Balance:
    """A rebalance plan's `balance` section: load before and after, and what it costs."""

    metric: str  # "memory" | "cpu" | "both"
    by: str  # "allocation" | "usage"
    before: Spread
    after: Spread
    moved_gib: float


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
    hop: int = 0  # 0 for a VM's first migration, 1 for its second...
    staging: bool = False  # the destination is not where the VM ends

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
    inventory_path: str | None = None
    version: int = 1
    kind: PlanKind = PlanKind.DRAIN
    balance: Balance | None = None
    target: Mapping[str, str] = field(default_factory=dict, hash=False)
    # The duration model the plan was made with, when not evac's default (a calibrated model file), and
    # where it came from; the checker, the simulated fleet and the run's ETA use it (docs/plan.md).
    model: DurationModel | None = None
    model_source: str | None = None

    @property
    def duration_model(self) -> DurationModel:
        """The model this plan's durations follow: its recorded one, else evac's default."""
        return self.model if self.model is not None else DEFAULT_MODEL

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
        """The VM's first migration (its only one in a drain plan)."""
        for m in self.migrations:
            if m.vm == vm:
                return m
        return None

    def hops_of(self, vm: str) -> tuple[Migration, ...]:
        """Every migration of `vm`, in start order."""
        return tuple(sorted((m for m in self.migrations if m.vm == vm), key=lambda m: (m.start_s, m.hop)))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "kind": self.kind.value,
            "inventory_sha256": self.inventory_sha256,
            "drained": list(self.drained),
            "status": self.status.value,
            "makespan_s": round(self.makespan_s, 3),
            "lower_bound_s": round(self.lower_bound_s, 3),
            "solve_s": round(self.solve_s, 3),
            "solver": self.solver,
            "drain_labels": list(self.drain_labels),
            **({"inventory_path": self.inventory_path} if self.inventory_path is not None else {}),
            "migrations": [_migration_to_dict(m) for m in self.migrations],
            "unplaced": [{"vm": u.vm, "reasons": list(u.reasons)} for u in self.unplaced],
        }
        if self.balance is not None:
            b = self.balance
            out["balance"] = {"metric": b.metric, "by": b.by, "before": _spread_to_dict(b.before),
                              "after": _spread_to_dict(b.after), "moved_gib": round(b.moved_gib, 3)}
        if self.target:
            out["target"] = dict(self.target)
        if self.model is not None:
            out["model"] = {**({"source": self.model_source} if self.model_source else {}),
                            "constants": model_constants(self.model)}
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _spread_to_dict(s: Spread) -> dict[str, float]:
    return {"spread_pct": round(s.spread_pct, 3), "max_pct": round(s.max_pct, 3), "stddev_pct": round(s.stddev_pct, 3)}


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
        "hop": m.hop,
        "staging": m.staging,
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
    kind_raw = r.get(doc, "kind", "", "str", required=False, default="drain")
    try:
        kind = PlanKind(kind_raw)
    except ValueError:
        r.err("kind", f"must be one of {', '.join(k.value for k in PlanKind)}; got {kind_raw!r}"[:200])
        kind = PlanKind.DRAIN
    inventory_path = r.get(doc, "inventory_path", "", "str", required=False, default=None)
    if inventory_path == "" or (isinstance(inventory_path, str) and "\0" in inventory_path):
        r.err("inventory_path", "must be a file path")
    migs: list[Migration] = []
    seen: set[str] = set()
    for i, m in enumerate(r.get(doc, "migrations", "", "list", default=[])):
        w = f"migrations[{i}]"
        if not isinstance(m, dict):
            r.err(w, "must be an object")
            continue
        n = len(r.problems)
        vm = r.get(m, "vm", w, "str", default="")
        if vm in seen and not kind.hops_allowed:
            r.err(f"{w}.vm", f"VM {vm!r} migrates more than once (only plans of kind other than drain have hops)")
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
            hop=r.get(m, "hop", w, "int", required=False, default=0),
            staging=r.get(m, "staging", w, "bool", required=False, default=False),
        )
        if len(r.problems) == n:
            if mig.end_s < mig.start_s:
                r.err(f"{w}.end_s", f"ends ({mig.end_s}) before it starts ({mig.start_s})")
            if mig.bandwidth_mibs <= 0:
                r.err(f"{w}.bandwidth_mibs", f"must be positive, got {mig.bandwidth_mibs}")
            if mig.wave < 0:
                r.err(f"{w}.wave", f"must be >= 0, got {mig.wave}")
            if mig.hop < 0:
                r.err(f"{w}.hop", f"must be >= 0, got {mig.hop}")
        migs.append(mig)
    unplaced: list[Unplaced] = []
    for i, u in enumerate(r.get(doc, "unplaced", "", "list", default=[])):
        w = f"unplaced[{i}]"
        if not isinstance(u, dict):
            r.err(w, "must be an object")
            continue
        unplaced.append(Unplaced(r.get(u, "vm", w, "str", default=""),
                                 tuple(r.get(u, "reasons", w, "strlist", default=[]))))
    balance = _read_balance(r, doc) if "balance" in doc else None
    target: dict[str, str] = {}
    raw_target = doc.get("target", {})
    if not isinstance(raw_target, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in raw_target.items()):
        r.err("target", "must be an object of VM name to host name")
    else:
        target = dict(raw_target)
    model, model_source = _read_model(r, doc) if "model" in doc else (None, None)
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
        kind=kind,
        balance=balance,
        target=target,
        inventory_path=inventory_path,
        model=model,
        model_source=model_source,
    )


def _read_model(r: _Reader, doc: Mapping[str, Any]) -> tuple[DurationModel | None, str | None]:
    raw = doc["model"]
    if not isinstance(raw, dict):
        r.err("model", "must be an object with `constants` (and optionally `source`)")
        return None, None
    for key in sorted(set(raw) - {"constants", "source"}):
        r.err(f"model.{key}", "unknown key (known: constants, source)")
    model_source = r.get(raw, "source", "model", "str", required=False, default=None)
    if "constants" not in raw:
        r.err("model.constants", "is required")
        return None, model_source
    return model_from_constants(raw["constants"], "model.constants", r.problems), model_source


def _read_balance(r: _Reader, doc: Mapping[str, Any]) -> Balance | None:
    b = doc["balance"]
    if not isinstance(b, dict):
        r.err("balance", "must be an object")
        return None
    metric = r.get(b, "metric", "balance", "str", default="memory")
    by = r.get(b, "by", "balance", "str", default="allocation")
    if metric not in ("memory", "cpu", "both"):
        r.err("balance.metric", f"must be memory, cpu or both; got {metric!r}"[:200])
    if by not in ("allocation", "usage"):
        r.err("balance.by", f"must be allocation or usage; got {by!r}"[:200])
    spreads = []
    for side in ("before", "after"):
        raw, w = b.get(side), f"balance.{side}"
        if not isinstance(raw, dict):
            r.err(w, "is required: an object with spread_pct, max_pct and stddev_pct")
            spreads.append(Spread(0.0, 0.0, 0.0))
            continue
        spreads.append(Spread(*(float(r.get(raw, k, w, "num", default=0.0))
                                for k in ("spread_pct", "max_pct", "stddev_pct"))))
    moved = float(r.get(b, "moved_gib", "balance", "num", default=0.0))
    return Balance(metric, by, spreads[0], spreads[1], moved)


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
