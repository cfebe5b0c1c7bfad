"""Rolling maintenance: rounds of hosts emptied together, each drained, maintained and refilled, timed end to end.

Ganeti's `hroller` groups nodes that may reboot together; it never says how long the roll takes. evac
plans every round, so it can: `plan_roll(inventory, group_by=…, max_hosts=…)` returns the rounds, for
each a drain plan (`planner.solve.make_plan`), the maintenance window and a return plan (every VM the
drain moved goes back to the host it left), and one timeline for the whole roll:

    round 1 drain | maintenance | round 1 return | round 2 drain | … | round n return

Choosing rounds: the hosts that are up, in inventory order; with `group_by` one group per value of that
label (sorted; hosts without the label last, in a group of their own). A group is one round when its
drain is feasible; otherwise, and with `max_hosts`, hosts are packed greedily (`next_round`): a round
takes each remaining host in turn when the drain of the round with it is still feasible (capacity,
anti-affinity, every host rule: the planner's own answer), up to `max_hosts`; a host the planner cannot
empty even alone cannot be rolled, and says why (ranked blockers, e.g. a pinned VM). Every round is
packed and planned on the fleet as the previous round's return leaves it. Each packing step is a drain
plan (greedy: ~0.1–0.5 s on data/medium.json), so `max_hosts` costs about one plan per host and round tried.

The return plan of a round (kind `return`, made by `evac return`'s planner,
`planner.reconfigure.return_home.plan_return`) is made on the inventory as it will be after the drain:
the VMs on their drain destinations, the drained hosts empty and back in service
(`planner.report.after_inventory`). A VM that cannot go home is named with the reason and stays where the
drain put it. VMs of hosts in maintenance are emptied by the first drain (as every plan does) and not
returned.

Pure: no files, no clock but the plans' own solve times. `Roll.to_dict()` is the `evac-rolling/1`
document (`rolling.json`) that `planner.report.roll_timeline` and `evac report` read back.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from planner.duration import DEFAULT_MODEL, DurationModel
from planner.errors import Problem
from planner.model import HostState, Inventory
from planner.plan import Plan, PlanStatus
from planner.report import after_inventory
from planner.solve import make_plan
from planner.units import mib_to_gib
from planner.whatif.evaluate import Blocker, rank_blockers

if TYPE_CHECKING:  # planner.reconfigure is imported when a return is planned
    from planner.reconfigure import Reconfiguration

ROLLING_FORMAT = "evac-rolling/1"
DEFAULT_MAINTENANCE_MIN = 30.0


def drain_file(number: int) -> str:
    """The file name of round `number`'s drain plan in the output folder (`round-01-drain.json`)."""
    return f"round-{number:02d}-drain.json"


def return_file(number: int) -> str:
    return f"round-{number:02d}-return.json"


def inventory_file(number: int, when: str) -> str:
    """A predicted inventory a plan of round `number` was made on: `round-01-drained.inventory.json`
    (after its drain: the return's), `round-02-start.inventory.json` (a drain's, when an earlier return
    left some VM away from home and the fleet is no longer the input inventory)."""
    return f"round-{number:02d}-{when}.inventory.json"


@dataclass(frozen=True, slots=True)
class Unrollable:
    """A host no round can empty, and why (the drain planner's reasons, ranked)."""

    host: str
    group: str
    blockers: tuple[Blocker, ...]

    def reason(self) -> str:
        return "; ".join(f"{b.reason} ({b.vms} VM{'s' if b.vms != 1 else ''}: {', '.join(b.examples)})"
                         for b in self.blockers) or "the planner cannot empty it"


@dataclass(frozen=True)
class Round:
    number: int
    group: str  # "rack=r1" with group_by, "" without
    hosts: tuple[str, ...]
    drain: Plan
    back: Plan  # the return plan
    start_inventory: Inventory  # what the drain was planned on
    drained_inventory: Inventory  # after the drain: what the return was planned on
    start_s: float  # on the roll's clock
    maintenance_s: float
    notes: tuple[str, ...] = ()
    skipped: Mapping[str, str] = field(default_factory=dict)  # VM -> why the return does not send it home

    @property
    def drain_s(self) -> float:
        return self.drain.makespan_s

    @property
    def return_s(self) -> float:
        return self.back.makespan_s

    @property
    def end_s(self) -> float:
        return self.start_s + self.drain_s + self.maintenance_s + self.return_s

    @property
    def home(self) -> dict[str, str]:
        """VM -> the host it leaves in this round's drain and must come back to."""
        return {m.vm: m.source for m in self.drain.migrations if m.source in self.hosts}

    @property
    def not_returned(self) -> tuple[str, ...]:
        """VMs of this round's hosts that do not end at home after the return."""
        final = {v.name: v.host for v in after_inventory(self.drained_inventory, self.back).vms}
        return tuple(sorted(vm for vm, h in self.home.items() if final.get(vm) != h))

    @property
    def feasible(self) -> bool:
        return self.drain.status is not PlanStatus.INFEASIBLE and self.back.status is not PlanStatus.INFEASIBLE \
            and not self.not_returned

    def phases(self) -> list[tuple[str, float, float]]:
        """(phase, start, end) on the roll's clock: drain, maintenance, return."""
        t1 = self.start_s + self.drain_s
        t2 = t1 + self.maintenance_s
        return [("drain", self.start_s, t1), ("maintenance", t1, t2), ("return", t2, t2 + self.return_s)]

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.number, "group": self.group, "hosts": list(self.hosts), "feasible": self.feasible,
                "start_s": round(self.start_s, 3), "drain_s": round(self.drain_s, 3),
                "maintenance_s": round(self.maintenance_s, 3), "return_s": round(self.return_s, 3),
                "end_s": round(self.end_s, 3), "drain_lower_bound_s": round(self.drain.lower_bound_s, 3),
                "return_lower_bound_s": round(self.back.lower_bound_s, 3),
                "vms_drained": len({m.vm for m in self.drain.migrations}),
                "vms_returned": len(self.home) - len(self.not_returned),
                "gib_drained": round(_gib(self.drain), 1), "gib_returned": round(_gib(self.back), 1),
                "drain_status": self.drain.status.value, "return_status": self.back.status.value,
                "return_kind": self.back.kind.value, "not_returned": list(self.not_returned),
                "not_returned_why": {vm: self.skipped.get(vm, "not sent home") for vm in self.not_returned},
                "drain_plan": drain_file(self.number), "return_plan": return_file(self.number),
                "phases": [{"phase": p, "start_s": round(a, 3), "end_s": round(b, 3)} for p, a, b in self.phases()],
                "notes": list(self.notes)}


@dataclass(frozen=True)
class Roll:
    mode: str  # "group-by rack", "max-hosts 4", "group-by rack, max-hosts 4"
    maintenance_s: float
    rounds: tuple[Round, ...]
    unrollable: tuple[Unrollable, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def total_s(self) -> float:
        return self.rounds[-1].end_s if self.rounds else 0.0

    @property
    def feasible(self) -> bool:
        """Every host that is up is rolled, and every round drains and brings every VM home."""
        return not self.unrollable and all(r.feasible for r in self.rounds)

    def to_dict(self) -> dict[str, Any]:
        """The `evac-rolling/1` document (rolling.json)."""
        return {"format": ROLLING_FORMAT, "mode": self.mode, "feasible": self.feasible,
                "maintenance_s": self.maintenance_s, "total_s": round(self.total_s, 3),
                "drain_s": round(sum(r.drain_s for r in self.rounds), 3),
                "return_s": round(sum(r.return_s for r in self.rounds), 3),
                "rounds": [r.to_dict() for r in self.rounds],
                "unrollable": [{"host": u.host, "group": u.group, "reason": u.reason(),
                                "blockers": [{"reason": b.reason, "vms": b.vms, "examples": list(b.examples)}
                                             for b in u.blockers]} for u in self.unrollable],
                "notes": list(self.notes)}


_NUMBER = (int, float)
_TOP_FIELDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("mode", str), ("feasible", bool), ("total_s", _NUMBER), ("drain_s", _NUMBER), ("return_s", _NUMBER),
    ("rounds", list))
_ROUND_FIELDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("round", int), ("group", str), ("hosts", list), ("feasible", bool), ("start_s", _NUMBER), ("drain_s", _NUMBER),
    ("maintenance_s", _NUMBER), ("return_s", _NUMBER), ("end_s", _NUMBER), ("vms_drained", int), ("phases", list))


def _typed(value: object, kind: type | tuple[type, ...]) -> bool:
    """isinstance, but a JSON true/false is only a bool (Python's bool is an int)."""
    return isinstance(value, kind) and (isinstance(value, bool) == (kind is bool))


def document_problems(doc: Mapping[str, Any]) -> list[Problem]:
    """Every problem of an `evac-rolling/1` document read back (`evac report rolling.json`), where it is."""
    problems = [Problem(k, "missing or of the wrong type") for k, kind in _TOP_FIELDS if not _typed(doc.get(k), kind)]
    rounds = doc.get("rounds")
    for i, r in enumerate(rounds if isinstance(rounds, list) else []):
        if not isinstance(r, dict):
            problems.append(Problem(f"rounds[{i}]", "not an object"))
            continue
        problems += [Problem(f"rounds[{i}].{k}", "missing or of the wrong type")
                     for k, kind in _ROUND_FIELDS if not _typed(r.get(k), kind)]
        phases = r.get("phases")
        for j, p in enumerate(phases if isinstance(phases, list) else []):
            if not (isinstance(p, dict) and _typed(p.get("phase"), str)
                    and _typed(p.get("start_s"), _NUMBER) and _typed(p.get("end_s"), _NUMBER)):
                problems.append(Problem(f"rounds[{i}].phases[{j}]", "needs phase, start_s and end_s"))
        if isinstance(r.get("hosts"), list) and not all(isinstance(h, str) for h in r["hosts"]):
            problems.append(Problem(f"rounds[{i}].hosts", "not a list of host names"))
    return problems


def _gib(plan: Plan) -> float:
    return mib_to_gib(sum(m.memory_mib + m.disk_mib for m in plan.migrations))


ReturnPlanner = Callable[[Inventory, Mapping[str, str]], "Reconfiguration"]


def return_plan(inventory: Inventory, home: Mapping[str, str], *, time_limit_s: float = 0.0,
                workers: int = 1) -> Reconfiguration:
    """The plan (kind `return`) sending each VM of `home` back to its host, made on `inventory` (the VMs where
    the drain left them): `planner.reconfigure.return_home.plan_return`, the planner of `evac return`.

    `time_limit_s` 0 keeps its greedy sequence (the same plan every run, as the drains); more lets CP-SAT
    re-time the hops (on data/medium.json 206.4 s greedy, 206.0 s with 3 s of CP-SAT). A VM that cannot
    go home is skipped with its reason (`Reconfiguration.skipped`)."""
    from planner.reconfigure.return_home import Trip, plan_return

    trips = {vm: Trip(vm, h, inventory.vm[vm].host) for vm, h in home.items() if vm in inventory.vm}
    return plan_return(inventory, trips, time_limit_s=time_limit_s, workers=workers)


def _groups(inventory: Inventory, group_by: str | None) -> list[tuple[str, list[str]]]:
    up = [h for h in inventory.hosts if h.state is HostState.UP]
    if group_by is None:
        return [("", [h.name for h in up])]
    values = sorted({h.labels[group_by] for h in up if group_by in h.labels})
    out = [(f"{group_by}={v}", [h.name for h in up if h.labels.get(group_by) == v]) for v in values]
    rest = [h.name for h in up if group_by not in h.labels]
    if rest:
        out.append((f"no {group_by} label", rest))
    return out


def _unlabelled_note(inventory: Inventory, group_by: str | None) -> list[str]:
    rest = [h.name for h in inventory.hosts if h.state is HostState.UP and group_by is not None
            and group_by not in h.labels]
    return [f"hosts without label {group_by}, rolled as a group of their own: {', '.join(rest)}"] if rest else []


@dataclass(frozen=True)
class _Planner:
    """make_plan with the roll's settings: the packing's feasibility test, and each round's drain plan."""

    greedy: bool
    time_limit_s: float
    workers: int
    model: DurationModel

    def drain(self, inventory: Inventory, hosts: Sequence[str], labels: Sequence[str] = ()) -> Plan:
        return make_plan(inventory, tuple(hosts), time_limit_s=self.time_limit_s, workers=self.workers,
                         model=self.model, greedy_only=self.greedy, drain_labels=tuple(labels))


def _feasible(plan: Plan) -> bool:
    return plan.status is not PlanStatus.INFEASIBLE


def next_round(inventory: Inventory, remaining: list[str], limit: int | None, planner: _Planner, group: str
               ) -> tuple[list[str], Plan | None, list[Unrollable]]:
    """The next round of a greedy packing of `remaining` (module docstring); takes its hosts out of `remaining`.

    The round takes the remaining hosts in order, keeping each one whose addition leaves the drain
    feasible, up to `limit`; a host refused by the still empty round cannot be emptied at all (it is taken
    out too, with its blockers). Returns the round's hosts and drain plan (its last feasible test)."""
    current: list[str] = []
    plan: Plan | None = None
    unrollable: list[Unrollable] = []
    for h in list(remaining):
        if limit is not None and len(current) >= limit:
            break
        trial = planner.drain(inventory, [*current, h])
        if _feasible(trial):
            current.append(h)
            plan = trial
            remaining.remove(h)
        elif not current:
            remaining.remove(h)
            own = {u.vm: u.reasons for u in trial.unplaced if inventory.vm[u.vm].host == h}
            unrollable.append(Unrollable(h, group, rank_blockers(own or {u.vm: u.reasons for u in trial.unplaced})))
    return current, plan, unrollable


def plan_roll(inventory: Inventory, *, group_by: str | None = None, max_hosts: int | None = None,
              maintenance_s: float = DEFAULT_MAINTENANCE_MIN * 60, greedy: bool = True, time_limit_s: float = 10.0,
              workers: int = 1, model: DurationModel = DEFAULT_MODEL,
              plan_return: ReturnPlanner | None = None, on_round: Callable[[Round], None] | None = None) -> Roll:
    """The rolling maintenance of every host that is up (see the module docstring); `on_round` is told of
    each round once it is planned (a progress display)."""
    if group_by is None and max_hosts is None:
        raise ValueError("plan_roll needs group_by or max_hosts")
    if max_hosts is not None and max_hosts < 1:
        raise ValueError(f"max_hosts must be >= 1, got {max_hosts}")
    planner = _Planner(greedy, time_limit_s, workers, model)
    if plan_return is None:
        plan_return = functools.partial(return_plan, time_limit_s=0.0 if greedy else time_limit_s, workers=workers)
    mode = ", ".join(x for x in (f"group-by {group_by}" if group_by else "",
                                 f"max-hosts {max_hosts}" if max_hosts else "") if x)
    notes: list[str] = []
    down = [h.name for h in inventory.hosts if h.state is HostState.DOWN]
    maintenance = [h.name for h in inventory.hosts if h.state is HostState.MAINTENANCE]
    if down:
        notes.append(f"hosts down, not rolled: {', '.join(down)}")
    if maintenance:
        notes.append(f"hosts in maintenance, emptied by the first drain and not rolled (their VMs are not "
                     f"returned): {', '.join(maintenance)}")
    notes += _unlabelled_note(inventory, group_by)
    rounds: list[Round] = []
    unrollable: list[Unrollable] = []
    current = inventory
    clock = 0.0
    for group, hosts in _groups(inventory, group_by):
        whole = None  # the whole group as one round, when it may be one
        if group_by is not None and (max_hosts is None or len(hosts) <= max_hosts):
            whole = planner.drain(current, hosts, labels=[group] if "=" in group else [])
        remaining = list(hosts)
        first, lost = len(rounds), len(unrollable)
        while remaining:
            if whole is not None and _feasible(whole):
                hs, drain, remaining = remaining, whole, []
            else:
                hs, maybe, out = next_round(current, remaining, max_hosts, planner, group)
                unrollable += out
                if maybe is None:
                    continue
                drain = maybe
            rnd = _round(len(rounds) + 1, group, hs, drain, current, clock, maintenance_s, plan_return)
            rounds.append(rnd)
            if on_round is not None:
                on_round(rnd)
            clock = rnd.end_s
            current = after_inventory(rnd.drained_inventory, rnd.back)
        if whole is not None and not _feasible(whole):
            why = rank_blockers({u.vm: u.reasons for u in whole.unplaced}, top=1)
            split = f"{len(rounds) - first} rounds of fewer hosts" if len(rounds) > first else "no round"
            notes.append(f"{group} cannot be emptied at once ({why[0].reason}, {why[0].vms} VMs): {split}"
                         + (f", {len(unrollable) - lost} hosts not at all" if len(unrollable) > lost else ""))
    return Roll(mode, maintenance_s, tuple(rounds), tuple(unrollable), tuple(notes))


def _round(number: int, group: str, hosts: Sequence[str], drain: Plan, start: Inventory, clock: float,
           maintenance_s: float, plan_return: ReturnPlanner) -> Round:
    """Round `number`: its drain, the fleet after it, and the return plan made on that fleet."""
    drained = after_inventory(start, drain)
    home = {m.vm: m.source for m in drain.migrations if m.source in hosts}
    back = plan_return(drained, home)
    notes = []
    away = {vm: why for vm, why in back.skipped.items() if vm in home}
    away.update({u.vm: "; ".join(u.reasons) for u in back.plan.unplaced if u.vm in home})
    if away:
        ranked = rank_blockers({vm: (why,) for vm, why in away.items()}, top=2)
        notes.append(f"{len(away)} VMs cannot go home and stay where the drain put them: "
                     + "; ".join(f"{b.reason} ({b.vms}: {', '.join(b.examples)})" for b in ranked))
    staged = sorted({m.vm for m in back.plan.migrations if m.staging})
    if staged:
        notes.append(f"{len(staged)} VMs take a staging hop on the way home: {', '.join(staged[:5])}")
    return Round(number, group, tuple(hosts), drain, back.plan, start, drained, clock, maintenance_s, tuple(notes),
                 away)


__all__ = ["DEFAULT_MAINTENANCE_MIN", "ROLLING_FORMAT", "Roll", "Round", "Unrollable", "document_problems",
           "drain_file", "inventory_file", "next_round", "plan_roll", "return_file", "return_plan"]
