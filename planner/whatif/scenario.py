"""What-if scenarios: parsing `--scenario` text and applying it to an inventory.

Grammar (docs/whatif.md): a scenario is one or more parts joined by `+`; a part is one of

    drain=H1,H2                 empty these hosts (a drain plan, as `evac plan --drain`)
    drain-label=rack=r3         empty every host with this label (`evac plan --drain-label`)
    fail=H1,H2                  these hosts die: their running VMs must RESTART elsewhere (no migration)
    add-hosts=N:k=v,...         N new hosts like an existing one; keys cpus, memory_gib, nic_gbps,
                                local_disk_gib, reserved_memory_gib, switch; any other key is a label
    migration-share=0.3         policy.migration_share
    nic-gbps=25                 every host's NIC speed
    policy.KEY=VALUE            any inventory v1 policy field

Parsing is bad-input territory: `parse_scenarios` and `prepare` collect EVERY problem of every
scenario (where: `--scenario 2 'drain=h99'`) and raise one `UsageError` (exit 2).
Environment changes (add-hosts, nic-gbps, policy) apply first, then failures, then the drain. A drain
empties what `evac plan` would (hosts in maintenance too); a scenario without a drain part drains nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from planner.drain import resolve_drain
from planner.errors import Problem, UsageError
from planner.model import Host, HostState, Inventory, Policy
from planner.units import gib_to_mib

COMMAND = "evac whatif"
KINDS = ("drain", "drain-label", "fail", "add-hosts", "migration-share", "nic-gbps", "policy.KEY")
HOST_SPEC_NUMBERS = {"cpus": int, "memory_gib": float, "nic_gbps": float, "local_disk_gib": float,
                     "reserved_memory_gib": float}
MAX_NEW_HOSTS = 10_000


@dataclass(frozen=True, slots=True)
class AddHosts:
    count: int
    numbers: tuple[tuple[str, float], ...] = ()  # cpus, memory_gib, ... as given
    switch: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Scenario:
    """One scenario, parsed; `text` is its name in every table."""

    text: str
    drain: tuple[str, ...] = ()
    drain_labels: tuple[str, ...] = ()
    fail: tuple[str, ...] = ()
    add_hosts: tuple[AddHosts, ...] = ()
    policy: tuple[tuple[str, float | int | bool], ...] = ()
    nic_gbps: float | None = None
    where: str = ""  # how problems name it: `--scenario 2 'drain=h99'` (sweeps: the scenario text)

    @property
    def changes_fleet(self) -> bool:
        """True when the scenario changes the inventory itself (not only what is drained or fails)."""
        return bool(self.add_hosts or self.policy or self.nic_gbps is not None or self.fail)


_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool}


def _policy_types() -> dict[str, type]:
    """Each policy field's declared type (not its default's: `max_downtime_ms: float = 500`)."""
    return {f.name: _TYPES[f.type if isinstance(f.type, str) else f.type.__name__]
            for f in dataclasses.fields(Policy)}


def _number(text: str, kind: type, what: str, problems: list[Problem], where: str) -> float | None:
    try:
        value = float(text) if kind is float else int(text)
    except ValueError:
        problems.append(Problem(where, f"{what}: {text!r} is not {'a number' if kind is float else 'an integer'}"))
        return None
    if not math.isfinite(value):
        problems.append(Problem(where, f"{what}: {text!r} is not a finite number"))
        return None
    return value


def _policy_value(key: str, text: str, problems: list[Problem], where: str) -> float | int | bool | None:
    types = _policy_types()
    kind = types.get(key)
    if kind is None:
        problems.append(Problem(where, f"unknown policy key {key!r}; known: {', '.join(sorted(types))}"))
        return None
    if kind is bool:
        low = text.lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        problems.append(Problem(where, f"policy.{key}: {text!r} is not true or false"))
        return None
    value = _number(text, kind, f"policy.{key}", problems, where)
    if value is None:
        return None
    if key == "migration_share" and not 0 < value <= 1:
        problems.append(Problem(where, f"policy.migration_share: {text} is not in (0, 1]"))
        return None
    if key.startswith("max_") and key != "max_downtime_ms" and value < 0:
        problems.append(Problem(where, f"policy.{key}: {text} is negative"))
        return None
    if (key.endswith("_overcommit") or key.endswith("_s") or key == "max_downtime_ms") and value <= 0:
        problems.append(Problem(where, f"policy.{key}: {text} must be > 0"))
        return None
    return value


def _names(value: str, what: str, problems: list[Problem], where: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(","))
    if not value or any(not n for n in names):
        problems.append(Problem(where, f"{what}: expected a comma-separated list of host names, got {value!r}"))
        return ()
    return names


def _add_hosts(value: str, problems: list[Problem], where: str) -> AddHosts | None:
    count_text, sep, spec = value.partition(":")
    count = _number(count_text, int, "add-hosts count", problems, where)
    ok = count is not None
    if count is not None and not 1 <= count <= MAX_NEW_HOSTS:
        problems.append(Problem(where, f"add-hosts: count {count_text} is not between 1 and {MAX_NEW_HOSTS}"))
        ok = False
    numbers: list[tuple[str, float]] = []
    labels: list[tuple[str, str]] = []
    switch = None
    for item in (spec.split(",") if sep and spec else []):
        key, eq, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not eq or not key or not val:
            problems.append(Problem(where, f"add-hosts: {item!r} is not key=value"))
            ok = False
        elif key in HOST_SPEC_NUMBERS:
            n = _number(val, HOST_SPEC_NUMBERS[key], f"add-hosts {key}", problems, where)
            if n is None:
                ok = False
            elif n < 0 or (n == 0 and key not in ("local_disk_gib", "reserved_memory_gib")):
                problems.append(Problem(where, f"add-hosts {key}: {val} must be > 0"))
                ok = False
            else:
                numbers.append((key, n))
        elif key == "switch":
            switch = val
        else:
            labels.append((key, val))
    if sep and not spec:
        problems.append(Problem(where, "add-hosts: nothing after ':' (e.g. add-hosts=2:cpus=64,memory_gib=512)"))
        ok = False
    return AddHosts(int(count), tuple(numbers), switch, tuple(labels)) if ok and count is not None else None


def parse_scenario(text: str, where: str, problems: list[Problem]) -> Scenario | None:
    """One scenario from its text; problems are appended (None when there is any)."""
    before = len(problems)
    drain: list[str] = []
    labels: list[str] = []
    fail: list[str] = []
    adds: list[AddHosts] = []
    policy: dict[str, float | int | bool] = {}
    nic: float | None = None
    if not text.strip():
        problems.append(Problem(where, "empty scenario; expected e.g. drain=h01 or drain-label=rack=r1"))
        return None
    for part in text.split("+"):
        part = part.strip()
        kind, eq, value = part.partition("=")
        kind = kind.strip()
        if not eq:
            problems.append(Problem(where, f"{part!r} is not KIND=VALUE; kinds: {', '.join(KINDS)}"))
        elif kind == "drain":
            drain += _names(value, "drain", problems, where)
        elif kind == "drain-label":
            key, sep, val = value.partition("=")
            if not sep or not key or not val:
                problems.append(Problem(where, f"drain-label: {value!r} is not key=value (e.g. rack=r1)"))
            else:
                labels.append(value)
        elif kind == "fail":
            fail += _names(value, "fail", problems, where)
        elif kind == "add-hosts":
            spec = _add_hosts(value, problems, where)
            if spec is not None:
                adds.append(spec)
        elif kind == "migration-share":
            v = _policy_value("migration_share", value, problems, where)
            if v is not None:
                policy["migration_share"] = v
        elif kind == "nic-gbps":
            n = _number(value, float, "nic-gbps", problems, where)
            if n is not None and n <= 0:
                problems.append(Problem(where, f"nic-gbps: {value} must be > 0"))
            elif n is not None:
                nic = n
        elif kind.startswith("policy.") and len(kind) > len("policy."):
            v = _policy_value(kind[len("policy."):], value, problems, where)
            if v is not None:
                policy[kind[len("policy."):]] = v
        else:
            problems.append(Problem(where, f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}"))
    both = sorted(set(drain) & set(fail))
    if both:
        problems.append(Problem(where, f"host(s) {', '.join(both)} both drained and failed"))
    if len(problems) > before:
        return None
    return Scenario(text=text.strip(), drain=tuple(drain), drain_labels=tuple(labels), fail=tuple(fail),
                    add_hosts=tuple(adds), policy=tuple(policy.items()), nic_gbps=nic, where=where)


def scenario_where(index: int, text: str) -> str:
    return f"--scenario {index + 1} {text!r}"


def parse_scenarios(texts: Sequence[str], problems: list[Problem] | None = None) -> list[Scenario]:
    """Every scenario parsed, or ONE UsageError naming every problem of every scenario.

    With `problems` given, problems are appended there instead and the good scenarios returned (so a
    caller can also check those against the inventory and report everything at once).
    """
    found: list[Problem] = [] if problems is None else problems
    out = []
    for i, text in enumerate(texts):
        sc = parse_scenario(text, scenario_where(i, text), found)
        if sc is not None:
            out.append(sc)
    if problems is None and found:
        raise UsageError(COMMAND, found)
    return out


def _new_hosts(inv: Inventory, spec: AddHosts, taken: set[str], where: str, problems: list[Problem]) -> list[Host]:
    """`spec.count` hosts modelled on an existing one (same labels if any host has them, else the first up host)."""
    up = [h for h in inv.hosts if h.state is HostState.UP] or list(inv.hosts)
    wanted = dict(spec.labels)
    template = next((h for h in up if wanted and all(h.labels.get(k) == v for k, v in wanted.items())), None)
    if template is None and spec.switch is not None:
        template = next((h for h in up if h.switch == spec.switch), None)
    template = template or (up[0] if up else None)
    if template is None:
        problems.append(Problem(where, "add-hosts: the inventory has no host to model new hosts on"))
        return []
    switches = {h.switch for h in inv.hosts} | {x for lk in inv.links for x in (lk.a, lk.b)}
    if spec.switch is not None and spec.switch not in switches:
        problems.append(Problem(where, f"add-hosts switch: unknown switch {spec.switch!r} (new hosts must join "
                                       f"an existing switch to be reachable)"))
        return []
    num = dict(spec.numbers)
    stem = "new-" + (wanted.get("rack") or spec.switch or "host")
    hosts: list[Host] = []
    i = 0
    while len(hosts) < spec.count:
        i += 1
        name = f"{stem}-{i:02d}"
        if name in taken:
            continue
        taken.add(name)
        memory_mib = int(gib_to_mib(num["memory_gib"])) if "memory_gib" in num else template.memory_mib
        reserved = int(gib_to_mib(num["reserved_memory_gib"])) if "reserved_memory_gib" in num \
            else min(template.reserved_memory_mib, memory_mib)
        hosts.append(dataclasses.replace(
            template, name=name, uri=None, migration_address=None, state=HostState.UP,
            cpus=int(num.get("cpus", template.cpus)), memory_mib=memory_mib, reserved_memory_mib=reserved,
            nic_gbps=float(num.get("nic_gbps", template.nic_gbps)),
            local_disk_free_gib=float(num.get("local_disk_gib", template.local_disk_free_gib)),
            switch=spec.switch if spec.switch is not None else template.switch,
            labels={**template.labels, **wanted}))
    return hosts


@dataclass(frozen=True)
class Prepared:
    """A scenario checked against the inventory: the changed fleet and the hosts it drains / fails."""

    scenario: Scenario
    inventory: Inventory
    fail: tuple[str, ...]
    drain: tuple[str, ...]  # named, labelled and in maintenance: exactly what `evac plan` would empty
    drain_labels: tuple[str, ...]


def apply_environment(inv: Inventory, sc: Scenario, where: str, problems: list[Problem]) -> Inventory:
    """The inventory with the scenario's fleet changes: new hosts, NIC speed, policy (failures come later)."""
    if not (sc.add_hosts or sc.policy or sc.nic_gbps is not None):
        return inv
    hosts = list(inv.hosts)
    taken = {h.name for h in hosts} | {v.name for v in inv.vms}
    for spec in sc.add_hosts:
        hosts += _new_hosts(inv, spec, taken, where, problems)
    if sc.nic_gbps is not None:
        hosts = [dataclasses.replace(h, nic_gbps=sc.nic_gbps) for h in hosts]
    changes: dict[str, Any] = dict(sc.policy)  # each value checked against its field's type by _policy_value
    policy = dataclasses.replace(inv.policy, **changes) if sc.policy else inv.policy
    return dataclasses.replace(inv, hosts=tuple(hosts), policy=policy)


def prepare(inv: Inventory, scenarios: Sequence[Scenario]) -> list[Prepared]:
    """Each scenario applied to `inv`; ONE UsageError naming every unknown host and label of every scenario."""
    problems: list[Problem] = []
    out = []
    for sc in scenarios:
        where = sc.where or sc.text
        before = len(problems)
        changed = apply_environment(inv, sc, where, problems)
        for name in sc.fail:
            if name not in changed.host:
                problems.append(Problem(where, f"fail: unknown host {name!r}"))
            elif changed.host[name].state is HostState.DOWN:
                problems.append(Problem(where, f"fail: host {name!r} is already down"))
        try:
            ds = resolve_drain(changed, sc.drain, sc.drain_labels, command=COMMAND)
        except UsageError as e:
            problems += [Problem(where, f"{p.where.lstrip('-')}: {p.message}") for p in e.problems]
            continue
        if len(problems) > before:
            continue
        # A scenario with no drain part plans no drain, not even of the hosts in maintenance: "if H
        # fails" is asked of the fleet as it runs now.
        drained = ds.hosts if sc.drain or sc.drain_labels else ()
        out.append(Prepared(sc, changed, sc.fail, drained, ds.labels))
    if problems:
        raise UsageError(COMMAND, problems)
    return out
