"""`evac calibrate JOURNAL … [-o model.json] [--json]`: fit the duration model to finished runs.

Reads every journal's `migration_measured` events (executor.runner writes one per migration that
ended done: docs/calibrate.md), fits planner.calibrate's constants, prints them and each migration's
residual (measured vs predicted before and after), and writes the model file (`evac plan --model`).
Migrations that were retried or escalated are left out: they measure the fault, not the model.
Bad input (an unreadable or foreign journal, one that records no measured migration, a bad base
model): one message naming every problem, exit 2, and no model file written.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from executor.outputs import check_writable, write_atomic
from planner.calibrate import Fit, Sample, fit
from planner.duration import DEFAULT_MODEL, DurationModel, load_model, model_constants, model_document
from planner.errors import InputError, Problem, UsageError
from planner.plan import Plan

console = Console(highlight=False)

_NUMBERS = ("memory_mib", "disk_mib", "dirty_rate_mibs", "bandwidth_mibs", "max_downtime_ms", "dispatched_s",
            "ended_s")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))


def journal_samples(path: Path, problems: list[Problem]) -> list[Sample]:
    """The journal's measured migrations, first attempts without escalation; problems named by journal."""
    from executor.journal import Journal

    try:
        journal = Journal.read(path)
    except InputError as err:
        problems += [Problem(f"{path}{': ' + p.where if p.where else ''}", p.message) for p in err.problems]
        return []
    try:
        events = journal.events("migration_measured")
        planned = {(m.vm, m.hop): m.duration_s for m in journal.plan.migrations}
    finally:
        journal.close()
    out: list[Sample] = []
    for i, e in enumerate(events):
        bad = [k for k in _NUMBERS if not _number(e.get(k))]
        if bad or not isinstance(e.get("vm"), str):
            problems.append(Problem(f"{path}: migration_measured event {i + 1}",
                                    f"malformed: {', '.join(bad) or 'vm'} missing or not a number"))
            continue
        if e.get("attempt") != 1 or e.get("escalations"):
            continue
        hop = int(e.get("hop", 0)) if _number(e.get("hop")) else 0
        out.append(Sample(
            source=path.name, vm=e["vm"], memory_mib=float(e["memory_mib"]), disk_mib=float(e["disk_mib"]),
            dirty_rate_mibs=float(e["dirty_rate_mibs"]), bandwidth_mibs=float(e["bandwidth_mibs"]),
            max_downtime_ms=float(e["max_downtime_ms"]), live=bool(e.get("live", True)),
            auto_converge=bool(e.get("auto_converge", False)),
            duration_s=float(e["ended_s"]) - float(e["dispatched_s"]),
            transferred_mib=float(e["transferred_mib"]) if _number(e.get("transferred_mib")) else None,
            downtime_ms=float(e["downtime_ms"]) if _number(e.get("downtime_ms")) else None,
            planned_s=planned.get((e["vm"], hop)), hop=hop))
    if not events:
        problems.append(Problem(str(path), "records no measured migration (no migration finished, or the run "
                                           "was made by an evac that did not record job statistics)"))
    elif not out:
        problems.append(Problem(str(path), "every measured migration was retried or escalated: nothing to fit"))
    return out


def calibrate(journals: list[Path], base: DurationModel = DEFAULT_MODEL) -> Fit:
    """The fit of every journal's migrations; `UsageError` naming every problem of every journal."""
    problems: list[Problem] = []
    samples = [s for path in journals for s in journal_samples(path, problems)]
    if problems:
        raise UsageError("evac calibrate", problems)
    return fit(samples, base)


def fit_to_dict(result: Fit) -> dict[str, Any]:
    return {"constants": model_constants(result.model), "base": model_constants(result.base), **result.summary(),
            "residuals": [{"source": r.sample.source, "vm": r.sample.vm, "hop": r.sample.hop,
                           "measured_s": round(r.sample.duration_s, 3), "before_s": round(r.before_s, 3),
                           "after_s": round(r.after_s, 3), "before_error": round(r.before_error, 4),
                           "after_error": round(r.after_error, 4)} for r in result.residuals]}


def fit_tables(result: Fit) -> tuple[Table, Table]:
    constants = Table(title=f"duration model fitted to {len(result.residuals)} migrations")
    for col in ("constant", "before", "after", ""):
        constants.add_column(col, justify="left" if col in ("constant", "") else "right")
    kept = dict(result.kept)
    for name, value in model_constants(result.model).items():
        before = getattr(result.base, name)
        note = "fitted" if name in result.fitted else kept.get(name, "")
        if name in result.fitted or name in kept:
            constants.add_row(name, f"{before:g}", f"{value:g}", note)
    for name, why in result.left_out:
        constants.add_row(f"(left out) {name}", "", "", why)
    residuals = Table(title=f"per migration: RMS error {result.rms(False):.1%} before, {result.rms():.1%} after; "
                            f"worst {result.worst(False):.1%} before, {result.worst():.1%} after")
    for col in ("journal", "VM", "MiB", "dirty MiB/s", "cap MiB/s", "measured s", "before s", "err", "after s",
                "err "):
        residuals.add_column(col, justify="left" if col in ("journal", "VM") else "right")
    for r in result.residuals:
        s = r.sample
        residuals.add_row(s.source, s.vm + (f" (hop {s.hop})" if s.hop else ""), f"{s.memory_mib + s.disk_mib:g}",
                          f"{s.dirty_rate_mibs:g}", f"{s.bandwidth_mibs:g}", f"{s.duration_s:.2f}",
                          f"{r.before_s:.2f}", f"{r.before_error:+.1%}", f"{r.after_s:.2f}", f"{r.after_error:+.1%}")
    return constants, residuals


def chosen_model(model: Path | None, site: Path | None = None) -> tuple[DurationModel, str | None]:
    """The duration model a planning command uses, and where it came from: `--model FILE`, else the site
    configuration's `model` key (`--site FILE`), else evac's default (source None)."""
    if model is None and site is not None:
        from executor.site import load_site_config

        model = load_site_config(site).model
    if model is None:
        return DEFAULT_MODEL, None
    return load_model(model), str(model)


def with_model(plan: Plan, model: DurationModel, source: str | None) -> Plan:
    """`plan` recording the model it was made with (plan v1's optional `model`; absent = the default)."""
    if source is None and model == DEFAULT_MODEL:
        return plan
    return dataclasses.replace(plan, model=model, model_source=source)


def register(app: typer.Typer) -> None:
    @app.command("calibrate")
    def calibrate_cmd(
        journals: Annotated[list[Path], typer.Argument(metavar="JOURNAL...", help="Run journals of finished runs.")],
        output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the model file here.")] = None,
        base: Annotated[Path | None, typer.Option(
            "--base", help="Start from this model file (constants the runs cannot tell are kept from it).")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the fit and residuals as JSON.")] = False,
    ) -> None:
        """Fit the duration model (fixed cost, bandwidth efficiency, dirty-rate factor, resume cost) to
        the migrations of finished runs; print the fit and each migration's residual.

        `evac plan --model FILE` then plans with it. Exit 0, or 2 for a journal that cannot be read or
        records no measured migration (every problem named; no model file written).
        """
        if output is not None:
            check_writable(output, "evac calibrate -o")
        start = load_model(base) if base is not None else DEFAULT_MODEL
        result = calibrate(journals, start)
        if output is not None:
            write_atomic(output, json.dumps(model_document(result.model, result.summary()), indent=2) + "\n",
                         "evac calibrate -o")
        if as_json:
            typer.echo(json.dumps(fit_to_dict(result), indent=2))
            return
        for table in fit_tables(result):
            console.print(table)
        if output is not None:
            console.print(f"model written to {output} (use it with evac plan --model {output})", markup=False)
