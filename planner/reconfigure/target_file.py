"""The operator's target placement, read from a file: JSON `{"vm": "host"}` or CSV `vm,host`.

A file ending in `.csv` (or not in `.json` and not starting with `{` or `[`) is CSV: one `vm,host` row per VM; a
header row `vm,host` is allowed; blank lines and lines starting with `#` are skipped. Every problem is
collected, with its location (`line 4`, `"web-01"`), into one `TargetFileError` (exit 2): unreadable
file, invalid JSON, a value that is not a host name, a row without two cells, a VM named twice, a VM the
inventory does not have (it cannot be listed as unplaced: there is no such VM). A target HOST the
inventory lacks is not a file error: the planner explains it and leaves the VM where it is.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from planner.errors import InputError, Problem
from planner.model import Inventory


class TargetFileError(InputError):
    """A target placement file evac cannot use."""


def parse_target(text: str, source: str, inventory: Inventory | None = None) -> dict[str, str]:
    """VM -> host from the text of a target file; raises `TargetFileError` naming every problem."""
    problems: list[Problem] = []
    pairs: list[tuple[str, str, str]] = []  # (vm, host, where)
    head = text.lstrip()[:1]
    if source.lower().endswith(".csv") or (not source.lower().endswith(".json") and head not in ("{", "[")):
        rows = csv.reader(io.StringIO(text))
        for n, row in enumerate(rows, start=1):
            cells = [c.strip() for c in row]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            if n == 1 and [c.lower() for c in cells[:2]] == ["vm", "host"]:
                continue
            if len(cells) != 2 or not cells[0] or not cells[1]:
                problems.append(Problem(f"line {n}", f"expected two cells vm,host, got {row!r}"[:200]))
                continue
            pairs.append((cells[0], cells[1], f"line {n}"))
    else:
        try:
            doc = json.loads(text, object_pairs_hook=list)  # pairs in order: a VM named twice is seen
        except json.JSONDecodeError as e:
            raise TargetFileError(source, [Problem(f"line {e.lineno} column {e.colno}", f"invalid JSON: {e.msg}")]) \
                from None
        if head != "{" or not isinstance(doc, list):
            raise TargetFileError(source, [Problem("", 'must be a JSON object {"vm": "host", ...}')])
        for vm, host in doc:
            if not isinstance(host, str) or not host:
                problems.append(Problem(json.dumps(vm), f"the host must be a non-empty string, got {host!r}"[:200]))
                continue
            pairs.append((vm, host, json.dumps(vm)))
    out: dict[str, str] = {}
    for vm, host, where in pairs:
        if vm in out:
            problems.append(Problem(where, f"VM {vm!r} is named more than once"))
        elif inventory is not None and vm not in inventory.vm:
            problems.append(Problem(where, f"the inventory has no VM {vm!r}"))
        else:
            out[vm] = host
    if not out and not problems:
        problems.append(Problem("", "names no VM"))
    if problems:
        raise TargetFileError(source, problems)
    return out


def load_target(path: str | Path, inventory: Inventory | None = None) -> dict[str, str]:
    """`parse_target` of a file; an unreadable file is a `TargetFileError` too."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise TargetFileError(str(p), [Problem("", f"cannot read: {reason}")]) from None
    return parse_target(text, str(p), inventory)
