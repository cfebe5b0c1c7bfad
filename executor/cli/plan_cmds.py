"""`evac plan` (make a plan) and `evac check` (verify any plan file against its inventory).

`evac plan INVENTORY --drain HOST … [--drain-label rack=r1] [-o plan.json] [--json]` prints a
summary (waves, makespan, lower bound, gap, solve time, unplaced VMs with reasons; with
--baselines evac side by side with today's tools), exit 1 when some VM cannot move, 2 for unknown
hosts/labels. `evac check [INVENTORY] PLAN`: exit 0 valid, 1 with the violations listed, 2 for a
malformed plan file.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from executor.outputs import check_writable, write_atomic
from planner.duration import DEFAULT_MODEL, DurationModel
from planner.errors import UsageError
from planner.model import Inventory
from planner.plan import Plan, PlanKind, PlanStatus, load_plan

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def _load(path: Path) -> Inventory:
    from planner.inventory import load_inventory

    return load_inventory(path).inventory


class _RichSolverReporter:
    """Shows the solver's best makespan while it works (stderr, so --json output stays clean)."""

    def __init__(self, progress: Progress, task: object) -> None:
        self.progress = progress
        self.task = task

    def solver_progress(self, elapsed_s: float, objective: float, bound: float) -> None:
        self.progress.update(self.task, description=f"solving: best makespan {objective:.1f} s "  # type: ignore[arg-type]
                                                    f"(bound {bound:.1f} s)")


def waves_table(plan: Plan, max_rows: int = 25) -> Table:
    table = Table(title=f"plan: {len(plan.migrations)} migrations in {len(plan.waves)} waves")
    for col in ("wave", "VMs", "start s", "end s", "GiB"):
        table.add_column(col, justify="right" if col != "VMs" else "left")
    items = list(plan.waves.items())
    # long plans: the first waves and the last ones, the middle elided
    shown = [*items[:max_rows - 3], None, *items[-2:]] if len(items) > max_rows else list(items)
    for item in shown:
        if item is None:
            table.add_row("…", f"{len(items) - max_rows + 1} more waves", "", "", "")
            continue
        w, migs = item
        names = ", ".join(m.vm for m in migs[:4]) + (f" +{len(migs) - 4}" if len(migs) > 4 else "")
        gib = sum(m.memory_mib + m.disk_mib for m in migs) / 1024
        table.add_row(str(w), names, f"{min(m.start_s for m in migs):.1f}", f"{max(m.end_s for m in migs):.1f}",
                      f"{gib:.1f}")
    return table


def summary_lines(plan: Plan) -> list[str]:
    lines = [f"status {plan.status.value} ({plan.solver}); makespan {plan.makespan_s:.1f} s; lower bound "
             f"{plan.lower_bound_s:.1f} s; gap {plan.gap:.3f}; solved in {plan.solve_s:.1f} s"]
    if plan.unplaced:
        lines.append(f"{len(plan.unplaced)} VMs cannot move:")
        lines += [f"  {u.vm}: {'; '.join(u.reasons)}" for u in plan.unplaced]
    return lines


def register(app: typer.Typer) -> None:
    """Adds `plan` and `check` to the evac app."""

    @app.command("plan")
    def plan_cmd(
        inventory: Annotated[Path, typer.Argument(help="Inventory v1 (JSON, YAML, CSV).")],
        drain: Annotated[list[str] | None, typer.Option("--drain", help="Host to empty (repeatable).")] = None,
        drain_label: Annotated[list[str] | None, typer.Option(
            "--drain-label", help="Empty every host with this label, key=value (repeatable).")] = None,
        output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the plan here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
        time_limit: Annotated[float, typer.Option(
            "--time-limit", help=("Time limit for the whole planning, seconds: the solvers get what the "
                                  "other steps leave; steps without a solver always finish "
                                  "(docs/planner.md)."))] = 30.0,
        workers: Annotated[int, typer.Option("--workers", help="Solver threads.")] = 2,
        baselines: Annotated[bool, typer.Option("--baselines", help="Compare with today's tools.")] = False,
        greedy: Annotated[bool, typer.Option("--greedy", help=(
            "Greedy placement and schedule only (no CP-SAT): the same plan on every run, as evac whatif "
            "makes it."))] = False,
        target: Annotated[Path | None, typer.Option(
            "--target", help='Reach this placement: JSON {"vm": "host"} or CSV vm,host (a target plan).')] = None,
        model: Annotated[Path | None, typer.Option(
            "--model", help="Duration model file (evac calibrate -o); the plan records it.")] = None,
        site: Annotated[Path | None, typer.Option(
            "--site", help="Site configuration (hosts file) whose `model` key names the model file.")] = None,
    ) -> None:
        """Plan the evacuation of hosts: placement, bandwidth-capped schedule, lower bound.

        Hosts in maintenance are always emptied too. VMs whose host breaks a hard rule (CPU, networks,
        storage, host labels, anti-affinity) are repaired (a repair plan); --target FILE reaches an
        operator's placement (a target plan, with staging hops where needed). Nothing drained and nothing
        broken: "nothing to do", exit 0 (with -o, an empty plan is written). Exit 0 when every VM can move, 1 when some
        cannot (the plan holds what can be done; the summary says why for the rest), 2 for bad input.
        """
        from planner.drain import resolve_drain
        from planner.solve import make_plan

        if time_limit <= 0 or workers < 1:
            raise UsageError("evac plan", [p for p in (
                _problem("--time-limit", "must be > 0") if time_limit <= 0 else None,
                _problem("--workers", "must be >= 1") if workers < 1 else None) if p is not None])
        if output is not None:  # before solving: a plan computed for a file that cannot be written is lost
            check_writable(output, "evac plan -o")
        from executor.cli.calibrate_cmd import chosen_model, with_model

        duration_model, model_source = chosen_model(model, site)
        inv = _load(inventory)
        ds = resolve_drain(inv, drain or [], drain_label or [])
        from executor.cli.reconfigure_cmds import plan_kind, run_reconfiguration, write_nothing_to_do

        kind = plan_kind(inv, ds.hosts, target is not None)
        if kind is None:
            console.print("nothing to do: no host to drain and every VM is on a host that suits it", markup=False)
            if output is not None:  # never leave an older plan at -o for `evac run` to run by mistake
                write_nothing_to_do(inv, inventory, output)
            return
        if kind is not PlanKind.DRAIN:  # repair or target: planner.reconfigure
            run_reconfiguration(inv, inventory, kind, ds.hosts, target_file=target, output=output, as_json=as_json,
                                time_limit=time_limit, workers=workers, model=duration_model,
                                model_source=model_source)
            return
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=err_console, transient=True, disable=as_json) as progress:
            task = progress.add_task(f"planning {len(ds.hosts)} hosts…", total=None)
            plan = make_plan(inv, ds.hosts, time_limit_s=time_limit, workers=workers,
                             reporter=_RichSolverReporter(progress, task), drain_labels=ds.labels,
                             greedy_only=greedy, model=duration_model)
        plan = dataclasses.replace(plan, inventory_path=str(inventory.absolute()))  # so `evac run PLAN` finds it
        plan = with_model(plan, duration_model, model_source)
        if output is not None:
            write_atomic(output, plan.to_json(), "evac plan -o")
        if as_json:
            typer.echo(plan.to_json())
        else:
            console.print(waves_table(plan))
            for line in summary_lines(plan):
                console.print(line, markup=False)
            if output is not None:
                console.print(f"plan written to {output}", markup=False)
        if baselines and not as_json:
            console.print(baselines_table(inv, ds.hosts, plan, duration_model))
        if plan.status is PlanStatus.INFEASIBLE:
            raise typer.Exit(1)

    @app.command("check")
    def check_cmd(
        first: Annotated[Path, typer.Argument(metavar="INVENTORY", help="Inventory v1 the plan was made for "
                                                                        "(or the plan, when it is the only "
                                                                        "argument).")],
        second: Annotated[Path | None, typer.Argument(metavar="PLAN", show_default=False, help=(
            "Plan v1 file; without it the plan's recorded inventory_path is used."))] = None,
    ) -> None:
        """Verify a plan (anyone's) against every rule of plan v1, at every instant.

        `evac check INVENTORY PLAN`, or `evac check PLAN` for a plan that records its inventory_path.
        Exit 0 valid, 1 with the violations listed, 2 for a malformed plan file or a plan made for
        another inventory.
        """
        from planner.checker import check_plan
        from planner.plan_inputs import as_checked, check_plan_matches, inventory_path_for

        if second is None:  # `evac check PLAN`: the plan names its inventory
            plan_file = first
            plan = load_plan(plan_file)
            inventory = inventory_path_for(plan, plan_file, None, "evac check")
            inv = _load(inventory)
        else:
            inventory, plan_file = first, second
            inv = _load(inventory)
            plan = load_plan(plan_file)
        check_plan_matches(plan, inv, plan_file, inventory, require_digest=False)
        plan = as_checked(plan, inv, inventory)  # the file's own digest names the same inventory
        violations = check_plan(inv, plan)
        if not violations:
            console.print(f"ok: {len(plan.migrations)} migrations, makespan {plan.makespan_s:.1f} s, "
                          f"every rule holds", markup=False)
            return
        console.print(f"{len(violations)} violations:", markup=False)
        for v in violations:
            console.print(f"  {v}", markup=False)
        raise typer.Exit(1)


def _problem(where: str, message: str):  # type: ignore[no-untyped-def]
    from planner.errors import Problem

    return Problem(where, message)


# What each comparison respects of the policy's limits, so a faster row is never read as a better plan
# when it got there by taking the whole NIC (KubeVirt and Nova do not cap migration bandwidth).
BASELINE_LIMITS = {
    "sequential": "one at a time, capped (virsh guide loop)",
    "watcher": "chunks of 2, barrier; each at the cap, so up to 2x share on a NIC",
    "kubevirt": "2 out per host, 5 in all, UNCAPPED",
    "nova-evacuate-live": "all at once, UNCAPPED",
}


def baselines_table(inv: Inventory, drained: tuple[str, ...], plan: Plan, model: DurationModel = DEFAULT_MODEL
                    ) -> Table:
    from planner.baselines import run_baselines

    t0 = time.monotonic()
    results = run_baselines(inv, drained, model)
    table = Table(title=f"evac vs today's tools (same duration model; baselines {time.monotonic() - t0:.1f} s)")
    for col in ("plan", "makespan s", "vs evac", "VMs left", "limits respected"):
        table.add_column(col, justify="left" if col in ("plan", "limits respected") else "right")
    share = inv.policy.migration_share
    table.add_row(f"evac ({plan.solver})", f"{plan.makespan_s:.1f}", "1.00", str(len(plan.unplaced)),
                  f"all; bandwidth ≤ {share:g} of every NIC and link")
    for r in results:
        ratio = r.makespan_s / plan.makespan_s if plan.makespan_s > 0 else float("nan")
        table.add_row(r.name, f"{r.makespan_s:.1f}", f"{ratio:.2f}", str(len(r.unplaced)),
                      BASELINE_LIMITS.get(r.name, ""))
    return table
