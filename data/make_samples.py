"""Regenerates data/small.json (and data/small-csv/), data/medium.json and data/hard.json (deterministic),
then checks that the demo drains fit by first-fit decreasing.

    .venv/bin/python data/make_samples.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planner.baselines import ffd_placement  # after the sys.path line
from planner.csv_import import write_csv_inventory
from planner.generate import AZURE_SIZE_MIX, generate_fleet
from planner.inventory import load_inventory
from planner.model import Policy

DATA = Path(__file__).resolve().parent
# Without the 8 vCPU / 56 GiB size: hosts this small could not absorb one during a drain.
NO_HUGE = tuple(m for m in AZURE_SIZE_MIX if m[1] != 57344)
HARD_HOST_MIB = 81920  # 80 GiB: VMs use 78 % of usable memory; 4 GiB less and draining r2-h01 no longer fits


def write(doc: dict[str, Any], name: str) -> None:
    (DATA / name).write_text(json.dumps(doc, indent=1) + "\n")


def main() -> int:
    small = generate_fleet(6, 40, 2, seed=7, memory_used=0.6, size_mix=NO_HUGE, maintenance=("r1-h01",),
                           anti_affinity_share=0.3, uplink_gbps=40.0)
    write(small.to_dict(), "small.json")
    write_csv_inventory(small, DATA / "small-csv")  # the same fleet in the CSV layout
    medium = generate_fleet(50, 600, 4, seed=11, memory_used=0.55, size_mix=NO_HUGE, uplink_gbps=100.0)
    write(medium.to_dict(), "medium.json")
    policy = Policy(migration_share=0.4, max_downtime_ms=500.0, progress_timeout_s=150.0,
                    completion_timeout_per_gib_s=150.0)
    hard = generate_fleet(16, 240, 4, seed=13, memory_used=0.78, anti_affinity_share=0.45, uplink_gbps=40.0,
                          maintenance=("r2-h01",), policy=policy, size_mix=NO_HUGE).to_dict()
    for h in hard["hosts"]:
        h["memory_mib"] = HARD_HOST_MIB
    for lk in hard["links"]:
        if lk["a"] == "tor-r4":
            lk["gbps"] = 1.0  # the slow rack
    write(hard, "hard.json")
    drains = {"small.json": [["r1-h01"]], "hard.json": [["r2-h01"], ["r2-h01", "r2-h02"]],
              "medium.json": [[h.name for h in medium.hosts if h.labels["rack"] == f"r{r}"] for r in range(1, 5)]}
    ok = True
    for name, sets in drains.items():
        inv = load_inventory(DATA / name).inventory
        for drained in sets:
            unplaced = ffd_placement(inv, drained).unplaced
            ok &= not unplaced
            print(f"{name}: drain {drained[0]}..({len(drained)} hosts): {len(unplaced)} VMs unplaced by FFD")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
