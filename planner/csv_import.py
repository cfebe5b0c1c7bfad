"""Inventory v1 from a folder of CSV files, as a CMDB exports it; fed to the same validator as JSON.

Files: `hosts.csv`, `vms.csv` (required), `disks.csv` (one row per disk, a `vm` column names its VM),
`links.csv`, `policy.csv` (columns `key,value`). Column names are the JSON field names. List columns
(cpu_features, storage, networks, anti_affinity, affinity) separate items with `;`; labels (and
storage_free_gib) are `k=v;k=v`. An empty cell means "not given" (for `disks.csv` storage: local disk).

Problems name the file, row and column: `vms.csv row 7 column memory_mib: ...`. Rows count the header
as row 1, as a spreadsheet shows them.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from planner.errors import InventoryError, Problem
from planner.inventory import LoadedInventory, parse_inventory
from planner.model import Inventory

INT_COLUMNS = frozenset({"cpus", "memory_mib", "reserved_memory_mib", "vcpus", "priority", "max_outbound_per_host",
                         "max_inbound_per_host", "max_concurrent"})
NUMBER_COLUMNS = frozenset({"nic_gbps", "local_disk_free_gib", "dirty_rate_mibs", "capacity_gib", "allocation_gib",
                            "gbps", "cpu_overcommit", "memory_overcommit", "migration_share", "max_downtime_ms",
                            "progress_timeout_s", "completion_timeout_per_gib_s"})
BOOL_COLUMNS = frozenset({"pinned", "persistent", "auto_converge"})
LIST_COLUMNS = frozenset({"cpu_features", "storage", "networks", "anti_affinity", "affinity"})
MAP_COLUMNS = frozenset({"labels", "storage_free_gib"})
FILES = ("hosts.csv", "vms.csv", "disks.csv", "links.csv", "policy.csv")
REQUIRED_COLUMNS = {"hosts.csv": ("name", "cpus", "memory_mib", "nic_gbps"),
                    "vms.csv": ("name", "host", "vcpus", "memory_mib"), "disks.csv": ("vm", "target"),
                    "links.csv": ("a", "b", "gbps"), "policy.csv": ("key", "value")}

_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_LOCATION_RE = re.compile(r"^(hosts|vms|links)\[(\d+)\](?:\.disks\[(\d+)\])?(?:\.([A-Za-z_0-9]+))?")


def _number(text: str) -> object:
    if _INT_RE.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text  # the validator says what it should have been, with the unit


def _cell(column: str, text: str, where: str, problems: list[Problem], file: str = "") -> object:
    """A CSV cell as the JSON value the validator expects (strings it cannot convert stay strings)."""
    if file == "disks.csv" and column == "storage":
        return text  # one storage id per disk, not a list
    if column in INT_COLUMNS or column in NUMBER_COLUMNS:
        return _number(text)
    if column in BOOL_COLUMNS:
        low = text.lower()
        return True if low in _TRUE else False if low in _FALSE else text
    if column in LIST_COLUMNS:
        return [item.strip() for item in text.split(";") if item.strip()]
    if column in MAP_COLUMNS:
        out: dict[str, object] = {}
        for pair in (p.strip() for p in text.split(";")):
            if not pair:
                continue
            key, eq, value = pair.partition("=")
            if not eq or not key.strip():
                problems.append(Problem(where, f"{pair!r} is not key=value (write k=v;k=v)"))
                continue
            v = value.strip()
            out[key.strip()] = _number(v) if column == "storage_free_gib" else v
        return out
    return text


def _read(path: Path, problems: list[Problem]) -> pd.DataFrame | None:
    try:
        with warnings.catch_warnings():
            # index_col=False: a row with extra cells must not silently turn the first column into an index.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True,
                                encoding="utf-8-sig", index_col=False)
    except pd.errors.EmptyDataError:
        problems.append(Problem(path.name, "empty file (want a header row with the column names)"))
        return None
    except pd.errors.ParserWarning:
        problems.append(Problem(path.name, "malformed CSV: a row has more cells than the header has columns"))
        return None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        problems.append(Problem(path.name, f"malformed CSV: {str(e).strip().splitlines()[0]}"))
        return None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS[path.name] if c not in frame.columns]
    if missing:
        problems.append(Problem(path.name, f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}"))
    return frame


def _rows(frame: pd.DataFrame, file: str, problems: list[Problem], skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    columns = [c for c in frame.columns if c not in skip]
    out = []
    for n, values in enumerate(frame[columns].itertuples(index=False, name=None)):
        row: dict[str, Any] = {}
        for column, text in zip(columns, values, strict=True):
            text = text.strip()
            if text:
                row[column] = _cell(column, text, f"{file} row {n + 2} column {column}", problems, file)
            elif file == "disks.csv" and column == "storage":
                row[column] = None
        out.append(row)
    return out


def read_csv_document(folder: Path) -> tuple[dict[str, Any], dict[str, Any], list[Problem]]:
    """The inventory document built from the CSV files, a map for locations, and problems found so far."""
    problems: list[Problem] = []
    frames: dict[str, pd.DataFrame] = {}
    for name in FILES:
        path = folder / name
        if path.exists():
            frame = _read(path, problems)
            if frame is not None:
                frames[name] = frame
        elif name in ("hosts.csv", "vms.csv"):
            problems.append(Problem(name, f"missing: an inventory folder needs hosts.csv and vms.csv ({folder})"))
    doc: dict[str, Any] = {"version": 1}
    doc["hosts"] = _rows(frames["hosts.csv"], "hosts.csv", problems) if "hosts.csv" in frames else []
    doc["vms"] = _rows(frames["vms.csv"], "vms.csv", problems) if "vms.csv" in frames else []
    disk_rows: dict[tuple[int, int], int] = {}
    if "disks.csv" in frames:
        frame = frames["disks.csv"]
        vm_index = {v.get("name"): i for i, v in enumerate(doc["vms"]) if isinstance(v.get("name"), str)}
        owners = frame["vm"].tolist() if "vm" in frame.columns else []
        for n, (owner, disk) in enumerate(zip(owners, _rows(frame, "disks.csv", problems, skip=("vm",)),
                                              strict=False)):
            i = vm_index.get(owner.strip())
            if i is None:
                problems.append(Problem(f"disks.csv row {n + 2} column vm", f"unknown VM {owner.strip()!r}"))
                continue
            disks = doc["vms"][i].setdefault("disks", [])
            disk_rows[(i, len(disks))] = n + 2
            disks.append(disk)
    if "links.csv" in frames:
        doc["links"] = _rows(frames["links.csv"], "links.csv", problems)
    policy_rows: dict[str, int] = {}
    if "policy.csv" in frames and {"key", "value"} <= set(frames["policy.csv"].columns):
        policy: dict[str, Any] = {}
        for n, (key, value) in enumerate(zip(frames["policy.csv"]["key"], frames["policy.csv"]["value"],
                                             strict=True)):
            key = key.strip()
            policy[key] = _cell(key, value.strip(), f"policy.csv row {n + 2} column value", problems)
            policy_rows[key] = n + 2
        doc["policy"] = policy
    return doc, {"disks": disk_rows, "policy": policy_rows}, problems


def _csv_location(where: str, rows: Mapping[str, Any]) -> str:
    """`vms[5].memory_mib` -> `vms.csv row 7 column memory_mib` (and disks to disks.csv rows)."""
    if where.startswith("policy."):
        key = where.split(".", 1)[1]
        row = rows["policy"].get(key)
        return f"policy.csv row {row} column value" if row else f"policy.csv key {key}"
    m = _LOCATION_RE.match(where)
    if not m:
        return where
    table, index, disk, column = m.group(1), int(m.group(2)), m.group(3), m.group(4)
    if disk is not None:
        row = rows["disks"].get((index, int(disk)))
        return f"disks.csv row {row}" + (f" column {column}" if column else "")
    return f"{table}.csv row {index + 2}" + (f" column {column}" if column else "")


def load_csv_inventory(path: str | Path) -> LoadedInventory:
    """A folder of CSV files (or one of its .csv files) -> LoadedInventory, or InventoryError."""
    folder = Path(path)
    if not folder.is_dir():
        folder = folder.parent
    source = str(path)
    doc, rows, problems = read_csv_document(folder)
    errors = [p for p in problems if p.severity == "error"]
    missing_columns = {(p.where, c) for p in errors for c in REQUIRED_COLUMNS.get(p.where, ()) if c in p.message}
    try:
        loaded = parse_inventory(doc, source)
    except InventoryError as e:
        mapped = []
        for p in e.problems:
            where = _csv_location(p.where, rows)
            file, _, rest = where.partition(" row ")
            column = rest.rpartition(" column ")[2]
            if (file, column) in missing_columns and p.message.startswith("required"):
                continue  # already said once: the whole column is missing
            mapped.append(Problem(where, p.message, p.severity))
        raise InventoryError(source, errors + mapped) from None
    if errors:
        raise InventoryError(source, errors + [Problem(_csv_location(w.where, rows), w.message, w.severity)
                                               for w in loaded.warnings])
    warnings = [Problem(_csv_location(w.where, rows), w.message, w.severity) for w in loaded.warnings]
    return LoadedInventory(loaded.inventory, warnings)


def _join(values: Any) -> str:
    if isinstance(values, dict):
        return ";".join(f"{k}={v}" for k, v in values.items())
    if isinstance(values, list):
        return ";".join(str(v) for v in values)
    if values is None:
        return ""
    if isinstance(values, bool):
        return "true" if values else "false"
    return str(values)


def write_csv_inventory(inventory: Inventory, folder: str | Path) -> None:
    """Writes the CSV layout above (the inverse of load_csv_inventory; missing_hosts is not kept)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    doc = inventory.to_dict()
    hosts = [{k: _join(v) for k, v in h.items()} for h in doc["hosts"]]
    vms = [{k: _join(v) for k, v in vm.items() if k != "disks"} for vm in doc["vms"]]
    disks = [{"vm": vm["name"], **{k: _join(v) for k, v in d.items()}} for vm in doc["vms"] for d in vm["disks"]]
    pd.DataFrame(hosts).to_csv(out / "hosts.csv", index=False)
    pd.DataFrame(vms).to_csv(out / "vms.csv", index=False)
    pd.DataFrame(disks, columns=["vm", "target", "source", "format", "storage", "capacity_gib", "allocation_gib"]
                 if not disks else None).to_csv(out / "disks.csv", index=False)
    pd.DataFrame(doc["links"], columns=["a", "b", "gbps"]).to_csv(out / "links.csv", index=False)
    pd.DataFrame([{"key": k, "value": _join(v)} for k, v in doc["policy"].items()]).to_csv(out / "policy.csv",
                                                                                         index=False)
