"""`evac validate`, `evac inventory show`, `evac generate`, `evac schema`, `evac version`.

Bad inventories raise `InventoryError` (every problem with its location); `executor.cli.main` turns it
into one message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from executor.outputs import check_writable, write_atomic
from planner.errors import Problem, UsageError
from planner.frames import to_frames
from planner.generate import generate_fleet
from planner.inventory import LoadedInventory, inventory_schema, load_inventory

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

InventoryPath = Annotated[Path, typer.Argument(
    help="Inventory v1: a .json or .yaml file, or a folder of CSV files (hosts.csv, vms.csv, ...).",
    show_default=False)]


def _load(path: Path) -> LoadedInventory:
    with err_console.status(f"loading {path}"):  # ~2 s for 30,000 VMs; shown on a terminal only
        loaded = load_inventory(path)
    for w in loaded.warnings:
        err_console.print(f"warning: {w}", markup=False)
    return loaded


def _gib(mib: float) -> str:
    return f"{mib / 1024:,.0f}"


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the evac app."""

    @app.command("version")
    def version() -> None:
        """Print evac's version."""
        from importlib.metadata import version as v

        typer.echo(v("evac"))

    @app.command("validate")
    def validate(path: InventoryPath) -> None:
        """Check an inventory against inventory v1 and report every problem at once.

        Valid: prints "ok: N hosts, M VMs" and any warnings (unknown keys, hosts over capacity), exit 0.

        Invalid: lists every problem with its location, e.g. vms[12].memory_mib or vms.csv row 7, exit 2.
        """
        inv = _load(path).inventory
        extra = f", {len(inv.missing_hosts)} unreachable hosts" if inv.missing_hosts else ""
        console.print(f"ok: {len(inv.hosts)} hosts, {len(inv.vms)} VMs, {len(inv.links)} links{extra}", markup=False)

    inventory_app = typer.Typer(help="Look at an inventory.", no_args_is_help=True)
    app.add_typer(inventory_app, name="inventory")

    @inventory_app.command("show")
    def show(path: InventoryPath,
             as_json: Annotated[bool, typer.Option("--json", help="Print the host and VM tables as JSON.")] = False
             ) -> None:
        """Hosts with used and free CPU, memory and local disk, VM count, state and switch; totals last.

        Capacities include the policy's overcommit; memory capacity excludes reserved_memory_mib.
        """
        loaded = _load(path)
        frames = to_frames(loaded.inventory)
        if as_json:
            doc = {"hosts": json.loads(frames.hosts.reset_index().to_json(orient="records")),
                   "vms": json.loads(frames.vms.reset_index().to_json(orient="records"))}
            typer.echo(json.dumps(doc, indent=1))
            return
        hosts = frames.hosts
        table = Table(title=f"{path}: {len(hosts)} hosts, {len(frames.vms)} VMs", show_footer=True, box=box.SIMPLE_HEAD)
        totals = hosts.sum(numeric_only=True)
        table.add_column("host", footer="total", no_wrap=True)
        table.add_column("state")
        table.add_column("switch")
        table.add_column("NIC\nGb/s", justify="right")
        table.add_column("vCPU\nused/cap", justify="right",
                         footer=f"{totals.vcpus_used:.0f}/{totals.vcpus_capacity:.0f}")
        table.add_column("memory GiB\nused/cap", justify="right",
                         footer=f"{_gib(totals.memory_used_mib)}/{_gib(totals.memory_capacity_mib)}")
        table.add_column("mem\n%", justify="right",
                         footer=f"{100 * totals.memory_used_mib / max(totals.memory_capacity_mib, 1):.0f}")
        table.add_column("mem free\nGiB", justify="right", footer=_gib(totals.memory_free_mib))
        table.add_column("local disk GiB\nused/free", justify="right",
                         footer=f"{totals.local_disk_used_gib:,.0f}/{totals.local_disk_free_gib:,.0f}")
        table.add_column("VMs", justify="right", footer=f"{totals.vm_count:.0f}")
        styles = {"maintenance": "yellow", "down": "red"}
        for name, h in hosts.iterrows():
            used_pct = 100 * h.memory_used_mib / max(h.memory_capacity_mib, 1)
            table.add_row(str(name), f"[{styles.get(h.state, 'green')}]{h.state}[/]", h.switch or "-",
                          f"{h.nic_gbps:g}", f"{h.vcpus_used:.0f}/{h.vcpus_capacity:.0f}",
                          f"{_gib(h.memory_used_mib)}/{_gib(h.memory_capacity_mib)}",
                          f"[{'red' if used_pct > 100 else 'default'}]{used_pct:.0f}[/]", _gib(h.memory_free_mib),
                          f"{h.local_disk_used_gib:,.0f}/{h.local_disk_free_gib:,.0f}", str(h.vm_count))
        # Piped output gets a wide table rather than rich's 80 columns, which would squeeze it unreadable.
        out = console if console.is_terminal else Console(highlight=False, width=160)
        out.print(table)
        for m in loaded.inventory.missing_hosts:  # never shown as empty hosts: they were not read at all
            out.print(f"[red]unreachable[/]: {m.name} ({m.uri or 'no uri'}): {m.reason}")

    @app.command("generate")
    def generate(
        hosts: Annotated[int, typer.Option("--hosts", min=1, help="Number of hosts.")] = 50,
        vms: Annotated[int, typer.Option("--vms", min=0, help="Number of VMs.")] = 600,
        racks: Annotated[int, typer.Option("--racks", min=1, help="Racks: one ToR switch each, uplinked to a "
                                                                  "spine.")] = 4,
        seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same fleet.")] = 0,
        uplink_gbps: Annotated[float, typer.Option("--uplink-gbps", min=0.001,
                                                   help="Speed of each ToR-to-spine uplink, Gbit/s.")] = 100.0,
        memory_used: Annotated[float, typer.Option("--memory-used", min=0.01, max=1.0,
                                                   help="Fraction of host memory the VMs use.")] = 0.65,
        maintenance: Annotated[list[str] | None, typer.Option(
            "--maintenance", help="Put this host in maintenance (repeatable), e.g. r1-h01.")] = None,
        output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")] = None,
    ) -> None:
        """Write a synthetic, realistic inventory v1: Azure VM size mix, BtrPlace dirty-rate profiles.

        Hosts r<rack>-h<NN> behind ToR switches tor-r<rack> (25 or 10 GbE), uplinked to a spine.

        Two shared storages plus some local disks; anti-affinity groups of replicas. Same seed, same fleet.
        """
        if racks > hosts:
            raise UsageError("evac generate", [Problem("--racks", f"{racks} racks for {hosts} hosts: need at most "
                                                                  f"one rack per host")])
        if output is not None:
            check_writable(output, "evac generate -o")  # before generating: a 30,000-VM fleet takes a while
            with err_console.status(f"generating {hosts} hosts, {vms} VMs"):
                inv = generate_fleet(hosts, vms, racks, seed, uplink_gbps=uplink_gbps, memory_used=memory_used,
                                     maintenance=maintenance or ())
        else:
            inv = generate_fleet(hosts, vms, racks, seed, uplink_gbps=uplink_gbps, memory_used=memory_used,
                                 maintenance=maintenance or ())
        unknown = sorted(set(maintenance or ()) - set(inv.host))
        if unknown:
            raise UsageError("evac generate", [Problem("--maintenance", f"no host named {n!r} (hosts are named "
                                                                        f"like {inv.hosts[0].name})")
                                               for n in unknown])
        # Indented when people will read it; compact when big (a 30,000-VM fleet is ~18 MB compact).
        text = json.dumps(inv.to_dict(), indent=1 if vms <= 2000 else None)
        if output is None:
            sys.stdout.write(text + "\n")
        else:
            write_atomic(output, text + "\n", "evac generate -o")
            err_console.print(f"wrote {output}: {len(inv.hosts)} hosts, {len(inv.vms)} VMs, {len(inv.links)} links",
                              markup=False)

    @app.command("schema")
    def schema() -> None:
        """Print the JSON Schema (draft 2020-12) of inventory v1.

        The schema checks each object's fields; evac validate also checks the rules between objects.
        """
        typer.echo(json.dumps(inventory_schema(), indent=1))
