"""What libvirt cannot tell the collector: host names, reserved memory, switches, shared storage.

Two small files, YAML or JSON, both optional (docs/collect.md has examples):

`--hosts-file`::

    hosts:
      h01:                              # the host's name in the inventory
        uri: qemu+ssh://h01.example/system   # optional: matches by URI, else by libvirt's hostname
        reserved_memory_mib: 8192
        migration_address: 10.0.0.1
        nic_gbps: 25
        switch: tor-a
        labels: {rack: r1}
        state: up                       # up | maintenance | down
    model: lab-model.json               # optional: the duration model planning uses (evac calibrate -o),
                                        # relative to this file; `evac plan --site FILE` reads it
    shared_storage:
      nfs-1: {paths: [/mnt/nfs]}        # file/block disks under these paths are on shared storage nfs-1
      san-nbd: {servers: [10.0.9.2]}    # network disks served by these hosts (nbd, rbd monitors, iscsi...)
      # optional `hosts: [h01, h02]`: only these hosts reach it (default: every collected host)

`--topology`::

    {"hosts": {"h01": {"switch": "tor-a", "nic_gbps": 25}}, "links": [{"a": "tor-a", "b": "spine", "gbps": 100}]}

Explicit values here win over what the collector detects (the operator knows which NIC carries
migration traffic; libvirt only knows link speeds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.documents import read_document
from planner.errors import InputError, Problem, UsageError
from planner.inventory import control_character_problem
from planner.model import HostState, Link
from planner.uri_rules import check_migration_address, check_uri

_HOST_KEYS = frozenset({"uri", "reserved_memory_mib", "migration_address", "nic_gbps", "switch", "labels", "state"})
_STORAGE_KEYS = frozenset({"paths", "servers", "hosts"})


@dataclass(frozen=True, slots=True)
class HostOverride:
    name: str
    uri: str | None = None
    reserved_memory_mib: int | None = None
    migration_address: str | None = None
    nic_gbps: float | None = None
    switch: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    state: HostState | None = None


@dataclass(frozen=True, slots=True)
class DeclaredStorage:
    id: str
    paths: tuple[str, ...] = ()
    servers: tuple[str, ...] = ()
    hosts: tuple[str, ...] | None = None  # None: every collected host reaches it

    def holds_path(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.paths)


@dataclass(frozen=True, slots=True)
class SiteConfig:
    hosts: Mapping[str, HostOverride] = field(default_factory=dict)
    storage: tuple[DeclaredStorage, ...] = ()
    links: tuple[Link, ...] = ()
    model: Path | None = None  # the duration model file planning uses (`model:` in the hosts file)

    def override_for(self, uri: str, hostname: str | None) -> HostOverride | None:
        """The hosts-file entry for a collected host: by URI first, then by libvirt's hostname."""
        for o in self.hosts.values():
            if o.uri is not None and o.uri == uri:
                return o
        if hostname is not None and hostname in self.hosts and self.hosts[hostname].uri in (None, uri):
            return self.hosts[hostname]
        return None


def _read(path: Path, what: str) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(what, [Problem(str(path), f"cannot read: {exc.strerror or exc}")]) from exc
    # The one reader of every evac document; a key given twice in a hand-written site file is refused.
    doc, _ = read_document(raw, f"{what} {path}", yaml_syntax=path.suffix != ".json", error=UsageError,
                           duplicates="error")
    return doc


def _number(value: Any, where: str, problems: list[Problem], *, integer: bool = False) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or value < 0:
        problems.append(Problem(where, f"must be a non-negative {'integer' if integer else 'number'}, not {value!r}"))
        return None
    return value


def _host_entries(doc: Any, source: str, problems: list[Problem]) -> dict[str, dict[str, Any]]:
    hosts = doc.get("hosts", {}) if isinstance(doc, dict) else None
    if not isinstance(hosts, dict):
        problems.append(Problem(f"{source}: hosts", "must be a mapping of host name to settings"))
        return {}
    return {str(name): entry for name, entry, _ in
            _settings_entries(hosts, f"{source}: hosts", _HOST_KEYS, "must be a mapping", problems)}


def _settings_entries(raw: dict[Any, Any], prefix: str, known: frozenset[str], not_a_mapping: str,
                      problems: list[Problem]) -> list[tuple[Any, dict[str, Any], str]]:
    """(name, entry, where) of each entry that is a mapping; every other entry and every unknown
    setting becomes a problem naming its place."""
    out = []
    for name, entry in raw.items():
        bad_name = control_character_problem(str(name))
        where = f"{prefix}.{str(name)!r}" if bad_name else f"{prefix}.{name}"
        if bad_name:
            problems.append(Problem(where, f"name {bad_name}"))
        if not isinstance(entry, dict):
            problems.append(Problem(where, not_a_mapping))
            continue
        for key in sorted(set(entry) - known):
            problems.append(Problem(f"{where}.{key}", f"unknown setting (known: {', '.join(sorted(known))})"))
        out.append((name, entry, where))
    return out


def _printable(value: Any, where: str, problems: list[Problem]) -> None:
    """A name, switch or label bound for the inventory: the inventory's rule (no control characters)."""
    bad = control_character_problem(str(value))
    if bad:
        problems.append(Problem(where, bad))


def _connection_problems(entry: Mapping[str, Any], where: str) -> list[Problem]:
    """The URI and migration address rules of the inventory (planner.uri_rules). `qemu+tcp` passes here:
    the entry only matches a URI being collected, and `collect` judges those with its own flag."""
    problems: list[Problem] = []
    if entry.get("uri"):
        problems += check_uri(str(entry["uri"]), allow_insecure_transport=True, where=f"{where}.uri")
    if entry.get("migration_address"):
        problems += check_migration_address(str(entry["migration_address"]), f"{where}.migration_address")
    return problems


def _override(name: str, entry: Mapping[str, Any], where: str, problems: list[Problem]) -> HostOverride:
    problems += _connection_problems(entry, where)
    if entry.get("switch"):
        _printable(entry["switch"], f"{where}.switch", problems)
    state = None
    if "state" in entry:
        try:
            state = HostState(entry["state"])
        except ValueError:
            problems.append(Problem(f"{where}.state", f"must be up, maintenance or down, not {entry['state']!r}"))
    labels = entry.get("labels", {})
    if not isinstance(labels, dict):
        problems.append(Problem(f"{where}.labels", "must be a mapping"))
        labels = {}
    for key, value in labels.items():
        _printable(key, f"{where}.labels", problems)
        _printable(value, f"{where}.labels.{key}", problems)
    reserved = entry.get("reserved_memory_mib")
    nic = entry.get("nic_gbps")
    return HostOverride(
        name=name,
        uri=str(entry["uri"]) if entry.get("uri") else None,
        reserved_memory_mib=_number(reserved, f"{where}.reserved_memory_mib", problems, integer=True)
        if reserved is not None else None,
        migration_address=str(entry["migration_address"]) if entry.get("migration_address") else None,
        nic_gbps=_number(nic, f"{where}.nic_gbps", problems) if nic is not None else None,
        switch=str(entry["switch"]) if entry.get("switch") else None,
        labels={str(k): str(v) for k, v in labels.items()},
        state=state,
    )


def _storage(doc: Any, source: str, problems: list[Problem]) -> tuple[DeclaredStorage, ...]:
    raw = doc.get("shared_storage", {}) if isinstance(doc, dict) else {}
    if not isinstance(raw, dict):
        problems.append(Problem(f"{source}: shared_storage", "must be a mapping of storage id to settings"))
        return ()
    out = []
    for sid, entry, where in _settings_entries(raw, f"{source}: shared_storage", _STORAGE_KEYS,
                                               "must be a mapping with `paths` and/or `servers`", problems):
        lists: dict[str, tuple[str, ...]] = {}
        for key in ("paths", "servers", "hosts"):
            value = entry.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(Problem(f"{where}.{key}", "must be a list of strings"))
                value = []
            lists[key] = tuple(value)
        for p in lists["paths"]:
            if not p.startswith("/"):
                problems.append(Problem(f"{where}.paths", f"{p!r} must be an absolute path"))
        if not lists["paths"] and not lists["servers"]:
            problems.append(Problem(where, "needs `paths` or `servers`"))
        out.append(DeclaredStorage(str(sid), lists["paths"], lists["servers"],
                                   lists["hosts"] if "hosts" in entry else None))
    return tuple(out)


def _links(doc: Any, source: str, problems: list[Problem]) -> tuple[Link, ...]:
    raw = doc.get("links", []) if isinstance(doc, dict) else []
    if not isinstance(raw, list):
        problems.append(Problem(f"{source}: links", "must be a list of {a, b, gbps}"))
        return ()
    out = []
    for i, lk in enumerate(raw):
        where = f"{source}: links[{i}]"
        if not isinstance(lk, dict) or not {"a", "b", "gbps"} <= set(lk):
            problems.append(Problem(where, "must be {a, b, gbps}"))
            continue
        for side in ("a", "b"):
            _printable(lk[side], f"{where}.{side}", problems)
        gbps = _number(lk["gbps"], f"{where}.gbps", problems)
        if gbps is not None:
            out.append(Link(str(lk["a"]), str(lk["b"]), float(gbps)))
    return tuple(out)


def load_site_config(hosts_file: Path | None = None, topology: Path | None = None) -> SiteConfig:
    """Reads both files (either may be None); one `UsageError` names every problem in them."""
    problems: list[Problem] = []
    model: Path | None = None
    merged: dict[str, dict[str, Any]] = {}
    storage: tuple[DeclaredStorage, ...] = ()
    links: tuple[Link, ...] = ()
    for path, what in ((hosts_file, "hosts file"), (topology, "topology")):
        if path is None:
            continue
        doc = _read(path, what) or {}
        if not isinstance(doc, dict):
            problems.append(Problem(str(path), "must be a mapping at the top level"))
            continue
        for name, entry in _host_entries(doc, str(path), problems).items():
            merged.setdefault(name, {}).update(entry)
        if what == "hosts file":
            storage = _storage(doc, str(path), problems)
            model = _model(doc, path, problems)
            unknown = set(doc) - {"hosts", "shared_storage", "model"}
        else:
            links = _links(doc, str(path), problems)
            unknown = set(doc) - {"hosts", "links"}
        for key in sorted(unknown):
            problems.append(Problem(f"{path}: {key}", "unknown top-level key"))
    hosts = {name: _override(name, entry, f"hosts.{name!r}" if control_character_problem(name) else f"hosts.{name}",
                             problems) for name, entry in merged.items()}
    if problems:
        raise UsageError("site configuration", problems)
    return SiteConfig(hosts=hosts, storage=storage, links=links, model=model)


def _model(doc: Mapping[str, Any], path: Path, problems: list[Problem]) -> Path | None:
    """`model: FILE`: a duration model file (evac calibrate -o), relative to the hosts file; read now so a
    bad one is named with the rest of the site configuration."""
    if "model" not in doc:
        return None
    raw = doc["model"]
    if not isinstance(raw, str) or not raw or "\0" in raw:
        problems.append(Problem(f"{path}: model", "must be the path of a duration model file"))
        return None
    model = Path(raw) if Path(raw).is_absolute() else path.parent / raw
    from planner.duration import load_model

    try:
        load_model(model)
    except InputError as e:
        problems += [Problem(f"{path}: model ({model}){': ' + p.where if p.where else ''}", p.message)
                     for p in e.problems]
        return None
    return model
