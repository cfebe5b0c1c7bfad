"""The operator's whole workflow on the real lab, through the CLI only: collect → plan → dry run →
run → status → run --resume (a no-op once everything is done). Nothing but `evac` commands touch the
guests; the harness only creates them and checks the end state."""

from __future__ import annotations

import json
from pathlib import Path

import libvirt
import pytest

from executor.cli.main import main
from tests.lab.harness import Lab


def _evac(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out + out.err


@pytest.mark.lab
def test_collect_plan_run_status_resume_through_the_cli(lab: Lab, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    h1 = lab.hosts[0]
    disk = lab.create_local_disk(h1, "wf-root", capacity_mib=32)
    guests = {
        "wf-a": lab.define_guest(h1, "wf-a", memory_mib=64, disks=[(disk, "vda")]),
        "wf-b": lab.define_guest(h1, "wf-b", memory_mib=96, dirty_rate_mibs=4, wss_mib=32),
        "wf-c": lab.define_guest(h1, "wf-c", memory_mib=128, persistent=False),
    }
    for dom in guests.values():
        lab.wait_ready(dom)
    uuids = {name: dom.UUIDString() for name, dom in guests.items()}
    hosts_file = lab.hosts_file
    inv, plan, journal = tmp_path / "inv.json", tmp_path / "plan.json", tmp_path / "run.db"

    code, out = _evac(capsys, "collect", *(h.uri for h in lab.hosts), "--hosts-file", str(hosts_file),
                      "--virt-type", "qemu", "-o", str(inv))
    assert code == 0, out
    collected = {v["name"]: v for v in json.loads(inv.read_text())["vms"]}
    assert set(collected) == set(guests)
    assert [d["storage"] for d in collected["wf-a"]["disks"]] == [None]  # local: must be copied

    code, out = _evac(capsys, "plan", str(inv), "--drain", h1.name, "--time-limit", "5", "-o", str(plan))
    assert code == 0, out
    planned = {m["vm"]: m for m in json.loads(plan.read_text())["migrations"]}
    assert set(planned) == set(guests)
    assert planned["wf-a"]["copy_storage"] == ["vda"] and planned["wf-b"]["copy_storage"] == []
    code, out = _evac(capsys, "check", str(inv), str(plan))
    assert code == 0, out

    code, out = _evac(capsys, "run", str(plan), "-i", str(inv), "--dry-run")
    assert code == 0, out
    assert "--copy-storage-all" in out and "--unsafe" not in out

    code, out = _evac(capsys, "run", str(plan), "-i", str(inv), "--journal", str(journal))
    assert code == 0, out

    host = {h.name: h for h in lab.hosts}
    for name, m in planned.items():
        src, dst = lab.connect(host[m["source"]]), lab.connect(host[m["destination"]])
        with pytest.raises(libvirt.libvirtError):
            src.lookupByUUIDString(uuids[name])  # gone from the source, definition included
        moved = dst.lookupByUUIDString(uuids[name])
        assert moved.isActive() and lab.heartbeat_advances(moved), name
        assert bool(moved.isPersistent()) == (name != "wf-c"), name

    code, out = _evac(capsys, "status", str(journal))
    assert code == 0, out
    assert all(name in out for name in guests) and "done" in out

    # a second run of the same plan from the journal finds everything done and touches nothing
    code, out = _evac(capsys, "run", str(plan), "-i", str(inv), "--journal", str(journal), "--resume")
    assert code == 0, out
    for name, m in planned.items():
        assert lab.connect(host[m["destination"]]).lookupByUUIDString(uuids[name]).isActive()
