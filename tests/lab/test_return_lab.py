"""Issue 9 on the real lab: a drain with `evac run`, then `evac return JOURNAL` brings every VM home.

hr-a and hr-b run on h1. `evac collect` reads the lab, `evac plan --drain h1` empties h1 and `evac run`
runs it; `evac return run.db -o back.json` reads where the VMs are now live from the hosts the run's
inventory names (no `-i`), writes the fleet it saw beside the plan and a plan of kind return, which `evac
run` runs. A thread lists the guests on every host every 0.2 s throughout both runs: every VM runs
exactly once in every sample (one running copy; a paused incoming domain of a migration may sit beside
it). At the end both VMs are on h1 only and their heartbeats advance.
"""

from __future__ import annotations

import json
from pathlib import Path

import libvirt
import pytest

from planner.plan import load_plan
from tests.lab.harness import Lab
from tests.lab.test_hops_lab import Sampler, _evac

GUEST_MIB = 64


@pytest.mark.lab
@pytest.mark.slow
def test_a_drain_then_evac_return_brings_every_vm_home(lab: Lab, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    h1 = lab.hosts[0]
    guests = {n: lab.define_guest(h1, n, memory_mib=GUEST_MIB, dirty_rate_mibs=2, wss_mib=8) for n in ("hr-a", "hr-b")}
    for dom in guests.values():
        lab.wait_ready(dom)
    uuids = {n: d.UUIDString() for n, d in guests.items()}
    inv_path, plan_path, back_path = tmp_path / "inv.json", tmp_path / "plan.json", tmp_path / "back.json"
    code, out = _evac(capsys, "collect", *(h.uri for h in lab.hosts), "--hosts-file", str(lab.hosts_file),
                      "--virt-type", "qemu", "--sample-s", "0", "-o", str(inv_path))
    assert code == 0, out
    code, out = _evac(capsys, "plan", str(inv_path), "--drain", h1.name, "-o", str(plan_path), "--time-limit", "2")
    assert code == 0, out
    away = {m.vm: m.destination for m in load_plan(plan_path).migrations}
    assert set(away) == set(guests) and h1.name not in away.values()

    sampler = Sampler(lab, set(guests))
    sampler.start()
    try:
        code, out = _evac(capsys, "run", str(plan_path), "--journal", str(tmp_path / "run.db"))
        assert code == 0, out
        code, out = _evac(capsys, "return", str(tmp_path / "run.db"), "-o", str(back_path), "--time-limit", "2")
        assert code == 0, out
        back = load_plan(back_path)
        assert back.kind.value == "return" and dict(back.target) == dict.fromkeys(guests, h1.name)
        seen = json.loads((tmp_path / "back.inventory.json").read_text())  # the fleet as read live
        assert {v["name"]: v["host"] for v in seen["vms"]} == away
        code, out = _evac(capsys, "run", str(back_path), "--journal", str(tmp_path / "back.db"))
        assert code == 0, out
    finally:
        sampler.stop.set()
        sampler.join()

    running = libvirt.VIR_DOMAIN_RUNNING
    assert sampler.samples
    for i, sample in enumerate(sampler.samples):
        for name, where in sample.items():
            copies = [h for h, st in where.items() if st == running]
            assert len(copies) <= 1, f"sample {i}: {name} runs on {copies}"
            assert where, f"sample {i}: {name} on no host"
    for name in guests:  # each was seen away from h1, and is back on h1 only
        assert any(away[name] in s[name] for s in sampler.samples), name
        for other in lab.hosts[1:]:
            with pytest.raises(libvirt.libvirtError):
                lab.connect(other).lookupByUUIDString(uuids[name])
        home = lab.connect(h1).lookupByUUIDString(uuids[name])
        assert home.isActive() and lab.heartbeat_advances(home), name
