"""The lab harness's pure parts, without starting a lab: status parsing, domain and disk XML, namespace
names, and the refusal to delete a directory that is not a lab."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.lab.harness import DiskKind, LabDisk, LabError, down_lab, netns_prefix
from tests.lab.hostconfig import STORAGE_ADDRESS, evac_hosts_file, make_host
from tests.lab.memdirty import GUEST_MAGIC, guest_xml, parse_status

# Verbatim answer of QEMU 7.2's HMP `xp /8wx 0x7000` for a 64 MiB guest (wss=5 rate=3).
HMP_ANSWER = ("0000000000007000: 0x4d454d44 0x00000002 0x00000001 0x00000000\r\n"
              "0000000000007010: 0x00000000 0x00000005 0x00000003 0x0000003f\r\n")


def test_parse_status_reads_the_eight_words() -> None:
    status = parse_status(HMP_ANSWER)
    assert status is not None
    assert status.magic == GUEST_MAGIC and status.heartbeat == 2 and status.fill_done and status.ready
    assert (status.passes, status.wss_mib, status.rate_mibs, status.mem_mib) == (0, 5, 3, 63)


@pytest.mark.parametrize("answer", ["", "Cannot access memory\r\n", HMP_ANSWER.splitlines()[0]])
def test_parse_status_refuses_a_partial_answer(answer: str) -> None:
    assert parse_status(answer) is None


def test_guest_xml_is_a_tcg_domain_with_the_requested_size_and_rate() -> None:
    disk = LabDisk(DiskKind.LOCAL, "d.qcow2", 64, Path("/x/d.qcow2"), "/var/lib/libvirt/images/d.qcow2", None)
    root = ET.fromstring(guest_xml("vm1", 96, 8, 4, Path("/k/memdirty.elf"), [disk.xml("vda")]))
    assert root.get("type") == "qemu"
    assert root.findtext("memory") == "96" and root.find("memory").get("unit") == "MiB"  # type: ignore[union-attr]
    assert root.findtext("os/cmdline") == "wss=4 rate=8 fill=1"
    assert root.findtext("os/kernel") == "/k/memdirty.elf"
    assert root.find("devices/disk/source").get("file") == "/var/lib/libvirt/images/d.qcow2"  # type: ignore[union-attr]


def test_nbd_disk_xml_points_at_the_storage_namespace() -> None:
    disk = LabDisk(DiskKind.NBD, "nbd0", 64, Path("/lab/nbd/nbd0.qcow2"), "nbd0", "lab-nbd", "qcow2", 10810)
    elem = ET.fromstring(disk.xml("vdb"))
    assert elem.get("type") == "network"
    assert elem.find("driver").get("type") == "raw"  # type: ignore[union-attr]  # qemu-nbd serves the qcow2 decoded
    source = elem.find("source")
    assert source is not None and source.get("protocol") == "nbd" and source.get("name") == "nbd0"
    assert source.find("host").attrib == {"name": STORAGE_ADDRESS, "port": "10810"}  # type: ignore[union-attr]
    assert elem.find("target").get("dev") == "vdb"  # type: ignore[union-attr]


def test_namespaces_and_hosts_derive_from_the_lab_directory(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert netns_prefix(a) == netns_prefix(a) != netns_prefix(b)
    h2 = make_host(a, netns_prefix(a), 2)
    assert (h2.name, h2.address, h2.peer_uri) == ("h2", "10.77.0.12", "qemu+tcp://10.77.0.12/system")
    assert h2.uri == f"qemu+unix:///system?socket={a}/h2/run/libvirt/libvirt-sock"
    assert h2.netns == netns_prefix(a) + "h2"
    assert h2.host_uuid != make_host(a, netns_prefix(a), 3).host_uuid


def test_down_refuses_to_delete_a_directory_that_is_not_a_lab(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(LabError, match="does not look like a lab"):
        down_lab(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_evac_hosts_file_is_a_valid_site_config(tmp_path: Path) -> None:
    site = pytest.importorskip("executor.site")
    hosts = [make_host(tmp_path, "lab-x-", i) for i in (1, 2)]
    path = tmp_path / "evac-hosts.yaml"
    path.write_text(evac_hosts_file(hosts))
    config = site.load_site_config(hosts_file=path)
    assert list(config.hosts) == ["h1", "h2"]
    assert config.hosts["h1"].uri == hosts[0].uri and config.hosts["h2"].migration_address == "10.77.0.12"
    assert config.override_for(hosts[1].uri, None).name == "h2"
    assert [(s.id, tuple(s.servers)) for s in config.storage] == [("lab-nbd", (STORAGE_ADDRESS,))]
