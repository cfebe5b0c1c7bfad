"""`evac rebalance` and the reconfiguration side of `evac plan` (repair, `--target FILE`).

`evac plan INV` with nothing drained: a repair plan when some VM breaks a hard rule where it is, else
"nothing to do" (exit 0); `--drain H` with misplaced VMs elsewhere: a repair plan that also empties H;
`--target FILE`: a target plan. `evac rebalance INV [--metric …] [--by …] [--target-spread PCT]
[--max-moves K] [--max-gib G] [--min-gain PCT] [--group-by LABEL]` levels utilisation and prints the
balance-vs-cost ladder (spread reachable with 1, 2, 4, 8 … moves, the GiB and minutes each costs) and
the greedy most-loaded → least-loaded baseline beside it. Every plan is written atomically
(`executor.outputs`), checked before the file can be written. Exit 0 done; 1 some VM could not be
placed or the target spread was not reached (the plan holds the best reachable); 2 bad input.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from executor.cli.plan_cmds import console, err_console, summary_lines, waves_table
from executor.outputs import check_writable, write_atomic
from planner.duration import DEFAULT_MODEL, DurationModel
from planner.errors import Problem, UsageError
from planner.model import Inventory
from planner.plan import PlanKind, PlanStatus

if TYPE_CHECKING:  # planner.reconfigure (and OR-Tools) is imported only when a command runs: fast CLI start
    from planner.reconfigure import RebalanceOptions, Reconfiguration


def plan_kind(inventory: Inventory, drained: tuple[str, ...], has_target: bool) -> PlanKind | None:
    """What `evac plan` makes: target, repair (misplaced VMs outside the drain set), drain, or None (nothing)."""
    from planner.repair import misplaced

    if has_target:
        return PlanKind.TARGET
    empty = set(drained)
    if any(inventory.vm[name].host not in empty for name in misplaced(inventory)):
        return PlanKind.REPAIR
    return PlanKind.DRAIN if drained else None


def ladder_table(result: Reconfiguration) -> Table:
    table = Table(title="balance vs cost: the first k moves chosen")
    for col in ("moves", "spread %", "worst group %", "GiB moved", "minutes"):
        table.add_column(col, justify="right")
    for row in result.ladder:
        table.add_row(str(row.moves), f"{row.spread_pct:.1f}", f"{row.worst_group_spread_pct:.1f}",
                      f"{row.moved_gib:.1f}", f"{row.makespan_s / 60:.1f}")
    return table


def report(result: Reconfiguration, output: Path | None, as_json: bool) -> None:
    plan = result.plan
    if output is not None:
        write_atomic(output, plan.to_json(), "-o")
    if as_json:
        typer.echo(plan.to_json())
        return
    console.print(waves_table(plan))
    b = plan.balance
    if b is not None:
        console.print(f"balance ({b.metric} by {b.by}): spread {b.before.spread_pct:.1f}% -> {b.after.spread_pct:.1f}%"
                      f", max {b.before.max_pct:.1f}% -> {b.after.max_pct:.1f}%, std-dev {b.before.stddev_pct:.1f} -> "
                      f"{b.after.stddev_pct:.1f}; {b.moved_gib:.1f} GiB moved", markup=False)
    for line in [*summary_lines(plan), *result.notes]:
        console.print(line, markup=False)
    if output is not None:
        console.print(f"plan written to {output}", markup=False)


def write_nothing_to_do(inv: Inventory, inventory_path: Path, output: Path) -> None:
    """Writes the plan of "nothing to do": a repair plan with no migration (it passes the checker and
    `evac run` of it does nothing), so the file at -o always answers the question just asked."""
    from planner.reconfigure import reconfigure

    plan = reconfigure(inv, PlanKind.REPAIR, time_limit_s=1.0, workers=1, ladder=False).plan
    if plan.migrations or plan.unplaced:  # the caller found nothing to repair; the planner must agree
        raise AssertionError(f"nothing to do, yet the repair plan moves {len(plan.migrations)} VMs")
    plan = dataclasses.replace(plan, inventory_path=str(inventory_path.absolute()))
    write_atomic(output, plan.to_json(), "-o")
    console.print(f"an empty plan written to {output}", markup=False)


def run_reconfiguration(inv: Inventory, inventory_path: Path, kind: PlanKind, drained: tuple[str, ...], *,
                        target_file: Path | None, output: Path | None, as_json: bool, time_limit: float,
                        workers: int, model: DurationModel = DEFAULT_MODEL, model_source: str | None = None) -> None:
    """`evac plan` for a repair or target plan (the output was checked writable by the caller)."""
    from executor.cli.calibrate_cmd import with_model
    from planner.reconfigure import reconfigure
    from planner.reconfigure.target_file import load_target

    target = load_target(target_file, inv) if target_file is not None else None
    result = reconfigure(inv, kind, drained=drained, target=target, time_limit_s=time_limit, workers=workers,
                         model=model)
    result = dataclasses.replace(result, plan=with_model(dataclasses.replace(
        result.plan, inventory_path=str(inventory_path.absolute())), model, model_source))
    report(result, output, as_json)
    if result.plan.status is PlanStatus.INFEASIBLE:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Adds `rebalance` to the evac app."""

    @app.command("rebalance")
    def rebalance_cmd(
        inventory: Annotated[Path, typer.Argument(help="Inventory v1 (JSON, YAML, CSV).")],
        metric: Annotated[str, typer.Option("--metric", help="memory, cpu or both (per host, the higher).")] = "memory",
        by: Annotated[str, typer.Option("--by", help="allocation (what VMs are given) or usage (measured).")] =
        "allocation",
        target_spread: Annotated[float | None, typer.Option(
            "--target-spread", help="Stop once max − min utilisation is at most this, % points.")] = None,
        max_moves: Annotated[int | None, typer.Option("--max-moves", help="At most this many moves.")] = None,
        max_gib: Annotated[float | None, typer.Option("--max-gib", help="At most this many GiB moved.")] = None,
        min_gain: Annotated[float, typer.Option(
            "--min-gain", help="Never a move that lowers the busier of its two hosts by less, % points.")] = 1.0,
        group_by: Annotated[str | None, typer.Option(
            "--group-by", help="Level within each group of hosts sharing this label's value.")] = None,
        drain: Annotated[list[str] | None, typer.Option("--drain", help="Host to empty as well (repeatable).")] = None,
        output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the plan here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
        time_limit: Annotated[float, typer.Option(
            "--time-limit", help="Time limit for the solvers (repair placement, CP-SAT re-timing), s.")] = 30.0,
        workers: Annotated[int, typer.Option("--workers", help="Solver threads.")] = 2,
        baseline: Annotated[bool, typer.Option("--baseline/--no-baseline",
                                               help="Compare with greedy most-loaded → least-loaded.")] = True,
        model: Annotated[Path | None, typer.Option(
            "--model", help="Duration model file (evac calibrate -o); the plan records it.")] = None,
        site: Annotated[Path | None, typer.Option(
            "--site", help="Site configuration (hosts file) whose `model` key names the model file.")] = None,
    ) -> None:
        """Level the load of the hosts with the fewest GiB moved, then the shortest run.

        Prints the plan, the balance before and after, the balance-vs-cost ladder and a greedy baseline.
        Exit 0 done; 1 target spread not reached or a VM that must move cannot (the plan holds the best
        reachable); 2 bad input.
        """
        from planner.balance import By, Metric
        from planner.drain import resolve_drain
        from planner.reconfigure import RebalanceOptions, reconfigure

        problems = []
        if metric not in {m.value for m in Metric}:
            problems.append(Problem("--metric", f"must be memory, cpu or both, got {metric!r}"))
        if by not in {b.value for b in By}:
            problems.append(Problem("--by", f"must be allocation or usage, got {by!r}"))
        for name, value in (("--target-spread", target_spread), ("--max-gib", max_gib), ("--min-gain", min_gain)):
            if value is not None and not value >= 0:
                problems.append(Problem(name, f"must be >= 0, got {value}"))
        if max_moves is not None and max_moves < 0:
            problems.append(Problem("--max-moves", f"must be >= 0, got {max_moves}"))
        if time_limit <= 0:
            problems.append(Problem("--time-limit", "must be > 0"))
        if workers < 1:
            problems.append(Problem("--workers", "must be >= 1"))
        if problems:
            raise UsageError("evac rebalance", problems)
        if output is not None:
            check_writable(output, "evac rebalance -o")
        from executor.cli.calibrate_cmd import chosen_model, with_model
        from planner.inventory import load_inventory

        duration_model, model_source = chosen_model(model, site)
        inv = load_inventory(inventory).inventory
        ds = resolve_drain(inv, drain or [], (), command="evac rebalance")
        if group_by is not None and not any(group_by in h.labels for h in inv.hosts):
            raise UsageError("evac rebalance", [Problem("--group-by", f"no host has label {group_by!r}")])
        options = RebalanceOptions(Metric(metric), By(by), target_spread, max_moves, max_gib, min_gain, group_by)
        with console.status("rebalancing…") if not as_json else _nothing():
            result = reconfigure(inv, PlanKind.REBALANCE, drained=ds.hosts, rebalance_options=options,
                                 time_limit_s=time_limit, workers=workers, model=duration_model)
        result = dataclasses.replace(result, plan=with_model(dataclasses.replace(
            result.plan, inventory_path=str(inventory.absolute())), duration_model, model_source))
        report(result, output, as_json)
        if not as_json:
            if result.ladder:
                console.print(ladder_table(result))
            if baseline:
                console.print(baseline_table(inv, ds.hosts, options, result))
        if result.plan.status is PlanStatus.INFEASIBLE or not result.target_reached:
            raise typer.Exit(1)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def baseline_table(inv: Inventory, drained: tuple[str, ...], options: RebalanceOptions,
                   result: Reconfiguration) -> Table:
    from planner.reconfigure.baseline import most_to_least_rebalance

    base = most_to_least_rebalance(inv, drained, options)
    plan, b = result.plan, result.plan.balance
    assert b is not None
    table = Table(title="evac vs greedy most-loaded → least-loaded (same inventory, same limits)")
    for col in ("plan", "moves", "GiB moved", "spread after %", "std-dev after"):
        table.add_column(col, justify="left" if col == "plan" else "right")
    table.add_row("evac", str(len({m.vm for m in plan.migrations})), f"{b.moved_gib:.1f}", f"{b.after.spread_pct:.1f}",
                  f"{b.after.stddev_pct:.1f}")
    table.add_row("most → least", str(len(base.moves)), f"{base.moved_gib:.1f}", f"{base.after.spread_pct:.1f}",
                  f"{base.after.stddev_pct:.1f}")
    return table


__all__ = ["err_console", "plan_kind", "register", "run_reconfiguration"]
