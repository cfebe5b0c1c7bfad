"""`evac collect`: read libvirt hosts into an inventory v1 file, with progress per host and a summary."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from executor.collector import DEFAULT_SAMPLE_S, CollectReporter, CollectResult, HostFailure, collect
from executor.outputs import check_writable, write_atomic
from executor.uri import validate_uris
from planner.errors import Problem, UsageError


class RichCollectReporter(CollectReporter):
    """One progress line per host; hooks arrive from worker threads, rich's Progress is thread-safe."""

    def __init__(self, progress: Progress, uris: list[str]) -> None:
        self.progress = progress
        self.lock = threading.Lock()
        self.tasks: dict[str, TaskID] = {u: progress.add_task(f"{u}: waiting", total=1) for u in uris}

    def _say(self, uri: str, text: str, done: bool = False) -> None:
        with self.lock:
            self.progress.update(self.tasks[uri], description=text, completed=1 if done else 0)

    def host_started(self, uri: str) -> None:
        self._say(uri, f"{uri}: connecting")

    def host_connected(self, uri: str, name: str, seconds: float) -> None:
        self._say(uri, f"{name}: connected in {seconds:.2f} s, reading domains and pools")

    def dirty_rate_started(self, uri: str, name: str, vms: int, seconds: float) -> None:
        self._say(uri, f"{name}: measuring the dirty rate of {vms} VMs ({seconds:g} s)")

    def sampling_started(self, uri: str, name: str, vms: int, seconds: float) -> None:
        self._say(uri, f"{name}: sampling the use of {vms} VMs ({seconds:.1f} s)")

    def host_done(self, uri: str, name: str, vms: int, seconds: float) -> None:
        self._say(uri, f"[green]{name}[/]: {vms} VMs in {seconds:.2f} s", done=True)

    def host_failed(self, failure: HostFailure, seconds: float) -> None:
        self._say(failure.uri, f"[red]{failure.name}[/]: {failure.code}: {failure.reason}", done=True)


def _validate_with_loader(doc: dict[str, object]) -> list[Problem]:
    """Problems the inventory loader finds in what we wrote (none expected: any is a collector bug)."""
    from planner.errors import InventoryError
    from planner.inventory import parse_inventory

    try:
        parse_inventory(doc, "collected inventory")
    except InventoryError as exc:
        return [p for p in exc.problems if p.severity == "error"]
    return []


def _summary(result: CollectResult) -> Table:
    table = Table(title=f"evac collect: {len(result.inventory.hosts)} hosts read, {len(result.failures)} failed, "
                        f"{len(result.inventory.vms)} VMs, {result.seconds:.2f} s")
    # Short headers: the table must stay readable in 80 columns.
    for col in ("host", "VMs", "cpus", "MiB", "cores used", "MiB used", "used from", "Gbit/s", "local GiB",
                "shared", "s"):
        table.add_column(col, justify="left" if col in ("host", "used from", "shared") else "right")
    for h in result.inventory.hosts:
        vms = result.inventory.vms_on.get(h.name, ())
        sources = result.memory_sources.get(h.uri or "", {})
        table.add_row(h.name, str(len(vms)), str(h.cpus), str(h.memory_mib),
                      f"{sum(v.cpu_used or 0.0 for v in vms):.2f}", str(sum(v.memory_used_mib or 0 for v in vms)),
                      ", ".join(f"{s.removeprefix('balloon.')} {n}" for s, n in sorted(sources.items())) or "-",
                      f"{h.nic_gbps:g}", f"{h.local_disk_free_gib:g}", ", ".join(sorted(h.storage)) or "-",
                      f"{result.host_seconds.get(h.uri or '', 0):.2f}")
    for f in result.failures:
        table.add_row(f"[red]{f.name}[/]", "-", "-", "-", "-", "-", "-", "-", "-", f"[red]{f.code}[/]",
                      f"{result.host_seconds.get(f.uri, 0):.2f}")
    return table


def register(app: typer.Typer) -> None:
    """Adds `evac collect` to the evac app."""

    @app.command("collect")
    def collect_cmd(
        uris: Annotated[list[str], typer.Argument(help="libvirt URIs of the hosts, e.g. qemu+ssh://h01/system")],
        output: Annotated[Path, typer.Option("--output", "-o", help="inventory file to write ('-' = stdout)")],
        hosts_file: Annotated[Path | None, typer.Option(help="YAML/JSON: host names, reserved memory, labels, "
                                                             "migration addresses, shared storage")] = None,
        topology: Annotated[Path | None, typer.Option(help="YAML/JSON: per-host switch and NIC speed, links")] = None,
        dirty_rate: Annotated[bool, typer.Option("--dirty-rate", help="measure each running VM's dirty rate "
                                                                      "(QEMU calc-dirty-rate)")] = False,
        dirty_rate_seconds: Annotated[int, typer.Option(min=1, max=60, help="measuring period")] = 1,
        sample_s: Annotated[float, typer.Option("--sample-s", min=0, max=600,
                                                help="seconds between the two domain-statistics samples whose "
                                                     "CPU-time delta gives cpu_used (0: not measured); a "
                                                     "--dirty-rate measurement runs inside this window")
                            ] = DEFAULT_SAMPLE_S,
        timeout: Annotated[float, typer.Option(min=0.1, help="seconds to connect to one host")] = 15.0,
        read_timeout: Annotated[float, typer.Option(min=0.1, help="seconds to read one host once connected "
                                                                  "(plus the dirty-rate period)")] = 120.0,
        allow_insecure_transport: Annotated[bool, typer.Option(help="accept qemu+tcp:// URIs (no encryption, "
                                                                    "no authentication)")] = False,
        virt_type: Annotated[str | None, typer.Option(help="kvm or qemu (TCG): whose CPU offer to read "
                                                           "for every host and guest; default: each guest's "
                                                           "own domain type")] = None,
    ) -> None:
        """Read VMs, hosts and storage from libvirt hosts into an inventory v1 file.

        Exit codes: 0 all hosts read; 1 some hosts failed (listed in missing_hosts, inventory written);
        2 bad URI or option; 3 no host reachable.
        """
        if virt_type not in (None, "kvm", "qemu"):
            raise UsageError("evac collect", [Problem("--virt-type", f"must be kvm or qemu, not {virt_type!r}")])
        validate_uris(uris, allow_insecure_transport)  # before any progress line: exit 2 naming every bad URI
        if str(output) != "-":  # before connecting to anything: reading a fleet can take minutes
            check_writable(output, "evac collect -o")
        err = Console(stderr=True, highlight=False)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                      transient=False) as progress:
            reporter = RichCollectReporter(progress, list(dict.fromkeys(uris)))
            result = collect(uris, timeout_s=timeout, dirty_rate=dirty_rate, dirty_rate_seconds=dirty_rate_seconds,
                             topology=topology, hosts_file=hosts_file,
                             allow_insecure_transport=allow_insecure_transport, reporter=reporter,
                             virt_type=virt_type, read_timeout_s=read_timeout, sample_s=sample_s)
        err.print(_summary(result))
        for w in result.warnings:
            err.print(f"[yellow]warning[/]: {escape(str(w))}" if w.severity == "warning"
                      else f"[red]error[/]: {escape(str(w))}")
        if not result.inventory.hosts:
            err.print("[red]evac collect: no host could be read; no inventory written[/]")
            raise typer.Exit(3)
        doc = result.inventory.to_dict()
        text = json.dumps(doc, indent=2) + "\n"
        if str(output) == "-":
            sys.stdout.write(text)
        else:
            write_atomic(output, text, "evac collect -o")
            err.print(f"inventory written to {output}")
        invalid = _validate_with_loader(doc)
        for p in invalid:
            err.print(f"[red]BUG: the collected inventory fails validation[/]: {p}")
        if result.failures:
            err.print(f"[red]{len(result.failures)} host(s) not read (listed in missing_hosts):[/]")
            for f in result.failures:
                err.print(f"  - {f}")
        raise typer.Exit(1 if result.failures or invalid else 0)
