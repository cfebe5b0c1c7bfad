"""`evac whatif`: compare scenarios (drain, fail, add hosts, policy) and sweep them (each host, each rack, N+1).

`evac whatif INV --scenario S …` evaluates each scenario (planner.whatif) and prints one comparison
table; `--each-host`, `--each-label KEY` and `--host-failures K` build the scenario list for you.
Sweeps run on Dask (a local cluster of one process per core, or `--scheduler tcp://HOST:PORT`),
`--serial` runs them here one after the other. `--json` / `--csv` print the results instead of the
table; `-o FILE` also writes them (JSON, or CSV for a .csv name) atomically.
Exit 0 when every scenario is feasible, 1 when some is not, 2 for bad input, 3 when Dask is unreachable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from executor.outputs import check_writable, write_atomic
from planner.errors import Problem, UsageError
from planner.model import Inventory

# Wide when not on a terminal (CI logs, pipes): a what-if table is read whole, not wrapped to 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, highlight=False)
COMMAND = "evac whatif"
SHOWN_ROWS = 40
WHATIF_FORMAT = "evac-whatif/1"


def results_frame(results: list[Any]) -> pd.DataFrame:
    """The comparison table as a DataFrame (one row per scenario), for --csv and the rich table."""
    return pd.DataFrame([r.row() for r in results])


def results_document(inventory: Path, mode: str, results: list[Any]) -> dict[str, Any]:
    """The --json document; `evac report` reads it back (format evac-whatif/1)."""
    return {"format": WHATIF_FORMAT, "inventory": str(inventory), "mode": mode,
            "scenarios": [r.to_dict() for r in results]}


def comparison_table(results: list[Any], title: str, max_rows: int = SHOWN_ROWS) -> Table:
    table = Table(title=title)
    for col in ("scenario", "feasible", "moved", "makespan s", "bound s", "GiB", "peak NIC", "peak link",
                "no conv.", "load max/min %", "blockers"):
        table.add_column(col, justify="left" if col in ("scenario", "feasible", "blockers") else "right")
    for r in results[:max_rows]:
        moved = f"{r.vms_moved}" + (f" +{r.vms_restarted} restarted" if r.hosts_failed else "")
        blockers = "; ".join(f"{b.reason} ({b.vms} VM{'s' if b.vms != 1 else ''})" for b in r.blockers[:2])
        table.add_row(r.scenario, "yes" if r.feasible else "[red]NO[/red]", moved,
                      f"{r.makespan_s:.1f}" if r.plan is not None else "-",
                      f"{r.lower_bound_s:.1f}" if r.plan is not None else "-", f"{r.gib_moved:.0f}",
                      f"{r.peak_nic_utilisation:.2f}", f"{r.peak_link_utilisation:.2f}", str(len(r.not_converging)),
                      f"{r.load_max_pct:.0f}/{r.load_min_pct:.0f}", blockers)
    if len(results) > max_rows:
        table.add_row("…", f"{len(results) - max_rows} more", "", "", "", "", "", "", "", "",
                      "(--json / --csv for every row)")
    return table


def failure_summary(results: list[Any]) -> list[str]:
    """N+1: the host sets whose loss strands VMs, most stranded first."""
    bad = sorted((r for r in results if r.vms_stranded), key=lambda r: (-r.vms_stranded, r.scenario))
    if not bad:
        return [f"every one of the {len(results)} failure sets restarts all its VMs elsewhere"]
    lines = [f"{len(bad)} of {len(results)} failure sets strand VMs "
             f"({sum(r.vms_stranded for r in bad)} VMs in all):"]
    lines += [f"  {r.scenario.removeprefix('fail=')}: {r.vms_stranded} stranded — "
              + "; ".join(f"{b.reason} ({b.vms})" for b in r.blockers[:2]) for r in bad[:SHOWN_ROWS]]
    if len(bad) > SHOWN_ROWS:
        lines.append(f"  … {len(bad) - SHOWN_ROWS} more")
    return lines


def _load(path: Path) -> Inventory:
    from planner.inventory import load_inventory

    return load_inventory(path).inventory


def register(app: typer.Typer) -> None:
    """Adds `whatif` to the evac app."""

    @app.command("whatif")
    def whatif_cmd(
        inventory: Annotated[Path, typer.Argument(help="Inventory v1 (JSON, YAML, CSV).")],
        scenario: Annotated[list[str] | None, typer.Option(
            "--scenario", "-s", help="A scenario (repeatable): drain=H1,H2 · drain-label=rack=r3 · fail=H · "
                                     "add-hosts=N:cpus=64,memory_gib=512,nic_gbps=25,rack=r5 · migration-share=0.3 · "
                                     "nic-gbps=25 · policy.KEY=VALUE; combine parts with +.")] = None,
        each_host: Annotated[bool, typer.Option("--each-host", help="Sweep: can each host be emptied?")] = False,
        each_label: Annotated[str | None, typer.Option(
            "--each-label", help="Sweep: can each value of this host label (e.g. rack) be emptied?")] = None,
        host_failures: Annotated[int | None, typer.Option(
            "--host-failures", help="N+K: for each set of K hosts, could their VMs restart elsewhere?")] = None,
        serial: Annotated[bool, typer.Option("--serial", help="Run the scenarios here, one by one (no Dask).")] = False,
        scheduler: Annotated[str | None, typer.Option(
            "--scheduler", help="A running Dask scheduler, tcp://HOST:PORT (default: a local cluster).")] = None,
        processes: Annotated[int | None, typer.Option(
            "--processes", help="Worker processes of the local Dask cluster (default: one per core).")] = None,
        cp_sat: Annotated[bool, typer.Option(
            "--cp-sat", help="Solve each scenario with CP-SAT within --time-limit (default: the greedy "
                             "planner, the same answer every run, as evac plan --greedy).")] = False,
        time_limit: Annotated[float, typer.Option(
            "--time-limit", help="Per-scenario time limit with --cp-sat, seconds.")] = 10.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
        as_csv: Annotated[bool, typer.Option("--csv", help="Print the comparison table as CSV.")] = False,
        model: Annotated[Path | None, typer.Option(
            "--model", help="Duration model file (evac calibrate -o) every scenario is planned with.")] = None,
        output: Annotated[Path | None, typer.Option(
            "-o", "--output", help="Write the results here (JSON; CSV when the name ends in .csv).")] = None,
    ) -> None:
        """Compare what-if scenarios, or sweep them: can each host / rack be emptied, does the fleet survive N+K?

        One row per scenario: feasible or not with ranked blockers, makespan and lower bound, GiB moved,
        peak utilisation of NICs and links, VMs that will not converge, max/min host load after.
        Exit 0 all feasible, 1 some scenario infeasible, 2 bad input, 3 Dask unreachable.
        """
        from executor.whatif_runner import check_scheduler, run_dask, run_serial
        from planner.whatif import Settings, parse_scenarios, prepare
        from planner.whatif import each_host as host_sweep
        from planner.whatif import each_label as label_sweep
        from planner.whatif import host_failures as failure_sweep

        modes = [m for m, on in (("--scenario", bool(scenario)), ("--each-host", each_host),
                                 ("--each-label", each_label is not None),
                                 ("--host-failures", host_failures is not None)) if on]
        problems = []
        if len(modes) != 1:
            problems.append(Problem("arguments", "give exactly one of --scenario, --each-host, --each-label, "
                                                 f"--host-failures (got {', '.join(modes) or 'none'})"))
        if time_limit <= 0:
            problems.append(Problem("--time-limit", f"{time_limit:g} must be > 0"))
        if processes is not None and processes < 1:
            problems.append(Problem("--processes", f"{processes} must be >= 1"))
        if as_json and as_csv:
            problems.append(Problem("--json/--csv", "choose one"))
        if serial and scheduler is not None:
            problems.append(Problem("--serial/--scheduler", "choose one"))
        if scheduler is not None:
            try:
                check_scheduler(scheduler)
            except UsageError as e:
                problems += e.problems
        parsed = parse_scenarios(scenario, problems) if scenario else []
        if problems and not scenario:
            raise UsageError(COMMAND, problems)
        inv = _load(inventory)
        if scenario:
            try:  # every unknown host / label of every scenario, with the parse problems, before any work
                prepare(inv, parsed)
            except UsageError as e:
                problems += e.problems
            if problems:
                raise UsageError(COMMAND, problems)
            mode = "scenarios"
        elif each_host:
            parsed, mode = host_sweep(inv), "each-host"
        elif each_label is not None:
            parsed, mode = label_sweep(inv, each_label), f"each-label {each_label}"
        else:
            assert host_failures is not None
            parsed, mode = failure_sweep(inv, host_failures), f"host-failures {host_failures}"
        if output is not None:
            check_writable(output, "evac whatif -o")
        from executor.cli.calibrate_cmd import chosen_model

        settings = Settings(greedy=not cp_sat, time_limit_s=time_limit, workers=1, model=chosen_model(model)[0])
        quiet = as_json or as_csv
        on_dask = not serial and (len(parsed) > 1 or scheduler is not None)
        where = "serial" if not on_dask else (scheduler or "local Dask cluster")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True, disable=quiet) as progress:
            task = progress.add_task(f"{mode} ({where})", total=len(parsed))

            def done(_r: Any) -> None:
                progress.advance(task)

            if on_dask:
                results = run_dask(inv, parsed, settings, scheduler=scheduler, processes=processes, done=done)
            else:
                results = run_serial(inv, parsed, settings, done=done)
        document = results_document(inventory, mode, results)
        frame = results_frame(results)
        if output is not None:
            data = frame.to_csv(index=False) if output.suffix.lower() == ".csv" else json.dumps(document, indent=1)
            write_atomic(output, data, "evac whatif -o")
        if as_json:
            typer.echo(json.dumps(document, indent=1))
        elif as_csv:
            typer.echo(frame.to_csv(index=False), nl=False)
        else:
            console.print(comparison_table(results, f"what if — {mode}: {len(results)} scenarios ({where})"))
            if host_failures is not None:
                for line in failure_summary(results):
                    console.print(line, markup=False)
            feasible = sum(r.feasible for r in results)
            console.print(f"{feasible} of {len(results)} scenarios feasible", markup=False)
            if output is not None:
                console.print(f"results written to {output}", markup=False)
        if not all(r.feasible for r in results):
            raise typer.Exit(1)
