"""Loading and validating inventory v1 (JSON, YAML, or a folder of CSV files) into `planner.model`.

`load_inventory(path)` and `parse_inventory(doc, source)` return a `LoadedInventory` (the frozen
`Inventory` plus warnings) or raise `InventoryError` naming EVERY problem and where it is
(`vms[12].memory_mib: must be a positive integer, got -4`). Warnings (unknown keys, a host already
over capacity) never fail a load.

The validator is plain loops over dicts, on purpose: a 30,000-VM inventory must load in well under
3 s, which per-field JSON Schema validation cannot do. The published schema
(`planner/inventory_schema.json`) describes the same format; a test keeps the two in agreement.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from planner.capacity import host_capacity
from planner.documents import read_document
from planner.errors import InventoryError, Problem
from planner.model import VM, Disk, Host, HostState, Inventory, Link, MissingHost, Policy, VMState
from planner.uri_rules import check_migration_address, check_uri, is_insecure_transport

# What "absurd" means: bigger than any machine or NIC that exists, so almost surely a unit mistake.
MAX_MEMORY_MIB = 64 * 1024 * 1024  # 64 TiB of RAM
MAX_CPUS = 4096  # host CPUs or guest vCPUs
MAX_NIC_GBPS = 1600.0  # the fastest Ethernet NIC
MAX_LINK_GBPS = 102_400.0  # a switch-to-switch link may be a bundle of 64 x 1600G
# And "too small": below the slowest Ethernet (10 Mbit/s) is a unit mistake, not a network; with the smallest
# migration_share these floors keep every migration's capped bandwidth >= the schedule's 0.001 MiB/s grain.
MIN_NIC_GBPS = 0.01
MIN_LINK_GBPS = 0.01
MIN_MIGRATION_SHARE = 0.01
_WHY_LO_GBPS = " (10 Mbit/s, the slowest Ethernet; the field is in Gbit/s)"
MAX_DISK_GIB = 1024.0 * 1024  # 1 PiB
MAX_DIRTY_RATE_MIBS = 1024.0 * 1024  # 1 TiB/s, beyond any memory bus
MAX_PRIORITY = 1_000_000_000

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
# Characters no name may hold: C0 and C1 controls, DEL, line/paragraph separators and the bidirectional
# overrides. A shell, a terminal or a log reader would take them for structure (a newline ends a command
# line, ESC starts a terminal sequence, U+202E reverses what is shown), so names stay printable text.
CONTROL_CHARACTER_RE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NUMBER_WITH_UNIT_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z/]+)\s*$")

TOP_KEYS = ("version", "hosts", "vms", "links", "policy", "missing_hosts")
HOST_KEYS = ("name", "uri", "migration_address", "cpus", "memory_mib", "reserved_memory_mib", "arch", "cpu_model",
             "cpu_features", "nic_gbps", "switch", "local_disk_free_gib", "storage", "networks", "labels", "state",
             "storage_free_gib")
VM_KEYS = ("name", "uuid", "host", "vcpus", "memory_mib", "state", "dirty_rate_mibs", "cpu_model", "cpu_features",
           "disks", "networks", "labels", "anti_affinity", "affinity", "pinned", "priority", "persistent",
           "requires_host_labels", "cpu_used", "memory_used_mib")
DISK_KEYS = ("target", "source", "format", "storage", "capacity_gib", "allocation_gib", "cache")
LINK_KEYS = ("a", "b", "gbps")
POLICY_KEYS = ("cpu_overcommit", "memory_overcommit", "migration_share", "max_outbound_per_host",
               "max_inbound_per_host", "max_concurrent", "max_downtime_ms", "auto_converge", "progress_timeout_s",
               "completion_timeout_per_gib_s")
MISSING_HOST_KEYS = ("name", "uri", "reason")
_KEY_SETS = {k: frozenset(v) for k, v in (("top", TOP_KEYS), ("host", HOST_KEYS), ("vm", VM_KEYS),
                                          ("disk", DISK_KEYS), ("link", LINK_KEYS), ("policy", POLICY_KEYS),
                                          ("missing", MISSING_HOST_KEYS))}

_MISSING = object()
_HOST_STATES = {s.value: s for s in HostState}
_VM_STATES = {s.value: s for s in VMState}
_ONLY_STR = {str}


@dataclass(frozen=True)
class LoadedInventory:
    inventory: Inventory
    warnings: list[Problem] = field(default_factory=list)


def load_inventory(path: str | Path) -> LoadedInventory:
    """Reads `path`: .json, .yaml/.yml, a .csv file or a folder of CSV files (see planner.csv_import)."""
    p = Path(path)
    source = str(path)
    if p.is_dir() or p.suffix.lower() == ".csv":
        from planner.csv_import import load_csv_inventory

        return load_csv_inventory(p)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise InventoryError(source, [Problem("", f"cannot read the file: {e.strerror or e}")]) from None
    doc, duplicates = decode_document(raw, source, yaml_syntax=p.suffix.lower() in (".yaml", ".yml"))
    return _Validator(source, duplicates).run(doc)


def inventory_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of inventory v1, shipped as planner/inventory_schema.json."""
    text = resources.files("planner").joinpath("inventory_schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def decode_document(raw: bytes, source: str, *, yaml_syntax: bool) -> tuple[object, list[Problem]]:
    """Bytes to plain data and warnings (duplicate keys, with their path or line), or InventoryError with the
    location of a syntax error: the one reader of planner.documents, shared with plans and journals."""
    return read_document(raw, source, yaml_syntax=yaml_syntax, error=InventoryError)


def parse_inventory(doc: object, source: str = "<inventory>") -> LoadedInventory:
    """Validates plain data (as from json.load) and builds the Inventory; raises InventoryError."""
    return _Validator(source).run(doc)


# ---------------------------------------------------------------------------------------------------------------
# Value checks. Each returns the value to use (a default after an error: the load fails anyway, but validation
# goes on so that every problem is reported at once).


def _unit_of(key: str) -> str:
    for suffix, unit in (("_mibs", "MiB/s"), ("_mib", "MiB"), ("_gib", "GiB"), ("_gbps", "Gbit/s"),
                         ("_ms", "milliseconds"), ("_s", "seconds")):
        if key.endswith(suffix):
            return unit
    return ""


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_SIZE_FACTORS_MIB = {"k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0 * 1024}


def _unit_hint(value: str, unit: str) -> str:
    """For '25G' in a Gbit/s field or '8GiB' in a MiB field: the number to write instead."""
    m = _NUMBER_WITH_UNIT_RE.match(value)
    if not m:
        return ""
    number, suffix = float(m.group(1)), m.group(2).lower()
    if unit in ("MiB", "GiB") and suffix[0] in _SIZE_FACTORS_MIB and suffix.rstrip("b").rstrip("i") in "kmgt":
        mib = number * _SIZE_FACTORS_MIB[suffix[0]]
        converted = mib if unit == "MiB" else mib / 1024
        return f" (units are in the field name: write {converted:g})"
    if unit == "Gbit/s" and suffix in ("g", "gb", "gbit", "gbps", "gbe", "gbit/s", "gb/s"):
        return f" (units are in the field name: write {number:g})"
    return " (units are in the field name: write the number alone)"


def control_character_problem(text: str) -> str | None:
    """Why `text` cannot be a name (its first control character, escaped), or None when it is printable."""
    found = CONTROL_CHARACTER_RE.search(text)
    if found is None:
        return None
    return (f"contains a control character (U+{ord(found.group()):04X} at position {found.start()}): names must be "
            f"printable text")


def _closest(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _listing(names: Iterable[str], limit: int = 8) -> str:
    items = sorted(names)
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


class _Validator:
    def __init__(self, source: str, warnings: list[Problem] | None = None) -> None:
        self.source = source
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = list(warnings or [])

    def error(self, where: str, message: str) -> None:
        self.errors.append(Problem(where, message))

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(Problem(where, message, "warning"))

    # -- generic fields ----------------------------------------------------------------------------------------

    def keys(self, d: Mapping[str, Any], allowed: str, where: str) -> None:
        known = _KEY_SETS[allowed]
        for key in d:
            if key not in known:
                prefix = f"{where}." if where else ""
                if not isinstance(key, str):
                    self.error(f"{prefix}{key!r}", "keys must be strings")
                    continue
                bad = control_character_problem(key)
                if bad:
                    self.error(f"{prefix}{key!r}", f"key {bad}")
                    continue
                self.warn(f"{prefix}{key}", f"unknown key, ignored{_closest(key, known)}")

    def number(self, d: Mapping[str, Any], key: str, where: str, *, default: float = 0.0, required: bool = False,
               lo: float = 0.0, lo_open: bool = False, hi: float = math.inf, why_hi: str = "",
               why_lo: str = "") -> float:
        value = d.get(key, _MISSING)
        kind = type(value)
        # Fast path first: this runs ~200,000 times for a 30,000-VM inventory.
        if (kind is float or kind is int) and (lo < value if lo_open else lo <= value) and value <= hi:
            return float(value)
        loc = f"{where}.{key}"
        unit = _unit_of(key)
        what = f"a number of {unit}" if unit else "a number"
        if value is _MISSING:
            if required:
                self.error(loc, f"required: {what}")
            return float(default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            hint = _unit_hint(value, unit) if isinstance(value, str) else ""
            self.error(loc, f"must be {what}, got {_show(value)}{hint}")
        elif not math.isfinite(value):
            self.error(loc, f"must be a finite number, got {_show(value)}")
        elif value > hi:
            self.error(loc, f"must be at most {hi:g}{why_hi}, got {value:g}")
        else:
            bound = "positive" if lo == 0 and lo_open else ("at least 0" if lo == 0 else f"at least {lo:g}")
            self.error(loc, f"must be {bound}{why_lo}, got {value:g}")
        return float(default)

    def integer(self, d: Mapping[str, Any], key: str, where: str, *, default: int = 0, required: bool = False,
                lo: int = 0, hi: int = 2**63 - 1, why_hi: str = "") -> int:
        value = d.get(key, _MISSING)
        if type(value) is int and lo <= value <= hi:
            return value
        loc = f"{where}.{key}"
        unit = _unit_of(key)
        kind = "a positive integer" if lo == 1 else ("an integer >= 0" if lo == 0 else "an integer")
        what = f"{kind} of {unit}" if unit else kind
        if value is _MISSING:
            if required:
                self.error(loc, f"required: {what}")
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            hint = _unit_hint(value, unit) if isinstance(value, str) else ""
            self.error(loc, f"must be {what}, got {_show(value)}{hint}")
            return default
        if value < lo:
            self.error(loc, f"must be {kind if lo in (0, 1) else f'at least {lo}'}, got {value}")
            return default
        if value > hi:
            self.error(loc, f"must be at most {hi}{why_hi}, got {value}")
            return default
        return value

    def string(self, d: Mapping[str, Any], key: str, where: str, *, required: bool = False,
               nullable: bool = True) -> str | None:
        value = d.get(key, _MISSING)
        if type(value) is str and value and not CONTROL_CHARACTER_RE.search(value):
            return value
        loc = f"{where}.{key}"
        if value is _MISSING or (value is None and nullable and not required):
            if required:
                self.error(loc, "required: a non-empty string")
            return None
        if not isinstance(value, str):
            self.error(loc, f"must be a string, got {_show(value)}")
            return None
        if required and not value.strip():
            self.error(loc, "must be a non-empty string")
            return None
        bad = control_character_problem(value)
        if bad:
            self.error(loc, bad)
        return value

    def boolean(self, d: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        value = d.get(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.error(f"{where}.{key}", f"must be true or false, got {_show(value)}")
            return default
        return value

    def strings(self, d: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
        value = d.get(key)
        # Fast path (~135,000 lists for 30,000 VMs, most empty or one item): C-level checks only.
        if type(value) is list and (not value or ({*map(type, value)} == _ONLY_STR and "" not in value
                                                  and not CONTROL_CHARACTER_RE.search("".join(value)))):
            return frozenset(value)
        return frozenset(self.string_list(d, key, where))

    def string_list(self, d: Mapping[str, Any], key: str, where: str) -> list[str]:
        value = d.get(key, _MISSING)
        if value is _MISSING:
            return []
        loc = f"{where}.{key}"
        if not isinstance(value, list):
            self.error(loc, f"must be a list of strings, got {_show(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str) and item:
                bad = control_character_problem(item)
                if bad:
                    self.error(f"{loc}[{i}]", bad)
                out.append(item)
            else:
                self.error(f"{loc}[{i}]", f"must be a non-empty string, got {_show(item)}")
        return out

    def labels(self, d: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
        value = d.get(key, _MISSING)
        if value is _MISSING:
            return {}
        loc = f"{where}.{key}"
        if not isinstance(value, dict):
            self.error(loc, f"must be an object of string values, got {_show(value)}")
            return {}
        out = {}
        for k, v in value.items():
            bad_key = control_character_problem(str(k))
            if bad_key:
                self.error(f"{loc}.{str(k)!r}", f"key {bad_key}")
            elif isinstance(v, str):
                bad = control_character_problem(v)
                if bad:
                    self.error(f"{loc}.{k}", bad)
                out[str(k)] = v
            else:
                self.error(f"{loc}.{k}", f"must be a string, got {_show(v)}")
        return out

    def enum(self, d: Mapping[str, Any], key: str, where: str, members: Mapping[str, Any], default: Any) -> Any:
        value = d.get(key, _MISSING)
        if value is _MISSING:
            return default
        member = members.get(value) if isinstance(value, str) else None
        if member is None:
            hint = _closest(value, members) if isinstance(value, str) else ""
            self.error(f"{where}.{key}", f"must be one of {', '.join(members)}; got {_show(value)}{hint}")
            return default
        return member

    def objects(self, doc: Mapping[str, Any], key: str, required: bool) -> list[tuple[int, dict[str, Any]]]:
        """The list `doc[key]` as (index, object) pairs, reporting non-objects."""
        value = doc.get(key, _MISSING)
        if value is _MISSING:
            if required:
                self.error(key, "required: a list")
            return []
        if not isinstance(value, list):
            self.error(key, f"must be a list, got {_show(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                out.append((i, item))
            else:
                self.error(f"{key}[{i}]", f"must be an object, got {_show(item)}")
        return out

    # -- the document ------------------------------------------------------------------------------------------

    def run(self, doc: object) -> LoadedInventory:
        if not isinstance(doc, dict):
            raise InventoryError(self.source, [Problem("", f"must be a JSON/YAML object with version, hosts and "
                                                           f"vms; got {_show(doc)}")])
        self.keys(doc, "top", "")
        version = doc.get("version", _MISSING)
        if version is _MISSING:
            self.error("version", "required: 1")
        elif isinstance(version, bool) or version != 1:
            self.error("version", f"must be 1 (this is inventory v1), got {_show(version)}")
        policy = self.policy(doc)
        hosts = [self.host(i, h) for i, h in self.objects(doc, "hosts", required=True)]
        if "hosts" in doc and isinstance(doc["hosts"], list) and not doc["hosts"]:
            self.error("hosts", "must list at least one host")
        vms = [self.vm(i, v) for i, v in self.objects(doc, "vms", required=True)]
        links = [self.link(i, lk) for i, lk in self.objects(doc, "links", required=False)]
        missing = [self.missing_host(i, m) for i, m in self.objects(doc, "missing_hosts", required=False)]
        self.cross_check(hosts, vms, links, policy, missing)
        if self.errors:
            raise InventoryError(self.source, self.errors + self.warnings)
        inventory = Inventory(hosts=tuple(h for _, h in hosts), vms=tuple(v for _, v in vms),
                              links=tuple(lk for _, lk in links), policy=policy,
                              missing_hosts=tuple(m for _, m in missing))
        return LoadedInventory(inventory, self.warnings)

    def policy(self, doc: Mapping[str, Any]) -> Policy:
        p = doc.get("policy", _MISSING)
        if p is _MISSING:
            p = {}  # defaults, built below as floats like explicit values so the digest does not depend on it
        if not isinstance(p, dict):
            self.error("policy", f"must be an object, got {_show(p)}")
            return Policy()
        self.keys(p, "policy", "policy")
        d = Policy()
        w = "policy"
        return Policy(
            cpu_overcommit=self.number(p, "cpu_overcommit", w, default=d.cpu_overcommit, lo_open=True, hi=1000),
            memory_overcommit=self.number(p, "memory_overcommit", w, default=d.memory_overcommit, lo_open=True,
                                          hi=1000),
            migration_share=self.number(p, "migration_share", w, default=d.migration_share, lo=MIN_MIGRATION_SHARE,
                                        hi=1.0, why_hi=" (a fraction of each NIC and link, in [0.01, 1])",
                                        why_lo=" (a fraction of each NIC and link, in [0.01, 1])"),
            max_outbound_per_host=self.integer(p, "max_outbound_per_host", w, default=d.max_outbound_per_host),
            max_inbound_per_host=self.integer(p, "max_inbound_per_host", w, default=d.max_inbound_per_host),
            max_concurrent=self.integer(p, "max_concurrent", w, default=d.max_concurrent),
            max_downtime_ms=self.number(p, "max_downtime_ms", w, default=d.max_downtime_ms, lo_open=True),
            auto_converge=self.boolean(p, "auto_converge", w, d.auto_converge),
            progress_timeout_s=self.number(p, "progress_timeout_s", w, default=d.progress_timeout_s, lo_open=True),
            completion_timeout_per_gib_s=self.number(p, "completion_timeout_per_gib_s", w,
                                                     default=d.completion_timeout_per_gib_s, lo_open=True),
        )

    def host(self, i: int, h: dict[str, Any]) -> tuple[int, Host]:
        w = f"hosts[{i}]"
        self.keys(h, "host", w)
        memory_mib = self.integer(h, "memory_mib", w, required=True, lo=1, hi=MAX_MEMORY_MIB, default=1,
                                  why_hi=" (64 TiB; is this in bytes or KiB?)")
        reserved = self.integer(h, "reserved_memory_mib", w, hi=MAX_MEMORY_MIB)
        if reserved >= memory_mib > 1:
            self.error(f"{w}.reserved_memory_mib", f"must be less than memory_mib ({memory_mib}), got {reserved}")
            reserved = 0
        storage_free: dict[str, float] = {}
        sf = h.get("storage_free_gib", _MISSING)
        if sf is not _MISSING:
            if isinstance(sf, dict):
                storage_free = {str(k): self.number(sf, k, f"{w}.storage_free_gib") for k in sf}
            else:
                self.error(f"{w}.storage_free_gib", f"must be an object of GiB per storage id, got {_show(sf)}")
        host = Host(
            name=self.string(h, "name", w, required=True) or f"<hosts[{i}]>",
            cpus=self.integer(h, "cpus", w, required=True, lo=1, hi=MAX_CPUS, default=1, why_hi=" CPUs"),
            memory_mib=memory_mib,
            nic_gbps=self.number(h, "nic_gbps", w, required=True, lo=MIN_NIC_GBPS, why_lo=_WHY_LO_GBPS, hi=MAX_NIC_GBPS,
                                 default=1.0,
                                 why_hi=" (the fastest NIC made; is this in Mbit/s?)"),
            uri=self.string(h, "uri", w),
            migration_address=self.string(h, "migration_address", w),
            reserved_memory_mib=reserved,
            arch=self.string(h, "arch", w),
            cpu_model=self.string(h, "cpu_model", w),
            cpu_features=self.strings(h, "cpu_features", w),
            switch=self.string(h, "switch", w),
            local_disk_free_gib=self.number(h, "local_disk_free_gib", w, hi=MAX_DISK_GIB, why_hi=" (1 PiB)"),
            storage=self.strings(h, "storage", w),
            networks=self.strings(h, "networks", w),
            labels=self.labels(h, "labels", w),
            state=self.enum(h, "state", w, _HOST_STATES, HostState.UP),
            storage_free_gib=storage_free,
        )
        self.connection_fields(w, host.uri, host.migration_address)
        return i, host

    def connection_fields(self, w: str, uri: str | None, migration_address: str | None) -> None:
        """The URI rules of `evac collect` (planner.uri_rules), so that no command takes a URI collect would
        refuse. `qemu+tcp` is only a warning here: connecting refuses it unless --allow-insecure-transport."""
        if uri is not None and not CONTROL_CHARACTER_RE.search(uri):  # else already reported
            self.errors += check_uri(uri, allow_insecure_transport=True, where=f"{w}.uri")
            if is_insecure_transport(uri):
                self.warn(f"{w}.uri", "qemu+tcp is unencrypted and unauthenticated: `evac run` refuses it unless "
                                      "--allow-insecure-transport is given")
        if migration_address is not None and not CONTROL_CHARACTER_RE.search(migration_address):
            self.errors += check_migration_address(migration_address, f"{w}.migration_address")

    def disk(self, w: str, d: dict[str, Any]) -> Disk:
        self.keys(d, "disk", w)
        capacity = self.number(d, "capacity_gib", w, hi=MAX_DISK_GIB, why_hi=" (1 PiB)")
        return Disk(
            target=self.string(d, "target", w, required=True) or "?",
            source=self.string(d, "source", w),
            format=self.string(d, "format", w) or "raw",
            storage=self.string(d, "storage", w),
            capacity_gib=capacity,
            allocation_gib=self.number(d, "allocation_gib", w, hi=MAX_DISK_GIB, why_hi=" (1 PiB)"),
            cache=self.string(d, "cache", w),
        )

    def vm(self, i: int, v: dict[str, Any]) -> tuple[int, VM]:
        w = f"vms[{i}]"
        self.keys(v, "vm", w)
        disks: list[Disk] = []
        raw_disks = v.get("disks", _MISSING)
        if raw_disks is not _MISSING:
            if not isinstance(raw_disks, list):
                self.error(f"{w}.disks", f"must be a list of disks, got {_show(raw_disks)}")
            else:
                targets: set[str] = set()
                for j, d in enumerate(raw_disks):
                    if not isinstance(d, dict):
                        self.error(f"{w}.disks[{j}]", f"must be an object, got {_show(d)}")
                        continue
                    disk = self.disk(f"{w}.disks[{j}]", d)
                    if disk.target in targets:
                        self.error(f"{w}.disks[{j}].target", f"duplicate disk target {disk.target!r}")
                    targets.add(disk.target)
                    disks.append(disk)
        vm = VM(
            name=self.string(v, "name", w, required=True) or f"<vms[{i}]>",
            host=self.string(v, "host", w, required=True) or "",
            vcpus=self.integer(v, "vcpus", w, required=True, lo=1, hi=MAX_CPUS, default=1, why_hi=" vCPUs"),
            memory_mib=self.integer(v, "memory_mib", w, required=True, lo=1, hi=MAX_MEMORY_MIB, default=1,
                                    why_hi=" (64 TiB; is this in bytes or KiB?)"),
            uuid=self.uuid(v, w),
            state=self.enum(v, "state", w, _VM_STATES, VMState.RUNNING),
            dirty_rate_mibs=self.number(v, "dirty_rate_mibs", w, hi=MAX_DIRTY_RATE_MIBS,
                                        why_hi=" (1 TiB/s, beyond any memory bus)"),
            cpu_model=self.string(v, "cpu_model", w),
            cpu_features=self.strings(v, "cpu_features", w),
            disks=tuple(disks),
            networks=self.strings(v, "networks", w),
            labels=self.labels(v, "labels", w),
            anti_affinity=self.strings(v, "anti_affinity", w),
            affinity=self.strings(v, "affinity", w),
            pinned=self.boolean(v, "pinned", w, False),
            priority=self.integer(v, "priority", w, lo=-MAX_PRIORITY, hi=MAX_PRIORITY),
            persistent=self.boolean(v, "persistent", w, True),
            requires_host_labels=self.labels(v, "requires_host_labels", w),
            cpu_used=self.number(v, "cpu_used", w, hi=MAX_CPUS, why_hi=" cores")
            if "cpu_used" in v else None,
            memory_used_mib=self.integer(v, "memory_used_mib", w, hi=MAX_MEMORY_MIB, why_hi=" (64 TiB)")
            if "memory_used_mib" in v else None,
        )
        return i, vm

    def uuid(self, v: Mapping[str, Any], w: str) -> str | None:
        value = self.string(v, "uuid", w)
        if value is not None and not _UUID_RE.match(value):
            self.error(f"{w}.uuid", f"malformed uuid {value!r} (want 8-4-4-4-12 hexadecimal digits)")
            return None
        return value

    def link(self, i: int, lk: dict[str, Any]) -> tuple[int, Link]:
        w = f"links[{i}]"
        self.keys(lk, "link", w)
        return i, Link(a=self.string(lk, "a", w, required=True) or "", b=self.string(lk, "b", w, required=True) or "",
                       gbps=self.number(lk, "gbps", w, required=True, lo=MIN_LINK_GBPS, why_lo=_WHY_LO_GBPS,
                                        hi=MAX_LINK_GBPS, default=1.0))

    def missing_host(self, i: int, m: dict[str, Any]) -> tuple[int, MissingHost]:
        w = f"missing_hosts[{i}]"
        self.keys(m, "missing", w)
        missing = MissingHost(name=self.string(m, "name", w, required=True) or "", uri=self.string(m, "uri", w),
                              reason=self.string(m, "reason", w) or "")
        self.connection_fields(w, missing.uri, None)
        return i, missing

    # -- references between objects ----------------------------------------------------------------------------

    def cross_check(self, hosts: list[tuple[int, Host]], vms: list[tuple[int, VM]], links: list[tuple[int, Link]],
                    policy: Policy, missing: list[tuple[int, MissingHost]]) -> None:
        host_by_name: dict[str, Host] = {}
        by_uri: dict[str, str] = {}
        by_address: dict[str, str] = {}
        for i, h in hosts:
            if h.name in host_by_name:
                self.error(f"hosts[{i}].name", f"duplicate host name {h.name!r}")
            host_by_name[h.name] = h
            # Two names for one libvirt host would let a plan "migrate" a VM onto the host it is on.
            if h.uri and by_uri.setdefault(h.uri, h.name) != h.name:
                self.error(f"hosts[{i}].uri", f"same uri as host {by_uri[h.uri]!r}: {h.uri}")
            if h.migration_address and by_address.setdefault(h.migration_address, h.name) != h.name:
                self.warn(f"hosts[{i}].migration_address", f"same address as host "
                                                           f"{by_address[h.migration_address]!r}: "
                                                           f"{h.migration_address}")
        self.check_network(hosts, links, host_by_name)
        for i, m in missing:
            if m.name in host_by_name:
                self.warn(f"missing_hosts[{i}].name", f"{m.name!r} is also listed in hosts")

        mounted = {s for _, h in hosts for s in h.storage}
        offered = {n for _, h in hosts for n in h.networks}
        # A host whose size fields were wrong got a placeholder size: judging VMs against it would only
        # add errors that are consequences of the one already reported.
        host_sizes_known = not any(e.where.startswith("hosts[") and
                                   e.where.rsplit(".", 1)[-1] in ("cpus", "memory_mib", "reserved_memory_mib")
                                   for e in self.errors)
        caps = [host_capacity(h, policy) for _, h in hosts]
        max_vcpus = max((c.vcpus for c in caps), default=0.0)
        max_memory = max((c.memory_mib for c in caps), default=0.0)
        names: set[str] = set()
        uuids: dict[str, str] = {}
        used_vcpus = dict.fromkeys(host_by_name, 0)
        used_memory = dict.fromkeys(host_by_name, 0)
        group_seen: dict[tuple[str, str], str] = {}
        for i, v in vms:
            w = f"vms[{i}]"
            if v.name in names:
                self.error(f"{w}.name", f"duplicate VM name {v.name!r}")
            names.add(v.name)
            if v.uuid is not None:
                key = v.uuid.replace("-", "").lower()
                if key in uuids:
                    self.error(f"{w}.uuid", f"duplicate uuid {v.uuid} (also VM {uuids[key]!r})")
                uuids[key] = v.name
            if v.host and v.host not in host_by_name:
                self.error(f"{w}.host", f"unknown host {v.host!r}{_closest(v.host, host_by_name)}")
            elif v.host:
                used_vcpus[v.host] += v.vcpus
                used_memory[v.host] += v.memory_mib
                for g in v.anti_affinity:
                    other = group_seen.setdefault((v.host, g), v.name)
                    if other != v.name:
                        self.warn(f"{w}.anti_affinity", f"shares group {g!r} with {other!r} on host {v.host} now "
                                                        f"(the plan will separate them)")
            for j, d in enumerate(v.disks):
                if d.storage is not None and d.storage not in mounted:
                    self.error(f"{w}.disks[{j}].storage", f"no host mounts storage {d.storage!r} (hosts mount: "
                                                          f"{_listing(mounted)})")
            for n in sorted(v.networks - offered):
                self.error(f"{w}.networks", f"no host offers network {n!r} (hosts offer: {_listing(offered)})")
            if hosts and host_sizes_known and v.vcpus > max_vcpus:
                self.error(f"{w}.vcpus", f"{v.vcpus} vCPUs fit on no host: the largest takes {max_vcpus:g} "
                                         f"(cpus x cpu_overcommit {policy.cpu_overcommit:g})")
            if hosts and host_sizes_known and v.memory_mib > max_memory:
                self.error(f"{w}.memory_mib", f"{v.memory_mib} MiB fits on no host: the largest takes "
                                              f"{max_memory:g} MiB ((memory_mib - reserved_memory_mib) x "
                                              f"memory_overcommit {policy.memory_overcommit:g})")
        for (i, h), cap in zip(hosts, caps, strict=True):
            if used_vcpus.get(h.name, 0) > cap.vcpus:
                self.warn(f"hosts[{i}]", f"its VMs have {used_vcpus[h.name]} vCPUs, more than cpus x cpu_overcommit "
                                         f"= {cap.vcpus:g} now")
            if used_memory.get(h.name, 0) > cap.memory_mib:
                self.warn(f"hosts[{i}]", f"its VMs have {used_memory[h.name]} MiB, more than usable memory x "
                                         f"memory_overcommit = {cap.memory_mib:g} MiB now")

    def check_network(self, hosts: list[tuple[int, Host]], links: list[tuple[int, Link]],
                      host_by_name: Mapping[str, Host]) -> None:
        with_switch = [(i, h) for i, h in hosts if h.switch is not None]
        if with_switch and len(with_switch) < len(hosts):
            for i, h in hosts:
                if h.switch is None:
                    self.error(f"hosts[{i}].switch", f"missing, but {len(with_switch)} other hosts name their switch "
                                                     f"(name it on every host, or on none for one flat switch)")
        if not with_switch:
            if links:
                self.error("links", "no host names its switch, so these links connect nothing (set hosts[].switch)")
            return
        host_switches = {h.switch for _, h in with_switch if h.switch is not None}
        for i, h in with_switch:
            if h.switch in host_by_name:
                self.error(f"hosts[{i}].switch", f"{h.switch!r} is a host's name; hosts and switches need distinct "
                                                 f"names")
        # Union-find over switches: fast enough for thousands of switches, no graph library needed.
        parent: dict[str, str] = {s: s for s in host_switches}

        def root(s: str) -> str:
            while parent[s] != s:
                parent[s] = parent[parent[s]]
                s = parent[s]
            return s

        link_count: dict[str, int] = {}
        for _, lk in links:
            for end in (lk.a, lk.b):
                link_count[end] = link_count.get(end, 0) + 1
        seen_pairs: set[frozenset[str]] = set()
        for i, lk in links:
            ok = True
            for side, end in (("a", lk.a), ("b", lk.b)):
                if not end:
                    ok = False
                elif end in host_by_name:
                    self.error(f"links[{i}].{side}", f"{end!r} is a host: a host's link to its switch is implied by "
                                                     f"its switch and nic_gbps; links join switches")
                    ok = False
                elif end not in host_switches and link_count[end] < 2:
                    # Harmless (the contract's own example has such a spare ToR), but often a typo: a typo
                    # also cuts the real switch off, which the connectivity check below reports as an error.
                    self.warn(f"links[{i}].{side}", f"no host is plugged into switch {end!r} and no other link "
                                                    f"reaches it, so this link carries nothing"
                                                    f"{_closest(end, host_switches)}")
            if lk.a and lk.a == lk.b:
                self.error(f"links[{i}]", f"links {lk.a!r} to itself")
                ok = False
            pair = frozenset((lk.a, lk.b))
            if ok and pair in seen_pairs:
                self.error(f"links[{i}]", f"duplicate link between {lk.a!r} and {lk.b!r}")
            seen_pairs.add(pair)
            if ok:
                for end in (lk.a, lk.b):
                    parent.setdefault(end, end)
                parent[root(lk.a)] = root(lk.b)
        components: dict[str, list[str]] = {}
        for s in sorted(host_switches):
            components.setdefault(root(s), []).append(s)
        if len(components) > 1:
            # The biggest group of connected switches is "the rest"; every other group is cut off from it.
            groups = sorted(components.values(), key=lambda g: (-len(g), g))
            main = groups[0]
            for g in groups[1:]:
                first = next(i for i, h in with_switch if h.switch in g)
                self.error(f"hosts[{first}].switch", f"switch{'es' if len(g) > 1 else ''} {_listing(g)} "
                                                     f"{'have' if len(g) > 1 else 'has'} no link path to switch "
                                                     f"{main[0]!r}: their hosts cannot reach the others (add a link)")
