"""Speed of inventory loading and validation on a big synthetic fleet, and of the generator.

    .venv/bin/python bench/bench_load.py [--hosts 5000] [--vms 30000] [--racks 100] [--repeat 3]

Generates the fleet (`planner.generate.generate_fleet`), writes it as compact JSON to a temporary
file, then times `load_inventory` (read + JSON decode + validate + build the model), best of
`--repeat`. The target is < 3 s for 5,000 hosts / 30,000 VMs; generation should take < 10 s.
Also times the CSV import of the same fleet and JSON Schema validation of it, for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planner.csv_import import write_csv_inventory  # after the sys.path line
from planner.generate import generate_fleet
from planner.inventory import inventory_schema, load_inventory


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=5000)
    ap.add_argument("--vms", type=int, default=30000)
    ap.add_argument("--racks", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--schema", action="store_true", help="also time jsonschema validation (slow)")
    ap.add_argument("--csv", action="store_true", help="also time the CSV import")
    args = ap.parse_args()

    start = time.perf_counter()
    inv = generate_fleet(args.hosts, args.vms, args.racks, seed=1)
    generate_s = time.perf_counter() - start
    start = time.perf_counter()
    text = json.dumps(inv.to_dict())
    dump_s = time.perf_counter() - start
    print(f"generate_fleet({args.hosts} hosts, {args.vms} VMs, {args.racks} racks): {generate_s:.2f} s "
          f"(+ {dump_s:.2f} s to JSON, {len(text) / 1e6:.1f} MB)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.json"
        path.write_text(text)
        loaded = load_inventory(path)
        assert loaded.inventory.sha256 == inv.sha256 and not loaded.warnings
        load_s = best_of(args.repeat, lambda: load_inventory(path))
        verdict = "ok" if load_s < 3.0 else "OVER the 3 s target"
        print(f"load_inventory (read + parse + validate + build), best of {args.repeat}: {load_s:.2f} s [{verdict}]")
        start = time.perf_counter()
        json.loads(path.read_text())
        print(f"  of which json.loads alone: {time.perf_counter() - start:.2f} s")
        if args.csv:
            folder = Path(tmp) / "csv"
            write_csv_inventory(inv, folder)
            csv_s = best_of(args.repeat, lambda: load_inventory(folder))
            print(f"load_inventory on the CSV folder, best of {args.repeat}: {csv_s:.2f} s")
        if args.schema:
            import jsonschema  # type: ignore[import-untyped]

            doc = json.loads(text)
            validator = jsonschema.Draft202012Validator(inventory_schema())
            start = time.perf_counter()
            validator.validate(doc)
            print(f"jsonschema validation alone (for comparison): {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
