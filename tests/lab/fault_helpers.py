"""Helpers for the lab fault tests of `evac run` (tests/lab/test_unreachable_lab.py, test_storage_lab.py):
write a scenario's inventory and plan as the files an operator would run, run the CLI in this process,
and look every guest up on every lab host (the "nothing lost" rule)."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from executor.cli.main import main
from tests.lab.evac_scenario import Scenario
from tests.lab.harness import Lab, LabHost
from tests.lab.procs import read_pid


def write_run_files(sc: Scenario, directory: Path) -> tuple[Path, Path]:
    """inventory.json and plan.json of the scenario, as `evac collect` and `evac plan` would leave them."""
    inventory, plan = directory / "inventory.json", directory / "plan.json"
    inventory.write_text(json.dumps(sc.inventory.to_dict(), indent=2))
    plan.write_text(sc.plan.to_json())
    return inventory, plan


def evac(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`evac ARGS` in this process: exit code and everything it printed (never a traceback), with runs
    of white space made one space (rich wraps long lines to the terminal's width)."""
    code = main(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return code, " ".join((out.out + out.err).split())


def placements(lab: Lab, uuids: dict[str, str]) -> dict[str, list[tuple[str, bool]]]:
    """Every lab host holding each guest (by uuid), with whether it runs there: from each host's own
    domain list (all daemons must answer)."""
    found: dict[str, list[tuple[str, bool]]] = {vm: [] for vm in uuids}
    by_uuid = {u: vm for vm, u in uuids.items()}
    for host in lab.hosts:
        for dom in lab.connect(host).listAllDomains():
            vm = by_uuid.get(dom.UUIDString())
            if vm is not None:
                found[vm].append((host.name, bool(dom.isActive())))
    return found


def assert_each_runs_once(lab: Lab, uuids: dict[str, str], expected: dict[str, str]) -> None:
    """Each guest runs exactly once, on `expected[vm]`, and its heartbeat advances there."""
    where = placements(lab, uuids)
    for vm, host in expected.items():
        assert where[vm] == [(host, True)], (vm, where[vm], host)
        dom = lab.connect(int(host.removeprefix("h"))).lookupByUUIDString(uuids[vm])
        assert lab.heartbeat_advances(dom), f"{vm}: heartbeat not advancing on {host}"


def in_host(host: LabHost, *argv: str) -> subprocess.CompletedProcess[str]:
    """Runs a command in the host's mount namespace (where its libvirtd and QEMUs see their files)."""
    holder = read_pid(host.dir / "holder.pid")
    assert holder is not None, f"{host.name}: no namespace holder"
    return subprocess.run(["nsenter", "-t", str(holder), "-m", "--", *argv], capture_output=True, text=True,
                          check=False)


@contextlib.contextmanager
def small_pool(lab: Lab, host: LabHost, size_mib: int) -> Iterator[Path]:
    """The host's pool `default` (/var/lib/libvirt/images) replaced by an empty tmpfs of `size_mib` MiB
    in the host's mount namespace, until the block ends; yields the pool's path inside the host."""
    path = Path("/var/lib/libvirt/images")
    done = in_host(host, "mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "evac-small-pool", str(path))
    assert done.returncode == 0, done.stderr
    pool = lab.connect(host).storagePoolLookupByName("default")
    try:
        pool.refresh(0)
        yield path
    finally:
        in_host(host, "umount", "-l", str(path))
        with contextlib.suppress(libvirt.libvirtError):
            pool.refresh(0)
