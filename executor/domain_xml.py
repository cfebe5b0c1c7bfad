"""Pure parsing of the XML libvirt hands out: capabilities, domain capabilities, domains, pools, node devices.

No libvirt import here: every function takes the XML text and returns a frozen value, so the
collector's logic is testable against captured XML (tests/data/xml/) without a daemon. Shapes
follow libvirt 9.0 (https://libvirt.org/formatcaps.html, formatdomaincaps.html, formatdomain.html,
formatstorage.html, formatnode.html); unknown elements are ignored, missing ones give None.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

_UNIT_BYTES = {
    "b": 1, "bytes": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3, "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
}
# Feature policies that mean "the guest needs this from the host CPU" (formatdomain.html#cpu-model-and-topology).
_REQUIRED_POLICIES = frozenset({"require", "force"})


class XMLParseError(ValueError):
    """XML libvirt gave us that evac cannot read (a libvirt bug or an unexpected version)."""


def _root(xml: str, expected: str) -> ET.Element:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise XMLParseError(f"not well-formed XML ({exc})") from exc
    if root.tag != expected:
        raise XMLParseError(f"expected <{expected}>, got <{root.tag}>")
    return root


def _text(el: ET.Element | None, path: str) -> str | None:
    if el is None:
        return None
    found = el.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _attr(el: ET.Element | None, path: str, name: str) -> str | None:
    found = el.find(path) if el is not None else None
    return found.get(name) if found is not None else None


def _bytes(el: ET.Element | None, default_unit: str = "bytes") -> int | None:
    """A sized element such as `<memory unit='KiB'>1024</memory>`, in bytes."""
    if el is None or el.text is None:
        return None
    number = _int(el.text.strip())
    if number is None:
        return None
    return number * _UNIT_BYTES.get(el.get("unit", default_unit).lower(), 1)


# ------------------------------------------------------------------------------------- host capabilities


@dataclass(frozen=True, slots=True)
class HostCapabilities:
    """`virConnectGetCapabilities`: the host CPU as the kernel sees it, and the NUMA topology."""

    arch: str | None
    cpu_model: str | None
    cpu_vendor: str | None
    cpu_features: frozenset[str]
    sockets: int | None
    cores: int | None
    threads: int | None
    cells_cpus: int | None  # logical CPUs counted over NUMA cells
    cells_memory_kib: int | None
    host_uuid: str | None
    domain_types: frozenset[str] = frozenset()  # guest domain types this host runs: kvm, qemu (TCG)


def parse_capabilities(xml: str) -> HostCapabilities:
    root = _root(xml, "capabilities")
    host = root.find("host")
    cpu = host.find("cpu") if host is not None else None
    topo = cpu.find("topology") if cpu is not None else None
    features = frozenset(f.get("name", "") for f in (cpu.findall("feature") if cpu is not None else [])) - {""}
    cells = host.findall("topology/cells/cell") if host is not None else []
    cpus_els = [e for e in (c.find("cpus") for c in cells) if e is not None]
    cpus = sum(_int(e.get("num")) or 0 for e in cpus_els) if cpus_els else None
    mems = [_bytes(c.find("memory"), "KiB") for c in cells]
    memory_kib = sum(m for m in mems if m) // 1024 if cells and any(mems) else None
    return HostCapabilities(
        arch=_text(cpu, "arch"),
        cpu_model=_text(cpu, "model"),
        cpu_vendor=_text(cpu, "vendor"),
        cpu_features=features,
        sockets=_int(topo.get("sockets")) if topo is not None else None,
        cores=_int(topo.get("cores")) if topo is not None else None,
        threads=_int(topo.get("threads")) if topo is not None else None,
        cells_cpus=cpus or None,
        cells_memory_kib=memory_kib or None,
        host_uuid=_text(host, "uuid"),
        domain_types=frozenset(d.get("type", "") for d in root.findall("guest/arch/domain")) - {""},
    )


@dataclass(frozen=True, slots=True)
class HostModelCPU:
    """`virConnectGetDomainCapabilities`, mode host-model: the CPU QEMU can give a guest on this host.

    This, not the raw host CPU, is what a destination offers to a migrating guest: features QEMU or
    KVM cannot virtualise are absent from it.
    """

    supported: bool
    model: str | None
    vendor: str | None
    features: frozenset[str]  # policy require (offered on top of the model)
    disabled: frozenset[str]  # policy disable (in the model, but not offered here)
    usable_models: frozenset[str]  # custom-mode models marked usable='yes'


def parse_domain_capabilities(xml: str) -> HostModelCPU:
    root = _root(xml, "domainCapabilities")
    mode = None
    custom = None
    for m in root.findall("cpu/mode"):
        if m.get("name") == "host-model":
            mode = m
        elif m.get("name") == "custom":
            custom = m
    usable = frozenset(
        (m.text or "").strip() for m in (custom.findall("model") if custom is not None else [])
        if m.get("usable") == "yes" and (m.text or "").strip()
    )
    if mode is None:
        return HostModelCPU(False, None, None, frozenset(), frozenset(), usable)
    feats = mode.findall("feature")
    return HostModelCPU(
        supported=mode.get("supported") == "yes",
        model=_text(mode, "model"),
        vendor=_text(mode, "vendor"),
        features=frozenset(f.get("name", "") for f in feats if f.get("policy") in _REQUIRED_POLICIES) - {""},
        disabled=frozenset(f.get("name", "") for f in feats if f.get("policy") == "disable") - {""},
        usable_models=usable,
    )


# ------------------------------------------------------------------------------------------ domains


@dataclass(frozen=True, slots=True)
class NetworkHost:
    name: str
    port: int | None = None


@dataclass(frozen=True, slots=True)
class DomainDisk:
    """One `<disk>` of a domain: what `virsh domblklist --details` shows, plus driver and source details."""

    target: str
    device: str  # disk, lun, cdrom, floppy
    type: str  # file, block, network, volume, dir
    source: str | None  # path (file, block, dir), "protocol://host:port/name" (network), "pool/volume"
    path: str | None  # local path for file/block disks; None otherwise
    protocol: str | None  # network disks: nbd, rbd, iscsi, gluster, ...
    network_name: str | None  # network disks: export / image / volume name
    hosts: tuple[NetworkHost, ...]
    pool: str | None  # volume disks
    volume: str | None
    format: str | None  # driver type: raw, qcow2, ...
    cache: str | None
    readonly: bool
    shareable: bool

    @property
    def is_network(self) -> bool:
        return self.type == "network"


@dataclass(frozen=True, slots=True)
class DomainCPU:
    mode: str | None  # None when the domain has no <cpu> element (hypervisor default model)
    model: str | None
    features_required: frozenset[str]
    features_disabled: frozenset[str]
    xml: str = ""  # the <cpu> element as the domain has it ("" without one): what compareHypervisorCPU takes
    has_features: bool = False  # any <feature>, whatever its policy

    @property
    def names_a_cpu(self) -> bool:
        """A model or features to compare with a host's (not host-passthrough, not the hypervisor default)."""
        return bool(self.xml) and self.mode != "host-passthrough" and (self.model is not None or self.has_features)


@dataclass(frozen=True, slots=True)
class DomainInterface:
    type: str  # network, bridge, direct, user, ...
    source: str | None  # network name, bridge name or host device
    mac: str | None


@dataclass(frozen=True, slots=True)
class DomainDefinition:
    name: str
    uuid: str | None
    domain_type: str | None  # kvm or qemu (TCG)
    vcpus: int
    memory_kib: int  # <memory>: the maximum, what a migration may have to send
    current_memory_kib: int | None
    cpu: DomainCPU
    disks: tuple[DomainDisk, ...]
    interfaces: tuple[DomainInterface, ...]
    hugepages: bool = False  # <memoryBacking><hugepages/>: its memory is not counted in the QEMU process's RSS
    arch: str | None = None  # <os><type arch=…>

    @property
    def memory_mib(self) -> int:
        return -(-self.memory_kib // 1024)  # round up: never under-count memory

    @property
    def data_disks(self) -> tuple[DomainDisk, ...]:
        """The disks a migration moves or must find on the destination (not cdrom or floppy)."""
        return tuple(d for d in self.disks if d.device in ("disk", "lun"))

    @property
    def host_networks(self) -> tuple[DomainInterface, ...]:
        """Interfaces that need a libvirt network or a bridge of that name on the host."""
        return tuple(i for i in self.interfaces if i.type in ("network", "bridge") and i.source)


def _network_source(src: ET.Element, protocol: str) -> tuple[str, tuple[NetworkHost, ...], str]:
    hosts = tuple(NetworkHost(h.get("name", ""), _int(h.get("port"))) for h in src.findall("host") if h.get("name"))
    name = src.get("name", "")
    first = hosts[0] if hosts else None
    where = f"{first.name}:{first.port}" if first is not None and first.port else (first.name if first else "")
    return f"{protocol}://{where}/{name}", hosts, name


def _parse_disk(el: ET.Element) -> DomainDisk | None:
    target_el = el.find("target")
    target = target_el.get("dev") if target_el is not None else None
    if not target:
        return None
    dtype = el.get("type", "file")
    src = el.find("source")
    driver = el.find("driver")
    path = protocol = network_name = pool = volume = source = None
    hosts: tuple[NetworkHost, ...] = ()
    if src is not None:
        if dtype == "file":
            path = source = src.get("file")
        elif dtype == "block":
            path = source = src.get("dev")
        elif dtype == "dir":
            path = source = src.get("dir")
        elif dtype == "network":
            protocol = src.get("protocol")
            source, hosts, network_name = _network_source(src, protocol or "network")
        elif dtype == "volume":
            pool, volume = src.get("pool"), src.get("volume")
            source = f"{pool}/{volume}" if pool and volume else None
    return DomainDisk(
        target=target, device=el.get("device", "disk"), type=dtype, source=source, path=path, protocol=protocol,
        network_name=network_name, hosts=hosts, pool=pool, volume=volume,
        format=driver.get("type") if driver is not None else None,
        cache=driver.get("cache") if driver is not None else None,
        readonly=el.find("readonly") is not None, shareable=el.find("shareable") is not None,
    )


def _parse_cpu(el: ET.Element | None) -> DomainCPU:
    if el is None:
        return DomainCPU(None, None, frozenset(), frozenset())
    feats = el.findall("feature")
    # libvirt's default mode is custom when a <model> is given (formatdomain.html#cpu-model-and-topology).
    mode = el.get("mode") or ("custom" if el.find("model") is not None else None)
    return DomainCPU(
        mode=mode,
        model=_text(el, "model"),
        features_required=frozenset(f.get("name", "") for f in feats
                                    if f.get("policy", "require") in _REQUIRED_POLICIES) - {""},
        features_disabled=frozenset(f.get("name", "") for f in feats if f.get("policy") == "disable") - {""},
        xml=ET.tostring(el, encoding="unicode"),
        has_features=bool(feats),
    )


def _parse_interface(el: ET.Element) -> DomainInterface:
    itype = el.get("type", "")
    src = el.find("source")
    source = None
    if src is not None:
        source = src.get("network") or src.get("bridge") or src.get("dev")
    mac_el = el.find("mac")
    return DomainInterface(itype, source, mac_el.get("address") if mac_el is not None else None)


def parse_domain(xml: str) -> DomainDefinition:
    root = _root(xml, "domain")
    name = _text(root, "name")
    if not name:
        raise XMLParseError("<domain> without <name>")
    vcpu_el = root.find("vcpu")
    # `current` is how many vCPUs are online; the maximum is what a destination must be able to host.
    vcpus = _int(vcpu_el.text.strip()) if vcpu_el is not None and vcpu_el.text else None
    memory = _bytes(root.find("memory"), "KiB")
    current = _bytes(root.find("currentMemory"), "KiB")
    devices = root.find("devices")
    disks = [d for d in (_parse_disk(e) for e in (devices.findall("disk") if devices is not None else [])) if d]
    ifaces = [_parse_interface(e) for e in (devices.findall("interface") if devices is not None else [])]
    return DomainDefinition(
        name=name, uuid=_text(root, "uuid"), domain_type=root.get("type"), vcpus=vcpus or 1,
        memory_kib=(memory or 0) // 1024, current_memory_kib=current // 1024 if current else None,
        cpu=_parse_cpu(root.find("cpu")), disks=tuple(disks), interfaces=tuple(ifaces),
        hugepages=root.find("memoryBacking/hugepages") is not None,
        arch=_attr(root, "os/type", "arch"),
    )


# ------------------------------------------------------------------------------------------ storage pools

# Pool types whose storage lives on a server every host reaches: the same source means the same data.
NETWORK_POOL_TYPES = frozenset({"netfs", "rbd", "iscsi", "iscsi-direct", "gluster", "sheepdog", "vstorage"})


@dataclass(frozen=True, slots=True)
class PoolDefinition:
    name: str
    type: str
    target_path: str | None
    source_hosts: tuple[str, ...]
    source_dir: str | None  # netfs export, gluster subdirectory
    source_name: str | None  # rbd pool, gluster volume, logical VG
    source_devices: tuple[str, ...]  # iscsi IQN / block devices
    source_format: str | None  # netfs: nfs, glusterfs, cifs
    capacity_bytes: int | None
    allocation_bytes: int | None
    available_bytes: int | None

    @property
    def is_network(self) -> bool:
        return self.type in NETWORK_POOL_TYPES

    @property
    def source_key(self) -> str | None:
        """A stable id of the data behind a network pool, equal on every host that mounts it; None if local."""
        if not self.is_network:
            return None
        host = ",".join(sorted(self.source_hosts)) or "?"
        if self.type == "netfs":
            return f"{self.source_format or 'nfs'}:{host}:{(self.source_dir or '/').rstrip('/') or '/'}"
        if self.type == "rbd":
            return f"rbd:{host}/{self.source_name or ''}"
        if self.type in ("iscsi", "iscsi-direct"):
            return f"iscsi:{host}/{','.join(self.source_devices)}"
        if self.type == "gluster":
            return f"gluster:{host}/{self.source_name or ''}{self.source_dir or ''}"
        return f"{self.type}:{host}/{self.source_name or self.source_dir or ''}"


def parse_pool(xml: str) -> PoolDefinition:
    root = _root(xml, "pool")
    src = root.find("source")
    fmt = src.find("format") if src is not None else None
    return PoolDefinition(
        name=_text(root, "name") or "",
        type=root.get("type", ""),
        target_path=_text(root, "target/path"),
        source_hosts=tuple(h.get("name", "") for h in (src.findall("host") if src is not None else [])
                           if h.get("name")),
        source_dir=_attr(src, "dir", "path"),
        source_name=_text(src, "name"),
        source_devices=tuple(d.get("path", "") for d in (src.findall("device") if src is not None else [])
                             if d.get("path")),
        source_format=fmt.get("type") if fmt is not None else None,
        capacity_bytes=_bytes(root.find("capacity")),
        allocation_bytes=_bytes(root.find("allocation")),
        available_bytes=_bytes(root.find("available")),
    )


# ------------------------------------------------------------------------------------------ node devices


@dataclass(frozen=True, slots=True)
class NetDevice:
    """A `net_*` node device: a host network interface and its negotiated link speed."""

    interface: str
    mac: str | None
    speed_mbps: int | None  # None when the driver does not report it (virtual NICs, link down)
    link_up: bool
    physical: bool  # has a parent other than `computer` (a PCI/USB device, not a virtual one)

    @property
    def speed_gbps(self) -> float | None:
        return self.speed_mbps / 1000 if self.speed_mbps else None


def parse_node_device_net(xml: str) -> NetDevice | None:
    """The NIC described by a node device, or None if the device is not a network interface."""
    root = _root(xml, "device")
    cap = next((c for c in root.findall("capability") if c.get("type") == "net"), None)
    if cap is None:
        return None
    link = cap.find("link")
    speed = _int(link.get("speed")) if link is not None else None
    parent = _text(root, "parent")
    path = _text(root, "path") or ""
    return NetDevice(
        interface=_text(cap, "interface") or "",
        mac=_text(cap, "address"),
        speed_mbps=speed if speed and speed > 0 else None,
        link_up=link is not None and link.get("state") == "up",
        physical=parent not in (None, "computer") and "/virtual/" not in path,
    )


@dataclass(frozen=True, slots=True)
class HostInterface:
    name: str
    type: str  # ethernet, bridge, bond, vlan


def parse_interface(xml: str) -> HostInterface:
    """`virInterfaceGetXMLDesc` (host interfaces, used to find the bridges a host offers)."""
    root = _root(xml, "interface")
    return HostInterface(root.get("name", ""), root.get("type", ""))


# ------------------------------------------------------------------------------------------ CPU definitions


def _cpu_xml(model: str, vendor: str | None, required: frozenset[str], disabled: frozenset[str]) -> str:
    feats = "".join(f"<feature policy='require' name='{f}'/>" for f in sorted(required))
    feats += "".join(f"<feature policy='disable' name='{f}'/>" for f in sorted(disabled))
    vendor_el = f"<vendor>{vendor}</vendor>" if vendor else ""
    return f"<cpu mode='custom' match='exact'><model fallback='forbid'>{model}</model>{vendor_el}{feats}</cpu>"


def host_model_cpu_xml(cpu: HostModelCPU) -> str:
    """The host-model CPU as a `<cpu>` definition, for `baselineHypervisorCPU(..., EXPAND_FEATURES)`."""
    return _cpu_xml(cpu.model or "", cpu.vendor, cpu.features, cpu.disabled)


def domain_cpu_xml(cpu: DomainCPU) -> str:
    """A guest's custom-mode CPU as a `<cpu>` definition (model plus its explicit feature policies)."""
    return _cpu_xml(cpu.model or "", None, cpu.features_required, cpu.features_disabled)


def parse_domain_capabilities_cpu_features(xml: str) -> frozenset[str]:
    """The features a `<cpu>` definition requires (the output of an expanded baseline)."""
    root = _root(xml, "cpu")
    return frozenset(f.get("name", "") for f in root.findall("feature")
                     if f.get("policy", "require") in _REQUIRED_POLICIES) - {""}
