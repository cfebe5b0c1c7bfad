"""`evac return JOURNAL [-o plan.json] [-i INVENTORY]`: after maintenance, every VM a finished run moved goes
back to the host it came from (a plan of kind `return`, run with `evac run`).

What the run did comes from its journal (`Journal.records`: each VM's first source and where its last hop
took it, its state); only a run that finished is read (its last `run_started` has its `run_finished`, no VM
in flight). The fleet as it is now is `-i INVENTORY` (say, a fresh `evac collect`), else it is read live:
the run's inventory (the plan's `inventory_path`, checked against the digest the journal recorded) gives
each host's URI; the collector lists every host's domains and `return_home.fleet_now` puts each VM where
it was found. That inventory is written beside the plan (`<plan>.inventory.json`, the plan's
`inventory_path`) so `evac run` runs the plan against what was seen.

Each VM not sent home is printed with the reason (gone, moved since, its home refuses it now). Exit 0 a
plan (or "nothing to do"); 1 a VM that must move (misplaced) cannot; 2 bad input (not a journal, a run not
finished, no inventory to read), nothing written; 3 no host could be read.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from executor.cli.plan_cmds import console, err_console
from executor.cli.reconfigure_cmds import report
from executor.outputs import check_writable, write_atomic
from planner.errors import EnvironmentProblem, Problem, UsageError
from planner.model import Inventory
from planner.plan import PlanStatus

if TYPE_CHECKING:
    from executor.journal import Journal
    from planner.plan import Plan
    from planner.reconfigure.return_home import Trip

COMMAND = "evac return"


@dataclass(frozen=True)
class FinishedRun:
    """What `evac return` needs from a journal: the trips of its finished run, its plan, its inventory's digest."""

    trips: dict[str, Trip]
    plan: Plan
    inventory_sha256: str


def run_finished(journal: Journal) -> str | None:
    """Why the journal's last run is not a finished one, or None when it finished."""
    marks = [e for e in journal.events() if e["kind"] in ("run_started", "run_finished")]
    if not marks:
        return "it records no run of the plan (no run_started)"
    if marks[-1]["kind"] != "run_finished":
        return "its last run did not finish (resume it with `evac run PLAN --resume` first)"
    flying = journal.in_flight()
    if flying:
        return f"VMs still in flight: {', '.join(sorted(flying)[:10])} (resume the run with --resume first)"
    return None


def read_run(path: Path) -> FinishedRun:
    """The journal's finished run; exit 2 for anything else (not a journal, empty, damaged, unfinished)."""
    from executor.journal import Journal
    from planner.reconfigure.return_home import homes_from_records

    journal = Journal.read(path)
    try:
        why = run_finished(journal)
        if why is not None:
            raise UsageError(COMMAND, [Problem(f"journal {path}", why)])
        return FinishedRun(homes_from_records(journal.records()), journal.plan, journal.runs()[-1]["inventory_sha256"])
    finally:
        journal.close()


def run_inventory(run: FinishedRun, path: Path) -> Inventory:
    """The inventory the run was made for (by the plan's `inventory_path`), checked against the journal's digest."""
    from planner.inventory import load_inventory
    from planner.plan_inputs import digest_matches, inventory_path_for

    plan = run.plan
    try:
        inv_path = inventory_path_for(plan, path, None, COMMAND)
    except UsageError as e:
        raise UsageError(COMMAND, [Problem(f"journal {path}", f"{p.message}; or give -i INVENTORY (the fleet now, "
                                                              "e.g. from `evac collect`)")
                                   for p in e.problems]) from None
    inv = load_inventory(inv_path).inventory
    recorded = run.inventory_sha256
    if not (inv.sha256 == recorded or digest_matches(plan, inv, inv_path)):
        raise UsageError(COMMAND, [Problem(str(inv_path), f"is not the inventory the run in {path} used (digest "
                                                          f"{recorded[:12]}…): give -i INVENTORY")])
    missing = [h.name for h in inv.hosts if not h.uri]
    if missing:
        raise UsageError(COMMAND, [Problem(str(inv_path), f"hosts without a libvirt uri, which cannot be read live: "
                                                          f"{', '.join(missing[:10])}; give -i INVENTORY")])
    return inv


def read_live(inventory: Inventory, drained: tuple[str, ...], timeout_s: float) -> Inventory:
    """The run's inventory with every VM where the hosts' domain lists say it is now (module docstring)."""
    from executor.collector import collect
    from planner.reconfigure.return_home import fleet_now

    name_of = {h.uri: h.name for h in inventory.hosts}
    with console.status("reading the hosts…"):
        result = collect([h.uri for h in inventory.hosts if h.uri], timeout_s=timeout_s, sample_s=0.0)
    if not result.inventory.hosts:
        raise EnvironmentProblem(f"{COMMAND}: no host could be read: "
                                 + "; ".join(str(f) for f in result.failures[:5]))
    for f in result.failures:
        console.print(f"host {name_of.get(f.uri, f.uri)} not read ({f.code}: {f.reason}): counted as down",
                      markup=False)
    seen_on = {h.name: name_of[h.uri] for h in result.inventory.hosts if h.uri in name_of}
    where, newcomers = {}, []
    for v in result.inventory.vms:
        host = seen_on.get(v.host)
        if host is None:
            continue
        if v.name in inventory.vm:
            where[v.name] = host
        else:
            newcomers.append(dataclasses.replace(v, host=host))
    unread = {name_of[f.uri] for f in result.failures if f.uri in name_of}
    return fleet_now(inventory, where, unread, maintenance_over=drained, newcomers=newcomers)


def register(app: typer.Typer) -> None:
    """Adds `evac return` to the evac app."""

    @app.command("return")
    def return_cmd(
        journal_path: Annotated[Path, typer.Argument(metavar="JOURNAL", help="the journal of a finished run")],
        output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the plan here.")] = None,
        inventory: Annotated[Path | None, typer.Option(
            "-i", "--inventory", help="The fleet now (default: read live from the run's hosts).")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
        time_limit: Annotated[float, typer.Option("--time-limit", help="Time limit for the solvers, s.")] = 30.0,
        workers: Annotated[int, typer.Option("--workers", help="Solver threads.")] = 2,
        timeout: Annotated[float, typer.Option("--timeout", help="Seconds to connect to one host (live).")] = 15.0,
    ) -> None:
        """Send every VM a finished run moved back to the host it came from (a plan of kind return).

        VMs gone, moved since, or whose home cannot take them now are skipped, each with its reason.
        Exit 0 a plan or nothing to do; 1 a VM that must move cannot; 2 bad input; 3 no host readable.
        """
        from planner.inventory import load_inventory
        from planner.reconfigure.return_home import plan_return

        if output is not None:
            check_writable(output, f"{COMMAND} -o")
        run = read_run(journal_path)
        if not run.trips:
            console.print(f"nothing to do: the run in {journal_path} moved no VM to completion", markup=False)
            return
        say = err_console if as_json else console  # --json: stdout holds the plan only
        inv_path: Path | None = inventory
        if inventory is not None:
            inv = load_inventory(inventory).inventory
        else:
            run_inv = run_inventory(run, journal_path)
            if output is not None:
                inv_path = output.with_name(output.name.removesuffix(".json") + ".inventory.json")
                check_writable(inv_path, f"{COMMAND} (live inventory)")
            inv = read_live(run_inv, run.plan.drained, timeout)
        with say.status("planning the return…"):
            result = plan_return(inv, run.trips, time_limit_s=time_limit, workers=workers)
        for name, why in sorted(result.skipped.items()):
            say.print(f"{name}: not sent home: {why}", markup=False)
        plan = result.plan
        if not plan.migrations and not plan.unplaced:
            say.print("nothing to do: no VM of the run can go home", markup=False)
            return
        if inventory is None and inv_path is not None:
            write_atomic(inv_path, json.dumps(inv.to_dict(), indent=2) + "\n", f"{COMMAND} (live inventory)")
            say.print(f"the fleet as read live: {inv_path}", markup=False)
        elif inventory is None:
            say.print("the fleet was read live and is not saved without -o: `evac run` needs -i", markup=False)
        if inv_path is not None:
            plan = dataclasses.replace(plan, inventory_path=str(inv_path.absolute()))
        report(dataclasses.replace(result, plan=plan), output, as_json)
        if result.plan.status is PlanStatus.INFEASIBLE:
            raise typer.Exit(1)


__all__ = ["register", "run_finished"]
