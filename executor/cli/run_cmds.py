"""`evac run`, `evac status` and `evac demo`: execute a plan, look at a run, show the whole job.

`evac run PLAN --inventory INV` executes through libvirt (`executor.libvirt_hv.LibvirtHypervisor`),
or through the simulated fleet with `--simulate`; `--dry-run` calls no hypervisor at all and prints
what would happen. `evac status JOURNAL` reads a run's journal (also while the run goes on).
`evac demo` plans and runs the bundled sample fleet on the simulated hypervisor.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from executor.outputs import OutputError, check_writable, check_writable_dir, write_atomic
from executor.states import State
from planner.duration import DEFAULT_MODEL, DurationModel
from planner.errors import EnvironmentProblem, Problem, UsageError
from planner.model import Inventory
from planner.plan import Migration, Plan, PlanKind, load_plan
from planner.plan_inputs import inventory_path_for, refuse_unless_valid

if TYPE_CHECKING:
    from executor.hypervisor import Hypervisor
    from executor.runner import RunOptions, RunResult

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def _load_inventory(path: Path) -> Inventory:
    try:  # imported by name: the loader lives in planner.inventory (written alongside this module)
        loader = importlib.import_module("planner.inventory")
    except ImportError as e:
        raise EnvironmentProblem(f"cannot load inventories: {e}") from None
    inventory: Inventory = loader.load_inventory(path).inventory
    return inventory


def _hypervisor(inventory: Inventory, simulate: bool, speedup: float, tls: bool,
                allow_insecure_transport: bool = False, peer_uris: dict[str, str] | None = None,
                model: DurationModel = DEFAULT_MODEL) -> Hypervisor:
    if simulate:
        from executor.sim_hv import SimulatedHypervisor

        # the plan's model (it follows the plan), on virtual time (the executor's own work takes none)
        return SimulatedHypervisor(inventory, speedup=speedup, model=model, virtual_time=True)
    try:  # lazily: libvirt-python is only needed against real hosts
        from executor.libvirt_hv import LibvirtHypervisor
    except ImportError as e:
        raise EnvironmentProblem(f"the libvirt hypervisor is not available: {e}") from None
    return LibvirtHypervisor(inventory, tls=tls, allow_insecure_transport=allow_insecure_transport,
                             peer_uris=peer_uris)


def _parse_peer_uris(values: list[str]) -> dict[str, str]:
    out, problems = {}, []
    for v in values:
        host, sep, uri = v.partition("=")
        if not sep or not host or not uri:
            problems.append(Problem("--peer-uri", f"expected HOST=URI, got {v!r}"))
        else:
            out[host] = uri
    if problems:
        raise UsageError("evac run", problems)
    return out


_STOP_SIGNALS: tuple[tuple[signal.Signals, str], ...] = ((signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM"))


def check_uris(inventory: Inventory, peer_uris: dict[str, str], allow_insecure_transport: bool) -> None:
    """The real run's URI rules in every mode (dry run and simulation included): exit 2 naming each."""
    from executor.uri import check_run_uris

    problems = check_run_uris(inventory, peer_uris, allow_insecure_transport=allow_insecure_transport)
    if problems:
        raise UsageError("libvirt URIs", problems)


class _CtrlC:
    """First Ctrl-C or SIGTERM (what `kill`, systemd and orchestrators send): abort the running
    migrations cleanly (their VMs stay on their sources), journal, exit 1. A second one interrupts
    at once (the journal is written ahead, so it stays consistent)."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self._old: dict[int, Any] = {}
        self.received: str | None = None

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            for sig, _name in _STOP_SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.cancel.is_set():
            raise KeyboardInterrupt
        self.received = dict(_STOP_SIGNALS).get(signal.Signals(signum), signal.Signals(signum).name)
        self.cancel.set()
        err_console.print(f"[yellow]{self.received}: aborting running migrations (VMs stay on their sources); "
                          f"send it again to quit at once[/]")

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def unsafe_run_numbers(runs: list[dict[str, Any]]) -> list[int]:
    """The runs of a journal (1 = the first, then each --resume) that passed --unsafe: a resumed run
    without it does not make the migrations an earlier run started with it any safer."""
    return [i for i, r in enumerate(runs, 1) if r["flags"].get("unsafe")]


def move_text(route: tuple[str, ...] | list[str]) -> str:
    """A VM's hosts in hop order, source first: `a → b`, or `a → c (staging) → b` for a staging hop."""
    inner = [f"{h} (staging)" for h in route[1:-1]]
    return " → ".join([route[0], *inner, route[-1]])


def hop_route(hops: tuple[Migration, ...] | list[Migration]) -> tuple[str, ...]:
    """The hosts a VM's hops go through, its source first."""
    return (hops[0].source, *(m.destination for m in hops))


def result_table(result: RunResult, title: str = "result") -> Table:
    """Planned vs executed, per VM (a VM of several hops: one row, its current hop's state)."""
    t = Table(title=title)
    for col in ("vm", "move", "state", "tries", "planned start–end s", "executed start–end s", "error"):
        t.add_column(col, overflow="fold")
    plan = result.plan
    for m in sorted(plan.migrations, key=lambda m: (m.start_s, m.vm)):
        hops = plan.hops_of(m.vm)
        if m is not hops[0]:
            continue
        r = result.results[m.vm]
        ran = f"{r.started_s:.1f}–{r.ended_s:.1f}" if r.started_s is not None and r.ended_s is not None else "–"
        colour = {"done": "green", "failed": "red", "quarantined": "magenta", "aborted": "yellow"}.get(r.state, "")
        state = f"[{colour}]{r.state}[/]" if colour else str(r.state)
        if len(hops) > 1 and r.state is not State.DONE:
            state += f" (hop {r.hop + 1} of {len(hops)})"
        t.add_row(escape(m.vm), escape(move_text(hop_route(hops))), state,
                  str(r.attempts), f"{m.start_s:.1f}–{hops[-1].end_s:.1f}", ran, escape(r.error[:120]))
    return t


def _print_summary(result: RunResult) -> None:
    s = result.summary()
    states = ", ".join(f"{v} {k}" for k, v in sorted(s["states"].items()))
    console.print(f"makespan {s['makespan_s']:.1f} s (planned {s['planned_makespan_s']:.1f} s): {states}"
                  + (" — cancelled" if result.cancelled else ""))
    _print_unplaced(result.plan)


def _print_unplaced(plan: Plan) -> None:
    """The VMs the plan leaves where they are (status infeasible): the drain is not complete."""
    if not plan.unplaced:
        return
    console.print(f"[red]{len(plan.unplaced)} VMs not moved (the plan could not place them); they are still "
                  f"on their hosts:[/]")
    for u in plan.unplaced:
        console.print(f"  {u.vm}: {'; '.join(u.reasons) or 'no reason given'}", markup=False, soft_wrap=True)


def dry_run(plan: Plan, inventory: Inventory, options: RunOptions, peer_uris: dict[str, str] | None = None) -> None:
    """What `evac run` would do, without a single hypervisor call."""
    from executor.runner import build_spec, virsh_command
    from executor.uri import migration_uri
    from planner.monitor import dispatch_hop_times, hop_key

    times = dispatch_hop_times(plan, inventory, barrier=options.barrier, one_at_a_time=options.one_at_a_time)
    t = Table(title=f"dry run ({options.mode} mode): {len(plan.migrations)} migrations")
    for col in ("#", "vm", "move", "start s", "end s", "MiB/s", "flags"):
        t.add_column(col, overflow="fold")
    order = sorted(plan.migrations, key=lambda m: (times.get(hop_key(m), (float("inf"), 0))[0], m.vm, m.hop))
    commands = []
    for i, m in enumerate(order, 1):
        spec = build_spec(m, inventory, options)
        start, end = times.get(hop_key(m), (float("nan"), float("nan")))
        flags = [f for f, on in (("auto-converge", spec.auto_converge), ("copy-storage", bool(spec.copy_storage)),
                                 ("offline", not spec.live), ("postcopy", spec.postcopy_allowed),
                                 ("tls", spec.tls), ("UNSAFE", spec.unsafe)) if on]
        move = f"{m.source} → {m.destination}" + (" (staging)" if m.staging else "")
        name = m.vm + (f" (hop {m.hop + 1})" if len(plan.hops_of(m.vm)) > 1 else "")
        t.add_row(str(i), escape(name), escape(move), f"{start:.1f}", f"{end:.1f}",
                  f"{m.bandwidth_mibs:.0f}", " ".join(flags))
        dst = inventory.host[m.destination]
        commands.append(f"{i:>3}. " + virsh_command(
            spec, (peer_uris or {}).get(dst.name) or dst.uri, source_uri=inventory.host[m.source].uri,
            migrate_uri=migration_uri(dst.migration_address) if dst.migration_address else None))
    console.print(t)
    console.print("the same, as virsh commands:")
    for line in commands:
        console.print(line, soft_wrap=True, markup=False)
    never = sorted({m.vm for m in plan.migrations if hop_key(m) not in times})
    makespan = max((e for _, e in times.values()), default=0.0)
    console.print(f"predicted makespan {makespan:.1f} s (plan: {plan.makespan_s:.1f} s, lower bound "
                  f"{plan.lower_bound_s:.1f} s)" + (f"; never startable: {', '.join(never)}" if never else ""))
    if options.unsafe:
        console.print("[yellow]--unsafe: VIR_MIGRATE_UNSAFE would be passed (skips libvirt's safety checks)[/]")
    _print_unplaced(plan)


def register(app: typer.Typer) -> None:
    """Adds `run`, `status` and `demo` to the evac app."""

    @app.command("run")
    def run(
        plan_path: Annotated[Path, typer.Argument(metavar="PLAN", help="plan v1 JSON (evac plan -o)")],
        inventory_path: Annotated[Path | None, typer.Option(
            "--inventory", "-i", help="the inventory the plan was made for (default: the plan's inventory_path)")]
        = None,
        journal: Annotated[Path | None, typer.Option(help="run journal (SQLite); default PLAN.journal")] = None,
        barrier: Annotated[bool, typer.Option("--barrier", help="wave k+1 waits for all of wave k")] = False,
        one_at_a_time: Annotated[bool, typer.Option("--one-at-a-time", help="one migration at a time")] = False,
        resume: Annotated[bool, typer.Option("--resume", help="continue the run recorded in the journal")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="one JSON event per line on stdout")] = False,
        timeout_action: Annotated[str, typer.Option(help="stalled migration: abort | suspend | postcopy")] = "abort",
        allow_postcopy: Annotated[bool, typer.Option("--allow-postcopy", help="permit post-copy")] = False,
        unsafe: Annotated[bool, typer.Option("--unsafe", help="pass VIR_MIGRATE_UNSAFE (skips safety checks)")]
        = False,
        tls: Annotated[bool, typer.Option("--tls", help="VIR_MIGRATE_TLS")] = False,
        retries: Annotated[int, typer.Option(help="retries of a retryable error, per VM")] = 2,
        simulate: Annotated[bool, typer.Option("--simulate", help="run on the simulated fleet")] = False,
        speedup: Annotated[float, typer.Option(help="simulated time runs this many times faster")] = 50.0,
        dry: Annotated[bool, typer.Option("--dry-run", help="print what would happen; no hypervisor calls")]
        = False,
        allow_insecure_transport: Annotated[bool, typer.Option(help="accept qemu+tcp:// URIs (no encryption, "
                                                                    "no authentication)")] = False,
        peer_uri: Annotated[list[str] | None, typer.Option("--peer-uri", help="HOST=URI the source daemon uses "
                                                                                "to reach HOST (p2p)")] = None,
        replan: Annotated[bool, typer.Option("--replan", help="a destination stops answering: re-plan the rest "
                                                              "from the live state onto the other hosts")] = False,
    ) -> None:
        """Execute a plan: live-migrate every VM, within the limits, journaled, resumable."""
        from executor.runner import RunOptions, TimeoutAction

        problems = []
        if barrier and one_at_a_time:
            problems.append(Problem("--barrier/--one-at-a-time", "choose one"))
        try:
            action = TimeoutAction(timeout_action)
        except ValueError:
            problems.append(Problem("--timeout-action", f"must be abort, suspend or postcopy, got {timeout_action!r}"))
            action = TimeoutAction.ABORT
        if action is TimeoutAction.POSTCOPY and not allow_postcopy:
            problems.append(Problem("--timeout-action postcopy", "needs --allow-postcopy"))
        if retries < 0:
            problems.append(Problem("--retries", "must be >= 0"))
        if speedup <= 0:
            problems.append(Problem("--speedup", "must be positive"))
        if problems:
            raise UsageError("evac run", problems)
        plan = load_plan(plan_path)
        inv_path = inventory_path_for(plan, plan_path, inventory_path, "evac run")
        inventory = _load_inventory(inv_path)
        journal_path = journal or Path(f"{plan_path}.journal")
        if not dry:  # SQLite also writes -wal, -shm and evac's .lock beside it: its folder must be writable
            check_writable(journal_path, "--journal")
        refuse_unless_valid(plan, inventory, plan_path, inv_path)  # before any hypervisor call or journal write
        if replan and plan.kind is PlanKind.DRAIN and not plan.drained:
            raise UsageError("evac run", [Problem("--replan", "re-plans a drain, and this plan drains no host")])
        options = RunOptions(barrier=barrier, one_at_a_time=one_at_a_time, timeout_action=action,
                             allow_postcopy=allow_postcopy, unsafe=unsafe, tls=tls, retries=retries, resume=resume)
        peers = _parse_peer_uris(peer_uri or [])
        check_uris(inventory, peers, allow_insecure_transport)
        if dry:
            dry_run(plan, inventory, options, peers)
            raise typer.Exit(1 if plan.unplaced else 0)
        hv = _hypervisor(inventory, simulate, speedup, tls, allow_insecure_transport, peers, plan.duration_model)
        result = execute(plan, inventory, hv, options, journal_path, json_out, simulated=simulate, replan=replan)
        raise typer.Exit(result.exit_code)

    @app.command("status")
    def status(
        journal: Annotated[Path, typer.Argument(metavar="JOURNAL", help="a run journal")],
        json_out: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
    ) -> None:
        """Show a run's journal: every VM's state, attempts, last error, elapsed time."""
        from executor.journal import Journal

        j = Journal.read(journal)
        try:
            records = j.records()
            summary = j.summary()
            runs = j.runs()
        finally:
            j.close()
        if json_out:
            console.print_json(json.dumps({
                "summary": summary, "runs": runs, "unsafe_runs": unsafe_run_numbers(runs), "vms": [
                    {"vm": r.vm, "source": r.source, "destination": r.destination, "state": r.state.value,
                     "attempts": r.attempts, "error": r.error, "elapsed_s": r.elapsed_s,
                     **({"hop": r.hop, "route": list(r.route)} if r.route else {})} for r in records]}))
            return
        t = Table(title=f"{journal}: {len(records)} VMs, {len(runs)} run(s)")
        for col in ("vm", "move", "state", "attempts", "elapsed s", "error"):
            t.add_column(col, overflow="fold")
        for r in records:
            el = f"{r.elapsed_s:.1f}" if r.elapsed_s is not None else ""
            state = r.state.value + (f" (hop {r.hop + 1} of {len(r.route) - 1})"
                                     if r.route and r.state is not State.DONE else "")
            t.add_row(escape(r.vm), escape(move_text(r.route or (r.source, r.destination))), state, str(r.attempts),
                      el, escape(r.error[:160]))
        console.print(t)
        console.print(", ".join(f"{v} {k}" for k, v in summary.items()))
        unsafe_runs = unsafe_run_numbers(runs)
        if unsafe_runs:
            console.print(f"[yellow]--unsafe (VIR_MIGRATE_UNSAFE, libvirt's safety checks skipped) was passed by "
                          f"run{'s' if len(unsafe_runs) > 1 else ''} {', '.join(map(str, unsafe_runs))} of "
                          f"{len(runs)}[/]", soft_wrap=True)

    @app.command("demo")
    def demo(
        inventory_path: Annotated[Path, typer.Argument(metavar="INVENTORY", help="inventory to evacuate")]
        = Path("data/small.json"),
        drain: Annotated[list[str] | None, typer.Option("--drain", help="host to empty (default: hosts in "
                                                                         "maintenance)")] = None,
        speedup: Annotated[float | None, typer.Option(help="simulated time speed-up (default: fit ~15 s)")] = None,
        out: Annotated[Path, typer.Option("--out", help="where the Gantt chart and journal go")]
        = Path("evac-demo-out"),
        time_limit_s: Annotated[float, typer.Option(help="planner time limit")] = 10.0,
    ) -> None:
        """The whole job on sample data: plan a drain, run it on the simulated fleet, compare, chart."""
        run_demo(inventory_path, drain or [], speedup, out, time_limit_s)


def execute(plan: Plan, inventory: Inventory, hv: Hypervisor, options: RunOptions, journal_path: Path,
            json_out: bool, *, simulated: bool = False, replan: bool = False) -> RunResult:
    from executor.journal import Journal
    from executor.replanner import run_with_replan
    from executor.reporter import JsonReporter, Reporter, RichReporter
    from executor.runner import run_plan

    flags = {**options.journal_flags(), "simulated": simulated, "replan": replan}
    journal = Journal.open(journal_path, plan, inventory_sha256=inventory.sha256, flags=flags, resume=options.resume)
    reporter: Reporter = JsonReporter() if json_out else RichReporter(err_console)
    try:
        with _CtrlC(options.cancel):
            if replan or (options.resume and journal.events("replan")):  # resume follows the last re-plan
                result = run_with_replan(plan, inventory, hv, journal, reporter, options)
            else:
                result = run_plan(plan, inventory, hv, journal, reporter, options)
    finally:
        journal.close()
        hv.close()
    if not json_out:
        console.print(result_table(result))
        _print_summary(result)
        console.print(f"journal: {journal_path}  (evac status {journal_path})")
    return result


def _make_plan(inventory: Inventory, drained: list[str], time_limit_s: float) -> Plan:
    try:
        solve = importlib.import_module("planner.solve")
    except ImportError:  # no CP-SAT planner in this tree: the sequential baseline is a valid plan
        from planner.baselines import sequential_plan

        return sequential_plan(inventory, drained)
    from executor.reporter import Reporter

    with err_console.status("planning (CP-SAT)…") as status:

        class _SolverStatus(Reporter):
            def solver_progress(self, elapsed_s: float, objective: float, bound: float) -> None:
                status.update(f"planning (CP-SAT): {elapsed_s:.1f} s, objective {objective:g}, bound {bound:g}")

        plan: Plan = solve.make_plan(inventory, drained, time_limit_s=time_limit_s, workers=2,
                                     reporter=_SolverStatus())
    return plan


def run_demo(inventory_path: Path, drain: list[str], speedup: float | None, out: Path, time_limit_s: float) -> None:
    from executor.runner import RunOptions
    from executor.sim_hv import SimulatedHypervisor
    from planner.model import HostState

    inventory = _load_inventory(inventory_path)
    unknown = [h for h in drain if h not in inventory.host]
    if unknown:
        raise UsageError("evac demo", [Problem("--drain", f"unknown host {h!r}") for h in unknown])
    drained = drain or [h.name for h in inventory.hosts if h.state is HostState.MAINTENANCE]
    if not drained:
        raise UsageError("evac demo", [Problem("--drain", "no host in maintenance in the inventory: name one")])
    check_writable_dir(out, "evac demo --out")  # before planning: nothing computed is lost to a bad --out
    console.print(f"[bold]evac demo[/]: {len(inventory.hosts)} hosts, {len(inventory.vms)} VMs; "
                  f"draining {', '.join(drained)}")
    t0 = time.monotonic()
    plan = dataclasses.replace(_make_plan(inventory, drained, time_limit_s),
                               inventory_path=str(inventory_path.absolute()))
    console.print(f"plan ({plan.solver}, {plan.status}, {time.monotonic() - t0:.1f} s): {len(plan.migrations)} "
                  f"migrations, makespan {plan.makespan_s:.1f} s, "
                  + (f"lower bound {plan.lower_bound_s:.1f} s, gap {plan.gap:.2f}" if plan.lower_bound_s > 0
                     else "no lower bound")
                  + (f", {len(plan.unplaced)} VMs cannot move" if plan.unplaced else ""))
    for u in plan.unplaced:
        console.print(f"  [red]{u.vm}[/]: {'; '.join(u.reasons)}")
    if not plan.migrations:
        console.print("nothing to migrate")
        raise typer.Exit(0 if not plan.unplaced else 1)
    sp = speedup or max(20.0, plan.makespan_s / 15.0)
    journal_path = out / "journal.db"
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in (journal_path, Path(f"{journal_path}-wal"), Path(f"{journal_path}-shm")):
            stale.unlink(missing_ok=True)
    except OSError as e:
        raise OutputError("evac demo --out", out, f"cannot be prepared: {e.strerror or e}") from None
    write_atomic(out / "plan.json", plan.to_json(), "evac demo --out")
    console.print(f"running on the simulated fleet at {sp:g}× speed")
    # Reality follows the plan's model here (no jitter) and time is virtual (the executor's own work takes no
    # simulated time), so the executed timeline reproduces the plan: what the chart compares is the plan
    # against the dispatcher, not against noise.
    hv = SimulatedHypervisor(inventory, speedup=sp, virtual_time=True, model=plan.duration_model)
    result = execute(plan, inventory, hv, RunOptions(backoff_s=5.0), journal_path, False, simulated=True)
    chart = out / "gantt.png"
    write_atomic(chart, gantt_png(result), "evac demo --out")
    console.print(f"Gantt chart (planned vs executed): {chart}")
    raise typer.Exit(result.exit_code)  # 1 also when the plan left VMs unplaced (the summary lists them)


def gantt_png(result: RunResult) -> bytes:
    """Planned vs executed, one row per VM (planned: light bar, executed: coloured by outcome), as PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from planner.report import ExecutedRow, run_table

    executed = [ExecutedRow(r.vm, r.state.value, r.attempts, r.started_s, r.ended_s, r.error)
                for r in result.results.values()]
    runs = run_table(result.plan, executed)  # the report layer: the HTML report draws the same frame
    fig, ax = plt.subplots(figsize=(10, max(2.5, 0.28 * len(runs) + 1.2)))
    colours = {"done": "tab:green", "failed": "tab:red", "aborted": "tab:orange", "quarantined": "tab:purple"}
    rows = runs.to_dict("records")
    for i, row in enumerate(rows):
        ax.barh(i, row["planned_end_s"] - row["planned_start_s"], left=row["planned_start_s"], height=0.8,
                color="lightsteelblue", label="planned" if i == 0 else None)
        if pd.notna(row["started_s"]) and pd.notna(row["ended_s"]):
            ax.barh(i, row["ended_s"] - row["started_s"], left=row["started_s"], height=0.4,
                    color=colours.get(row["state"], "grey"), label=f"executed ({row['state']})")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=False))
    ax.legend(uniq.values(), uniq.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{r['vm']} ({r['source']}→{r['destination']})" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the start of the run")
    ax.set_title(f"planned makespan {result.plan.makespan_s:.0f} s vs executed {result.makespan_s:.0f} s "
                 f"(simulated fleet)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


