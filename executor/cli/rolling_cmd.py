"""`evac rolling INV --group-by LABEL | --max-hosts N [--maintenance-min M] [-o DIR] [--json]`: a rolling maintenance.

Rounds of hosts emptied together (planner.whatif.rolling): with `--group-by rack` a round is a rack, or
fewer hosts when a whole rack cannot be emptied at once (said so); with `--max-hosts N` up to N hosts per
round, packed greedily so each drain is feasible; both together: racks split into rounds of at most N.
Each round: a drain plan, the maintenance window, a return plan; one timeline for the whole roll, printed
as a table with each round's drain and return times and the total.

`-o DIR` writes, each file atomically, for `evac run` to run round by round:
  round-01-drain.json, round-01-drained.inventory.json (the fleet as the drain leaves it, which the return
  plan names), round-01-return.json, …, and rolling.json (the summary `evac report rolling.json --html`
  draws), last. A drain planned on a fleet that an earlier return did not fully restore names its own
  predicted inventory, round-NN-start.inventory.json. Nothing is written on bad input.
Exit 0 every host rolled and every VM back home; 1 some host cannot be emptied or some VM cannot return;
2 bad input.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from executor.outputs import check_writable_dir, write_atomic
from planner.errors import Problem, UsageError
from planner.model import Inventory
from planner.report.rolling import clock

if TYPE_CHECKING:
    from planner.whatif.rolling import Roll

console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, highlight=False)
COMMAND = "evac rolling"
SUMMARY_FILE = "rolling.json"


def rounds_table(document: dict[str, Any]) -> Table:
    """The roll as a table, one row per round, from the report layer's frame."""
    from planner.report import roll_rounds

    frame = roll_rounds(document)
    table = Table(title=f"rolling maintenance ({document['mode']}): {len(frame)} rounds, "
                        f"{clock(document['total_s'])} in all")
    for col in ("round", "group", "hosts", "VMs", "drain s", "maint. min", "return s", "start", "end", "ok"):
        table.add_column(col, justify="left" if col in ("group", "hosts", "ok") else "right")
    for r, row in zip(document["rounds"], frame.to_dict("records"), strict=True):
        names = ", ".join(r["hosts"][:3]) + (f" +{len(r['hosts']) - 3}" if len(r["hosts"]) > 3 else "")
        table.add_row(str(row["round"]), row["group"] or "-", f"{row['hosts']}: {names}", str(row["vms"]),
                      f"{row['drain_s']:.1f}", f"{row['maintenance_s'] / 60:g}", f"{row['return_s']:.1f}",
                      clock(row["start_s"]), clock(row["end_s"]), "yes" if row["feasible"] else "[red]NO[/red]")
    table.add_row("total", "", f"{sum(len(r['hosts']) for r in document['rounds'])}",
                  str(sum(r["vms_drained"] for r in document["rounds"])), f"{document['drain_s']:.1f}",
                  f"{sum(r['maintenance_s'] for r in document['rounds']) / 60:g}", f"{document['return_s']:.1f}",
                  "", clock(document["total_s"]), "yes" if document["feasible"] else "[red]NO[/red]")
    return table


def roll_files(roll: Roll, inventory: Inventory, inventory_path: Path) -> list[tuple[str, str]]:
    """(file name, text) of everything `-o DIR` holds, rolling.json last. Each plan names the inventory it
    was made on: the input file (absolute) when it is that fleet, else a predicted inventory beside it."""
    from planner.whatif.rolling import drain_file, inventory_file, return_file

    out: list[tuple[str, str]] = []
    for r in roll.rounds:
        start = str(inventory_path.absolute())
        if r.start_inventory.sha256 != inventory.sha256:
            start = inventory_file(r.number, "start")
            out.append((start, json.dumps(r.start_inventory.to_dict(), indent=1)))
        drained = inventory_file(r.number, "drained")
        out.append((drain_file(r.number), dataclasses.replace(r.drain, inventory_path=start).to_json()))
        out.append((drained, json.dumps(r.drained_inventory.to_dict(), indent=1)))
        out.append((return_file(r.number), dataclasses.replace(r.back, inventory_path=drained).to_json()))
    out.append((SUMMARY_FILE, json.dumps(roll_document(roll, inventory_path), indent=1)))
    return out


def roll_document(roll: Roll, inventory_path: Path) -> dict[str, Any]:
    return {**roll.to_dict(), "inventory": str(inventory_path)}


def register(app: typer.Typer) -> None:
    """Adds `rolling` to the evac app."""

    @app.command("rolling")
    def rolling_cmd(
        inventory: Annotated[Path, typer.Argument(help="Inventory v1 (JSON, YAML, CSV).")],
        group_by: Annotated[str | None, typer.Option(
            "--group-by", help="One round per value of this host label (e.g. rack), split when it cannot be "
                               "emptied at once.")] = None,
        max_hosts: Annotated[int | None, typer.Option(
            "--max-hosts", help="At most this many hosts per round, packed so each drain is feasible.")] = None,
        maintenance_min: Annotated[float, typer.Option(
            "--maintenance-min", help="Minutes each round's hosts stay empty (patching, reboot).")] = 30.0,
        output: Annotated[Path | None, typer.Option(
            "-o", "--output", help="Write every round's drain and return plan and rolling.json to this folder.")]
        = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the roll as JSON (rolling.json).")] = False,
    ) -> None:
        """Rolling maintenance: rounds of hosts emptied together, each drained, maintained and brought back.

        Like Ganeti hroller, and says how long the roll takes: every round's drain and return is planned
        and timed. Exit 0 every host rolled and every VM home; 1 some host cannot be emptied or some VM
        cannot return; 2 bad input.
        """
        from planner.inventory import load_inventory
        from planner.whatif.rolling import plan_roll

        problems = []
        if group_by is None and max_hosts is None:
            problems.append(Problem("--group-by/--max-hosts", "give one of them (or both: rounds of at most N "
                                                              "hosts of one group)"))
        if group_by is not None and not group_by.strip():
            problems.append(Problem("--group-by", "empty label name"))
        if output is not None:
            try:
                check_writable_dir(output, f"{COMMAND} -o")
            except UsageError as e:
                problems += e.problems
        if problems:
            raise UsageError(COMMAND, problems)
        inv = load_inventory(inventory).inventory
        if group_by is not None and not any(group_by in h.labels for h in inv.hosts):
            keys = sorted({k for h in inv.hosts for k in h.labels})
            raise UsageError(COMMAND, [Problem("--group-by", f"no host has label {group_by!r}; labels: "
                                                             f"{', '.join(keys) or 'none'}")])
        with err_console.status("planning the roll…") if not as_json else contextlib.nullcontext() as status:
            def planned(r: Any) -> None:
                if status is not None:
                    status.update(f"planning the roll… round {r.number} ({r.group or len(r.hosts)}) planned")

            roll = plan_roll(inv, group_by=group_by, max_hosts=max_hosts, maintenance_s=maintenance_min * 60,
                             on_round=planned)
        document = roll_document(roll, inventory)
        if output is not None:
            output.mkdir(parents=True, exist_ok=True)
            for name, text in roll_files(roll, inv, inventory):
                write_atomic(output / name, text, f"{COMMAND} -o")
        if as_json:
            typer.echo(json.dumps(document, indent=1))
        else:
            console.print(rounds_table(document))
            console.print(f"the roll takes {clock(roll.total_s)} ({roll.total_s / 3600:.2f} h): {len(roll.rounds)} "
                          f"rounds, drains {document['drain_s'] / 60:.1f} min, maintenance "
                          f"{len(roll.rounds) * maintenance_min:g} min, returns {document['return_s'] / 60:.1f} min",
                          markup=False)
            for r in roll.rounds:
                for note in r.notes:
                    console.print(f"round {r.number}: {note}", markup=False)
            for note in roll.notes:
                console.print(note, markup=False)
            for u in roll.unrollable:
                console.print(f"cannot be emptied, not rolled: {u.host}: {u.reason()}", markup=False)
            if output is not None and roll.rounds:
                drain, back = (shlex.quote(str(output / f"round-01-{k}.json")) for k in ("drain", "return"))
                console.print(f"plans written to {output}: run round by round, `evac run {drain}`,"
                              f" maintenance, `evac run {back}`, then round 02 …", markup=False)
        if not roll.feasible:
            raise typer.Exit(1)


__all__ = ["register", "roll_files", "rounds_table"]
