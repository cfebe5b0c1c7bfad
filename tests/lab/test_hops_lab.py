"""Issue 9 on the real lab: two full hosts swap their VMs through a third (staging), with `evac run`.

hs-x runs on h1, hs-y on h2; the target is hs-x on h2 and hs-y on h1. The inventory (collected by
`evac collect`, then edited) says each host has room for one guest only, so the direct swap breaks
capacity while both move and the plan goes through h3: hs-x h1→h3 (staging), hs-y h2→h1, hs-x h3→h2.
While `evac run` runs, a thread lists both guests on every host every 0.2 s: never two running copies
of a VM, never two guests on one host beyond the incoming domain of a migration the plan allows.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import libvirt
import pytest

from executor.cli.main import main
from planner.checker import check_plan
from planner.inventory import load_inventory
from planner.plan import PlanKind
from tests._planner_fixtures import move, plan_of
from tests.lab.harness import Lab

GUEST_MIB = 64
# What evac believes (inventory memory_mib): room for one guest and a half on each host, so a host
# holds its VM plus nothing else; the guests' real memory is far below what the lab hosts have.
HOST_MIB = GUEST_MIB * 3 // 2


def _evac(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out + out.err


class Sampler(threading.Thread):
    """Lists the guests on every lab host every 0.2 s (own connections): state per (VM, host)."""

    def __init__(self, lab: Lab, names: set[str]) -> None:
        super().__init__(daemon=True)
        self.conns = {h.name: lab.connect(h) for h in lab.hosts}
        self.names = names
        self.samples: list[dict[str, dict[str, int]]] = []  # per sample: vm -> {host: libvirt state}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            sample: dict[str, dict[str, int]] = {n: {} for n in self.names}
            for host, conn in self.conns.items():
                for dom in conn.listAllDomains():
                    if dom.name() in self.names:
                        try:
                            sample[dom.name()][host] = dom.state()[0]
                        except libvirt.libvirtError:  # gone between the listing and the question
                            continue
            self.samples.append(sample)
            self.stop.wait(0.2)


@pytest.mark.lab
@pytest.mark.slow
def test_two_full_hosts_swap_their_vms_through_a_staging_host(lab: Lab, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    h1, h2, h3 = lab.hosts[:3]
    guests = {"hs-x": lab.define_guest(h1, "hs-x", memory_mib=GUEST_MIB, dirty_rate_mibs=2, wss_mib=8),
              "hs-y": lab.define_guest(h2, "hs-y", memory_mib=GUEST_MIB, dirty_rate_mibs=2, wss_mib=8)}
    for dom in guests.values():
        lab.wait_ready(dom)
    uuids = {n: d.UUIDString() for n, d in guests.items()}
    inv_path, plan_path, journal = tmp_path / "inv.json", tmp_path / "plan.json", tmp_path / "run.db"
    code, out = _evac(capsys, "collect", *(h.uri for h in lab.hosts), "--hosts-file", str(lab.hosts_file),
                      "--virt-type", "qemu", "-o", str(inv_path))
    assert code == 0, out
    doc = json.loads(inv_path.read_text())
    for h in doc["hosts"]:
        h["memory_mib"], h["reserved_memory_mib"] = HOST_MIB, 0
    doc["policy"]["memory_overcommit"] = 1.0
    inv_path.write_text(json.dumps(doc))
    inv = load_inventory(inv_path).inventory
    assert {v.name: v.host for v in inv.vms} == {"hs-x": h1.name, "hs-y": h2.name}

    target = {"hs-x": h2.name, "hs-y": h1.name}
    direct = plan_of(inv, [move(inv, "hs-x", h2.name), move(inv, "hs-y", h1.name)], drained=(),
                     kind=PlanKind.TARGET, target=target)
    assert "capacity" in {v.rule for v in check_plan(inv, direct)}  # the direct swap is infeasible
    x0 = move(inv, "hs-x", h3.name, hop=0, staging=True)
    y0 = move(inv, "hs-y", h1.name, start_s=x0.end_s, wave=1)
    x1 = move(inv, "hs-x", h2.name, start_s=y0.end_s, source=h3.name, hop=1, wave=2)
    plan = plan_of(inv, [x0, y0, x1], drained=(), kind=PlanKind.TARGET, target=target)
    assert check_plan(inv, plan) == []
    plan_path.write_text(plan.to_json())
    code, out = _evac(capsys, "check", str(inv_path), str(plan_path))
    assert code == 0, out

    sampler = Sampler(lab, set(guests))
    sampler.start()
    try:
        code, out = _evac(capsys, "run", str(plan_path), "-i", str(inv_path), "--journal", str(journal))
    finally:
        sampler.stop.set()
        sampler.join()
    assert code == 0, out
    assert sampler.samples
    running = libvirt.VIR_DOMAIN_RUNNING
    for i, sample in enumerate(sampler.samples):
        for name, where in sample.items():
            copies = [h for h, st in where.items() if st == running]
            assert len(copies) <= 1, f"sample {i}: {name} runs on {copies}"
            assert where, f"sample {i}: {name} on no host"
    # hs-x was seen on its staging host h3, and hs-y entered h1 only after hs-x had left it
    assert any(h3.name in s["hs-x"] for s in sampler.samples)
    for s in sampler.samples:
        assert not (h1.name in s["hs-y"] and h1.name in s["hs-x"]), s

    by_name = {h.name: h for h in lab.hosts}
    for name, host in target.items():
        for other in lab.hosts:
            if other.name == host:
                continue
            with pytest.raises(libvirt.libvirtError):
                lab.connect(other).lookupByUUIDString(uuids[name])
        moved = lab.connect(by_name[host]).lookupByUUIDString(uuids[name])
        assert moved.isActive() and lab.heartbeat_advances(moved), name

    code, out = _evac(capsys, "status", str(journal), "--json")
    assert code == 0, out
    vms = {v["vm"]: v for v in json.loads(out)["vms"]}
    assert vms["hs-x"]["route"] == [h1.name, h3.name, h2.name] and vms["hs-x"]["state"] == "done"
    assert vms["hs-y"]["state"] == "done"
