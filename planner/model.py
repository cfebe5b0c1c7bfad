"""The domain model of inventory v1 as frozen values: hosts, VMs, disks, links, policy.

Field names and units are exactly those of `shared/contracts/inventory-v1.md`; the loader in
`planner.inventory` builds these from JSON/YAML/CSV and reports every problem at once, so code
that receives an `Inventory` may assume it is valid.

Optional fields evac adds to inventory v1 (documented in docs/inventory.md):
* `vms[].persistent` (bool, default true): the domain is defined on its host (not transient).
* `vms[].disks[].cache` (str, optional): the disk's cache mode, as the collector saw it.
* `hosts[].storage_free_gib` (object, optional): free GiB per shared storage id, informative.
* `missing_hosts` (list, optional): hosts the collector could not reach, with the reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from planner.units import gib_to_mib


class HostState(StrEnum):
    UP = "up"
    MAINTENANCE = "maintenance"  # must be emptied, receives nothing
    DOWN = "down"  # receives nothing; its VMs cannot be live-migrated


class VMState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shutoff"

    @property
    def live(self) -> bool:
        return self is not VMState.SHUTOFF


@dataclass(frozen=True, slots=True)
class Disk:
    target: str
    source: str | None = None
    format: str = "raw"
    storage: str | None = None  # id of the shared storage holding it; None = host-local
    capacity_gib: float = 0.0
    allocation_gib: float = 0.0
    cache: str | None = None

    @property
    def shared(self) -> bool:
        return self.storage is not None


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    cpus: int
    memory_mib: int
    nic_gbps: float
    uri: str | None = None
    migration_address: str | None = None
    reserved_memory_mib: int = 0
    arch: str | None = None
    cpu_model: str | None = None
    cpu_features: frozenset[str] = frozenset()
    switch: str | None = None
    local_disk_free_gib: float = 0.0
    storage: frozenset[str] = frozenset()
    networks: frozenset[str] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    state: HostState = HostState.UP
    storage_free_gib: Mapping[str, float] = field(default_factory=dict, hash=False)

    @property
    def usable_memory_mib(self) -> int:
        return self.memory_mib - self.reserved_memory_mib

    @property
    def receives(self) -> bool:
        """Only hosts that are up may be destinations."""
        return self.state is HostState.UP


@dataclass(frozen=True, slots=True)
class VM:
    name: str
    host: str
    vcpus: int
    memory_mib: int
    uuid: str | None = None
    state: VMState = VMState.RUNNING
    dirty_rate_mibs: float = 0.0
    cpu_model: str | None = None
    cpu_features: frozenset[str] = frozenset()
    disks: tuple[Disk, ...] = ()
    networks: frozenset[str] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    anti_affinity: frozenset[str] = frozenset()
    affinity: frozenset[str] = frozenset()
    pinned: bool = False
    priority: int = 0
    persistent: bool = True
    requires_host_labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    cpu_used: float | None = None  # measured cores in use (None: not measured)
    memory_used_mib: int | None = None  # measured guest memory in use (None: not measured)

    @property
    def live(self) -> bool:
        return self.state.live

    @property
    def local_disks(self) -> tuple[Disk, ...]:
        return tuple(d for d in self.disks if not d.shared)

    @property
    def local_disk_alloc_gib(self) -> float:
        return sum(d.allocation_gib for d in self.local_disks)

    @property
    def local_disk_alloc_mib(self) -> float:
        return gib_to_mib(self.local_disk_alloc_gib)

    @property
    def shared_storage(self) -> frozenset[str]:
        return frozenset(d.storage for d in self.disks if d.storage is not None)


@dataclass(frozen=True, slots=True)
class Link:
    """An undirected, full-duplex link between two switches (or a switch and a host)."""

    a: str
    b: str
    gbps: float


@dataclass(frozen=True, slots=True)
class Policy:
    cpu_overcommit: float = 4.0
    memory_overcommit: float = 1.0
    migration_share: float = 0.5
    max_outbound_per_host: int = 2
    max_inbound_per_host: int = 2
    max_concurrent: int = 0  # 0 = no limit
    max_downtime_ms: float = 500
    auto_converge: bool = True
    progress_timeout_s: float = 150
    completion_timeout_per_gib_s: float = 150


@dataclass(frozen=True, slots=True)
class MissingHost:
    """A host the collector could not read; planning must not pretend it is empty."""

    name: str
    uri: str | None
    reason: str


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[Host, ...]
    vms: tuple[VM, ...]
    links: tuple[Link, ...] = ()
    policy: Policy = field(default_factory=Policy)
    missing_hosts: tuple[MissingHost, ...] = ()
    version: int = 1

    @cached_property
    def host(self) -> Mapping[str, Host]:
        """Hosts by name."""
        return {h.name: h for h in self.hosts}

    @cached_property
    def vm(self) -> Mapping[str, VM]:
        """VMs by name."""
        return {v.name: v for v in self.vms}

    @cached_property
    def vms_on(self) -> Mapping[str, tuple[VM, ...]]:
        """VMs by the host they are on now (every host has an entry)."""
        out: dict[str, list[VM]] = {h.name: [] for h in self.hosts}
        for v in self.vms:
            out.setdefault(v.host, []).append(v)
        return {k: tuple(v) for k, v in out.items()}

    def to_dict(self) -> dict[str, Any]:
        """Inventory v1 as plain JSON-able data (defaults written out, optional extras only if set)."""
        return inventory_to_dict(self)

    @cached_property
    def sha256(self) -> str:
        """Digest of the canonical JSON form; a plan records it to refuse a mismatched inventory."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()


def _host_to_dict(h: Host) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": h.name,
        "uri": h.uri,
        "migration_address": h.migration_address,
        "cpus": h.cpus,
        "memory_mib": h.memory_mib,
        "reserved_memory_mib": h.reserved_memory_mib,
        "arch": h.arch,
        "cpu_model": h.cpu_model,
        "cpu_features": sorted(h.cpu_features),
        "nic_gbps": float(h.nic_gbps),
        "switch": h.switch,
        "local_disk_free_gib": float(h.local_disk_free_gib),
        "storage": sorted(h.storage),
        "networks": sorted(h.networks),
        "labels": dict(h.labels),
        "state": h.state.value,
    }
    if h.storage_free_gib:
        d["storage_free_gib"] = {k: float(x) for k, x in h.storage_free_gib.items()}
    return {k: v for k, v in d.items() if v is not None}


def _disk_to_dict(d: Disk) -> dict[str, Any]:
    out: dict[str, Any] = {
        "target": d.target,
        "source": d.source,
        "format": d.format,
        "storage": d.storage,
        "capacity_gib": float(d.capacity_gib),
        "allocation_gib": float(d.allocation_gib),
    }
    if d.cache is not None:
        out["cache"] = d.cache
    return out


def _vm_to_dict(v: VM) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": v.name,
        "uuid": v.uuid,
        "host": v.host,
        "vcpus": v.vcpus,
        "memory_mib": v.memory_mib,
        "state": v.state.value,
        "dirty_rate_mibs": float(v.dirty_rate_mibs),
        "cpu_model": v.cpu_model,
        "cpu_features": sorted(v.cpu_features),
        "disks": [_disk_to_dict(x) for x in v.disks],
        "networks": sorted(v.networks),
        "labels": dict(v.labels),
        "anti_affinity": sorted(v.anti_affinity),
        "affinity": sorted(v.affinity),
        "pinned": v.pinned,
        "priority": v.priority,
    }
    if not v.persistent:
        d["persistent"] = False
    # Optional reconfiguration fields (plan v1): written only when set, so the digest of an inventory
    # that does not use them is what it always was.
    if v.requires_host_labels:
        d["requires_host_labels"] = dict(v.requires_host_labels)
    if v.cpu_used is not None:
        d["cpu_used"] = float(v.cpu_used)
    if v.memory_used_mib is not None:
        d["memory_used_mib"] = v.memory_used_mib
    return {k: val for k, val in d.items() if val is not None}


def inventory_to_dict(inv: Inventory) -> dict[str, Any]:
    """Numbers are written in their field's type (float fields as floats), so an inventory built in
    code and the same inventory loaded from a file have the same canonical form and digest."""
    p = inv.policy
    out: dict[str, Any] = {
        "version": inv.version,
        "hosts": [_host_to_dict(h) for h in inv.hosts],
        "vms": [_vm_to_dict(v) for v in inv.vms],
        "links": [{"a": lk.a, "b": lk.b, "gbps": float(lk.gbps)} for lk in inv.links],
        "policy": {
            "cpu_overcommit": float(p.cpu_overcommit),
            "memory_overcommit": float(p.memory_overcommit),
            "migration_share": float(p.migration_share),
            "max_outbound_per_host": p.max_outbound_per_host,
            "max_inbound_per_host": p.max_inbound_per_host,
            "max_concurrent": p.max_concurrent,
            "max_downtime_ms": float(p.max_downtime_ms),
            "auto_converge": p.auto_converge,
            "progress_timeout_s": float(p.progress_timeout_s),
            "completion_timeout_per_gib_s": float(p.completion_timeout_per_gib_s),
        },
    }
    if inv.missing_hosts:
        out["missing_hosts"] = [{"name": m.name, "uri": m.uri, "reason": m.reason} for m in inv.missing_hosts]
    return out
