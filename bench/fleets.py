"""The bench fleets by name, importing only what every version of the planner has (bench_quality's
subprocesses load them against older trees too)."""

from __future__ import annotations

from pathlib import Path

from planner.model import Inventory

ROOT = Path(__file__).resolve().parents[1]
LABEL = {"small": "small, rack r1", "medium": "medium, rack r1", "hard": "hard, rack r1 (+ maintenance host)",
         "gen500": "generated 500 hosts / 3,000 VMs, rack r25",
         "gen5000": "generated 5,000 hosts / 30,000 VMs, 250 hosts"}


def fleet_named(name: str) -> tuple[Inventory, list[str]]:
    """The bench fleets (the same as bench/bench_plan.py)."""
    from planner.generate import generate_fleet
    from planner.inventory import load_inventory

    if name == "gen500":
        inv = generate_fleet(hosts=500, vms=3000, racks=25, seed=7)
        return inv, [h.name for h in inv.hosts if h.labels.get("rack") == "r25"]
    if name == "gen5000":
        inv = generate_fleet(hosts=5000, vms=30000, racks=100, seed=11)
        racks = {f"r{i}" for i in range(96, 101)}
        return inv, [h.name for h in inv.hosts if h.labels.get("rack") in racks][:250]
    inv = load_inventory(ROOT / "data" / f"{name}.json").inventory
    return inv, [h.name for h in inv.hosts if h.labels.get("rack") == "r1"]
