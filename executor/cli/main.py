"""Entry point of the `evac` command: builds the typer app and maps errors to exit codes.

Exit codes (plan v1 contract): 0 success; 1 the work ran but did not fully succeed; 2 bad input
or usage (one clear message naming every problem, no traceback); 3 environment problem.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import typer
import typer.main
from rich.console import Console

from executor.cli import (
    calibrate_cmd,
    collect_cmds,
    inventory_cmds,
    numbers,
    plan_cmds,
    reconfigure_cmds,
    report_cmds,
    return_cmd,
    rolling_cmd,
    run_cmds,
    whatif_cmds,
)
from planner.errors import EvacError

app = typer.Typer(
    name="evac",
    help="Plan and run mass live-migration evacuations of VMs on libvirt/KVM hosts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)



@app.callback()
def _root() -> None:
    """Plan and run mass live-migration evacuations of VMs on libvirt/KVM hosts.

    Exit codes: 0 success, 1 the work ran but did not fully succeed, 2 bad input or usage,
    3 environment problem (libvirt unreachable, missing dependency).
    """


for module in (inventory_cmds, plan_cmds, reconfigure_cmds, collect_cmds, run_cmds, whatif_cmds, report_cmds,
               calibrate_cmd):
    module.register(app)
return_cmd.register(app)
rolling_cmd.register(app)
numbers.install(app)  # every numeric option range-checked, in one table

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


@functools.cache
def _click_command() -> Any:
    """The command tree, built once per process (typer rebuilds it on each `app()`, ~25 ms)."""
    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; every `EvacError` becomes its message on stderr and its exit code.

    typer runs in standalone mode, so usage errors already exit 2 with click's message; evac's own
    errors propagate out of it and are mapped here, never shown as a traceback.
    """
    try:
        _click_command()(args=argv, prog_name="evac")
    except SystemExit as e:
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except EvacError as e:
        err_console.print(f"evac: {e}", markup=False)
        return e.exit_code
    except KeyboardInterrupt:
        err_console.print("evac: interrupted", markup=False)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
