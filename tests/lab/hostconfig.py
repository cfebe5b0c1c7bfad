"""What a lab host is (LabHost) and the files and links that make it: libvirtd.conf, qemu.conf, pools,
the namespace holder's mount script, its veth on the lab bridge."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.lab.procs import run

SUBNET = "10.77.0"
STORAGE_ADDRESS = f"{SUBNET}.2"
SHARED_DIR_IN_HOST = "/var/lib/libvirt/shared"
IMAGES_DIR_IN_HOST = "/var/lib/libvirt/images"


def netns_prefix(lab_dir: Path) -> str:
    """Namespace names are derived from the lab directory, so labs in different directories never collide."""
    return "lab-" + hashlib.sha1(str(lab_dir.resolve()).encode()).hexdigest()[:6] + "-"


@dataclass(frozen=True, slots=True)
class LabHost:
    """One lab host: where to reach it, what it is called, where its files are."""

    index: int  # 1-based
    name: str  # "h1", also its hostname and its name in the lab's /etc/hosts
    uri: str  # qemu+unix:///system?socket=$LAB/h<i>/...: for this process, and for the other hosts too
    peer_uri: str  # qemu+tcp://10.77.0.(10+i)/system, no auth: what another lab host dials (p2p)
    address: str  # 10.77.0.(10+index): libvirtd and migration traffic
    host_uuid: str
    netns: str
    dir: Path  # $LAB/h<i>
    pool_dir: Path  # pool `default` (/var/lib/libvirt/images inside the host), seen from this process
    socket: Path

    def local_path(self, volume: str) -> Path:
        """Where a volume of pool `default` lives, seen from this process (for qemu-img / qemu-io)."""
        return self.pool_dir / volume


def make_host(lab_dir: Path, prefix: str, index: int) -> LabHost:
    host_dir = lab_dir / f"h{index}"
    socket = host_dir / "run" / "libvirt" / "libvirt-sock"
    address = f"{SUBNET}.{10 + index}"
    return LabHost(
        index=index, name=f"h{index}", uri=f"qemu+unix:///system?socket={socket}",
        peer_uri=f"qemu+tcp://{address}/system", address=address,
        host_uuid=f"7ab00000-0000-4000-8000-{index:012d}", netns=f"{prefix}h{index}", dir=host_dir,
        pool_dir=host_dir / "var-up" / "lib" / "libvirt" / "images", socket=socket,
    )


def _libvirtd_conf(host: LabHost) -> str:
    return f"""host_uuid = "{host.host_uuid}"
listen_tls = 0
listen_tcp = 1
listen_addr = "{host.address}"
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_rw_perms = "0700"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


def _qemu_conf(host: LabHost) -> str:
    # root without dynamic ownership or a security driver: no chown games on files shared by hosts;
    # no cgroups (not visible inside `ip netns exec`); stdio to files (no virtlogd).
    return f"""user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
migration_address = "{host.address}"
migration_host = "{host.address}"
"""


def _pool_xml(name: str, path: str, index: int) -> str:
    uuid = f"7ab0{index:04d}-0000-4000-8000-{int(hashlib.sha1(name.encode()).hexdigest()[:12], 16):012x}"
    return f"<pool type='dir'><name>{name}</name><uuid>{uuid}</uuid><target><path>{path}</path></target></pool>\n"


def holder_script(lab_dir: Path, host: LabHost) -> str:
    """Runs in fresh mount + UTS namespaces inside the host's netns; the `sleep` keeps them alive so a
    killed libvirtd can be restarted into the very same mounts (qemu processes live on in them)."""
    h = host.dir
    return f"""set -e
mount --bind '{h}/etc' /etc/libvirt
mount --bind '{h}/run' /run
mount -t overlay overlay -o 'lowerdir=/var,upperdir={h}/var-up,workdir={h}/var-work' /var
mount --bind '{lab_dir}/shared' {SHARED_DIR_IN_HOST}
mount --bind '{lab_dir}/hosts' /etc/hosts
mount --bind '{lab_dir}/passwd' /etc/passwd
mount --bind '{lab_dir}/group' /etc/group
hostname {host.name}
touch '{h}/mounted'
exec sleep infinity
"""


def write_host_files(lab_dir: Path, host: LabHost) -> None:
    h = host.dir
    for sub in ("etc/storage/autostart", "run", "var-work", "var-up/log/libvirt", "var-up/cache/libvirt",
                "var-up/lib/libvirt/images", "var-up/lib/libvirt/shared"):
        (h / sub).mkdir(parents=True, exist_ok=True)
    (h / "etc" / "libvirtd.conf").write_text(_libvirtd_conf(host))
    (h / "etc" / "qemu.conf").write_text(_qemu_conf(host))
    # Pools as config files: libvirtd autostarts them, no API round trips at start-up.
    for pool, path in (("default", IMAGES_DIR_IN_HOST), ("shared", SHARED_DIR_IN_HOST)):
        (h / "etc" / "storage" / f"{pool}.xml").write_text(_pool_xml(pool, path, host.index))
        (h / "etc" / "storage" / "autostart" / f"{pool}.xml").symlink_to(f"/etc/libvirt/storage/{pool}.xml")


def write_lab_files(lab_dir: Path, hosts: Sequence[LabHost]) -> None:
    (lab_dir / "shared").mkdir(parents=True, exist_ok=True)
    (lab_dir / "nbd").mkdir(exist_ok=True)
    # libvirtd insists on its build-time qemu user `libvirt-qemu` even with user="root": the daemons
    # get private copies of passwd/group instead of a useradd on the real system.
    passwd, group = Path("/etc/passwd").read_text(), Path("/etc/group").read_text()
    if not re.search(r"^libvirt-qemu:", passwd, re.M):
        passwd += "libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin\n"
    if not re.search(r"^libvirt-qemu:", group, re.M):
        group += "libvirt-qemu:x:64055:\n"
    (lab_dir / "passwd").write_text(passwd)
    (lab_dir / "group").write_text(group)
    lines = ["127.0.0.1 localhost", f"{STORAGE_ADDRESS} storage"] + [f"{h.address} {h.name}" for h in hosts]
    (lab_dir / "hosts").write_text("\n".join(lines) + "\n")


def add_link(prefix: str, netns: str, switch_port: str, address: str) -> None:
    sw = f"{prefix}sw"
    run("ip", "netns", "add", netns)
    run("ip", "-n", sw, "link", "add", switch_port, "type", "veth", "peer", "name", "eth0", "netns", netns)
    run("ip", "-n", sw, "link", "set", switch_port, "master", "br0", "up")
    run("ip", "-n", netns, "link", "set", "lo", "up")
    run("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
    run("ip", "-n", netns, "link", "set", "eth0", "up")


def evac_hosts_file(hosts: Sequence[LabHost]) -> str:
    """A `--hosts-file` for `evac collect` (executor/site.py) describing the lab: names, URIs, migration
    addresses, and the NBD server as shared storage `lab-nbd`."""
    lines = ["# evac collect --hosts-file for this lab (written when the lab started)", "hosts:"]
    lines += [f"  {h.name}: {{uri: \"{h.uri}\", migration_address: {h.address}}}" for h in hosts]
    lines += [
        "shared_storage:",
        f"  lab-nbd: {{servers: [{STORAGE_ADDRESS}]}}",
        "  # The `shared` pool is the same directory on every host, but libvirt 9.0 does not treat it as",
        "  # shared (migration fails with error 81 without VIR_MIGRATE_UNSAFE). Declare it only to test that:",
        f"  # lab-shared: {{paths: [{SHARED_DIR_IN_HOST}]}}",
    ]
    return "\n".join(lines) + "\n"
