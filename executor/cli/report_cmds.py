"""`evac report PLAN [-i INV] [--journal J] --html out.html`: one self-contained HTML page.

PLAN is a plan v1 file (summary, Gantt by host and by wave, bandwidth per NIC and link against the
cap, host load before/after, blockers; planned against executed with `--journal`, read read-only)
or the JSON result of `evac whatif -o result.json` (its comparison table and timelines), or the
`rolling.json` of `evac rolling -o DIR` (its rounds, the roll's timeline, the migrations in flight from
the round plans beside it, the hosts not rolled). The page
embeds plotly's JavaScript: it opens with no network. Written atomically (executor.outputs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from executor.outputs import check_writable, write_atomic
from planner.errors import PlanFileError, Problem, UsageError

console = Console(highlight=False)
COMMAND = "evac report"


def _whatif_document(doc: Any, source: str) -> dict[str, Any] | None:
    """The document when it is an `evac whatif` result (checked), None when it is not one."""
    from executor.cli.whatif_cmds import WHATIF_FORMAT

    if not isinstance(doc, dict) or doc.get("format") != WHATIF_FORMAT:
        return None
    problems = []
    scenarios = doc.get("scenarios")
    if not isinstance(scenarios, list):
        problems.append(Problem("scenarios", "missing or not a list"))
    else:
        for i, s in enumerate(scenarios):
            if not isinstance(s, dict):
                problems.append(Problem(f"scenarios[{i}]", "not an object"))
                continue
            for key, kind in (("scenario", str), ("feasible", bool), ("makespan_s", (int, float)),
                              ("blockers", list)):
                if not isinstance(s.get(key), kind):
                    problems.append(Problem(f"scenarios[{i}].{key}", "missing or of the wrong type"))
    if problems:
        raise PlanFileError(source, problems)
    return doc


def _rolling_plans(document: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The round plans named by a rolling.json that are in its folder (a malformed one is exit 2)."""
    from planner.plan import load_plan

    names = {str(r.get(k)) for r in document["rounds"] for k in ("drain_plan", "return_plan")}
    return {n: load_plan(folder / n) for n in sorted(names) if Path(n).name == n and (folder / n).is_file()}


def executed_rows(journal_path: Path, plan: Any) -> list[Any]:
    """The journal's per-VM outcome as report rows, in seconds since the journal's first run started.

    A simulated run (`evac run --simulate`, `evac demo`) runs faster than the plan's clock; its times
    are scaled back by the run's own ratio (run-clock makespan recorded at `run_finished` over the
    wall time between `run_started` and `run_finished`), so planned and executed share one axis.
    """
    from executor.journal import Journal, plan_digest
    from planner.report import ExecutedRow

    journal = Journal.read(journal_path)
    try:
        if plan_digest(journal.plan) != plan_digest(plan):
            raise UsageError(COMMAND, [Problem("--journal", f"{journal_path} records a run of another plan")])
        started = journal.events("run_started")
        finished = journal.events("run_finished")
        runs = journal.runs()
        t0 = float(started[0]["at"]) if started else float(runs[0]["started_at"]) if runs else 0.0
        scale = 1.0
        if journal.flags().get("simulated") and started and finished:
            wall = float(finished[-1]["at"]) - float(started[-1]["at"])
            if wall > 0 and float(finished[-1].get("makespan_s", 0.0)) > 0:
                scale = float(finished[-1]["makespan_s"]) / wall
        return [ExecutedRow(r.vm, r.state.value, r.attempts,
                            None if r.started_at is None else (r.started_at - t0) * scale,
                            None if r.ended_at is None else (r.ended_at - t0) * scale, r.error)
                for r in journal.records()]
    finally:
        journal.close()


def register(app: typer.Typer) -> None:
    """Adds `report` to the evac app."""

    @app.command("report")
    def report_cmd(
        plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help=(
            "Plan v1 file, the JSON result of evac whatif -o, or rolling.json of evac rolling -o."))],
        html_out: Annotated[Path, typer.Option("--html", help="Write the HTML page here.")],
        inventory: Annotated[Path | None, typer.Option(
            "-i", "--inventory", help="Inventory the plan was made for (default: the plan's inventory_path).")] = None,
        journal: Annotated[Path | None, typer.Option(
            "--journal", help="Journal of a run of this plan: planned against executed.")] = None,
    ) -> None:
        """Write one self-contained HTML report (charts embedded, no network needed to view it)."""
        from executor.html_report import plan_page, rolling_page, whatif_page
        from planner.inventory import load_inventory
        from planner.plan import plan_from_dict
        from planner.plan_inputs import check_plan_matches, inventory_path_for

        check_writable(html_out, "evac report --html")
        try:
            doc = json.loads(plan_file.read_text())
        except OSError as e:
            raise UsageError(COMMAND, [Problem(str(plan_file), f"cannot read: {e.strerror or e}")]) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PlanFileError(str(plan_file), [Problem("", f"invalid JSON: {e}")]) from None
        from planner.whatif.rolling import ROLLING_FORMAT, document_problems

        whatif = _whatif_document(doc, str(plan_file))
        if isinstance(doc, dict) and doc.get("format") == ROLLING_FORMAT:
            problems = document_problems(doc)
            if problems:
                raise PlanFileError(str(plan_file), problems)
            if journal is not None or inventory is not None:
                raise UsageError(COMMAND, [Problem("--journal/--inventory",
                                                   "apply to a plan, not to a rolling result")])
            page = rolling_page(doc, _rolling_plans(doc, plan_file.parent),
                                title=f"evac rolling maintenance report: {plan_file.name}")
        elif whatif is not None:
            if journal is not None or inventory is not None:
                raise UsageError(COMMAND, [Problem("--journal/--inventory",
                                                   "apply to a plan, not to a what-if result")])
            page = whatif_page(whatif, title=f"evac what-if report: {plan_file.name}")
        else:
            plan = plan_from_dict(doc, str(plan_file))
            inv = None
            if inventory is not None or plan.inventory_path is not None:
                inv_path = inventory_path_for(plan, plan_file, inventory, COMMAND)
                inv = load_inventory(inv_path).inventory
                check_plan_matches(plan, inv, plan_file, inv_path)
            executed = executed_rows(journal, plan) if journal is not None else None
            page = plan_page(plan, inv, executed, title=f"evac plan report: {plan_file.name}")
        write_atomic(html_out, page, "evac report --html")
        console.print(f"report written to {html_out}", markup=False)
