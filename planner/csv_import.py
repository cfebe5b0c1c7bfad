"""Inventory v1 from a folder of CSV files, as a CMDB exports it; fed to the same validator as JSON.

Files: `hosts.csv`, `vms.csv` (required), `disks.csv` (one row per disk, a `vm` column names its VM),
`links.csv`, `policy.csv` (columns `key,value`). Column names are the JSON field names. List columns
(cpu_features, storage, networks, anti_affinity, affinity) separate items with `;`; labels (and
storage_free_gib) are `k=v;k=v`. An empty cell means "not given" (for `disks.csv` storage: local disk).

Problems name the file, row and column: `vms.csv row 7 column memory_mib: ...`. Rows count the header
as row 1, as a spreadsheet shows them (blank rows counted, a quoted multi-line cell one row). Quoting is
strict: an unterminated quote is named at the row (and line) where it opens, extra cells and a column
given twice in the header at their row.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from planner.documents import MAX_INT_DIGITS, decode_text
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
        return int(text) if len(text.lstrip("+-")) <= MAX_INT_DIGITS else text
    try:
        return float(text)
    except ValueError:
        return text  # the validator says what it should have been, with the unit


def _cell(column: str, text: str, where: str, problems: list[Problem], file: str = "") -> object:
    """A CSV cell as the JSON value the validator expects (strings it cannot convert stay strings)."""
    if file == "disks.csv" and column == "storage":
        return text  # one storage id per disk, not a list
    if column in INT_COLUMNS or column in NUMBER_COLUMNS:
        digits = len(text.lstrip("+-"))
        if _INT_RE.match(text) and digits > MAX_INT_DIGITS:  # as the JSON and YAML reader: int() has limits
            problems.append(Problem(where, f"integer with {digits} digits: no evac field takes a number this large"))
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


@dataclass
class _Table:
    """One CSV file: its header and its data rows, each with the row number a spreadsheet shows."""

    file: str
    columns: list[str]
    rows: list[tuple[int, list[str]]] = field(default_factory=list)

    def column(self, name: str) -> list[tuple[int, str]]:
        i = self.columns.index(name)
        return [(n, cells[i]) for n, cells in self.rows]


def _read(path: Path, problems: list[Problem]) -> _Table | None:
    """Parses one file with the csv module (strict quoting), naming the row of every problem.

    Rows are records, counted as a spreadsheet shows them (header = row 1, blank rows counted); a quoted
    cell may span lines, so a quote error also gives the line it started on."""
    name = path.name
    try:
        text = decode_text(path.read_bytes(), name, InventoryError)
    except OSError as e:
        problems.append(Problem(name, f"cannot read: {e.strerror or e}"))
        return None
    except InventoryError as e:
        problems += [Problem(f"{name} {p.where}".strip(), p.message) for p in e.problems]
        return None
    records = _records(name, text, problems)
    if records is None:
        return None
    while records and not "".join(records[0][1]).strip():
        records.pop(0)  # blank lines before the header
    if not records:
        problems.append(Problem(name, "empty file (want a header row with the column names)"))
        return None
    header_row, header = records[0]
    columns = [c.strip() for c in header]
    data = [(n, cells) for n, cells in records[1:] if "".join(cells).strip()]
    bad_header = _header_problems(name, header_row, columns, data)
    if bad_header:
        problems += bad_header
        return None
    while columns and not columns[-1]:
        columns.pop()  # a trailing comma in the header, with nothing under it
    table = _Table(name, columns)
    width = len(columns)
    for n, cells in data:
        if len(cells) != width:
            if len(cells) > width and "".join(cells[width:]).strip():
                extra = sum(1 for c in cells[width:] if c.strip())
                problems.append(Problem(f"{name} row {n}", f"{width + extra} cells but the header has {width} "
                                                           f"columns (a comma too many, or a cell with a comma "
                                                           f"that needs quotes)"))
                continue
            cells = [*cells[:width], *[""] * (width - len(cells))]
        table.rows.append((n, cells))
    missing = [c for c in REQUIRED_COLUMNS[name] if c not in columns]
    if missing:
        problems.append(Problem(name, f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}"))
    return table


def _records(name: str, text: str, problems: list[Problem]) -> list[tuple[int, list[str]]] | None:
    """(row number, cells) of every record, or None with the problem at the row and line it starts on."""
    try:  # the fast path: the whole file at C speed
        return list(enumerate(csv.reader(io.StringIO(text, newline=""), strict=True, skipinitialspace=True), 1))
    except csv.Error:
        pass
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, skipinitialspace=True)
    row = 0
    while True:  # again, one record at a time, to know where the bad one starts
        start_line = reader.line_num + 1
        try:
            next(reader)
        except StopIteration:  # cannot happen: the same text failed above
            problems.append(Problem(name, "malformed CSV"))
            return None
        except csv.Error as e:
            problems.append(Problem(f"{name} row {row + 1} (line {start_line})", _csv_error(str(e))))
            return None
        row += 1


def _csv_error(message: str) -> str:
    if message.startswith(("unexpected end of data", "field larger than field limit")):
        return "malformed CSV: a quoted cell that starts in this row is never closed (unterminated quote)"
    if "expected after" in message:
        return "malformed CSV: text after a closing quote (a quote inside a cell is written twice: \"\")"
    return f"malformed CSV: {message}"


def _header_problems(name: str, row: int, columns: list[str], data: list[tuple[int, list[str]]]) -> list[Problem]:
    out = []
    first: dict[str, int] = {}
    for i, column in enumerate(columns, 1):
        if not column:
            if any(len(cells) >= i and cells[i - 1].strip() for _, cells in data):
                out.append(Problem(f"{name} row {row} column {i}", "a column without a name in the header "
                                                                   "holds values"))
            continue
        if column in first:
            out.append(Problem(f"{name} row {row} column {column}", f"column given twice in the header (columns "
                                                                    f"{first[column]} and {i})"))
        else:
            first[column] = i
    return out


def _rows(table: _Table, problems: list[Problem], skip: tuple[str, ...] = ()) -> tuple[list[dict[str, Any]], list[int]]:
    """Each data row as the JSON object the validator expects, and its row number."""
    keep = [(i, c) for i, c in enumerate(table.columns) if c and c not in skip]
    out, numbers = [], []
    for n, cells in table.rows:
        row: dict[str, Any] = {}
        for i, column in keep:
            text = cells[i].strip()
            if text:
                row[column] = _cell(column, text, f"{table.file} row {n} column {column}", problems, table.file)
            elif table.file == "disks.csv" and column == "storage":
                row[column] = None
        out.append(row)
        numbers.append(n)
    return out, numbers


def read_csv_document(folder: Path) -> tuple[dict[str, Any], dict[str, Any], list[Problem]]:
    """The inventory document built from the CSV files, a map for locations, and problems found so far."""
    problems: list[Problem] = []
    tables: dict[str, _Table] = {}
    for name in FILES:
        path = folder / name
        if path.exists():
            table = _read(path, problems)
            if table is not None:
                tables[name] = table
        elif name in ("hosts.csv", "vms.csv"):
            problems.append(Problem(name, f"missing: an inventory folder needs hosts.csv and vms.csv ({folder})"))
    doc: dict[str, Any] = {"version": 1}
    rows: dict[str, Any] = {"hosts": [], "vms": [], "links": [], "disks": {}, "policy": {}}
    for key in ("hosts", "vms", "links"):
        if f"{key}.csv" in tables:
            doc[key], rows[key] = _rows(tables[f"{key}.csv"], problems)
        elif key != "links":
            doc[key] = []
    if "disks.csv" in tables:
        table = tables["disks.csv"]
        vm_index = {v.get("name"): i for i, v in enumerate(doc["vms"]) if isinstance(v.get("name"), str)}
        owners = table.column("vm") if "vm" in table.columns else []
        disks_of, _ = _rows(table, problems, skip=("vm",))
        for (n, owner), disk in zip(owners, disks_of, strict=False):
            i = vm_index.get(owner.strip())
            if i is None:
                problems.append(Problem(f"disks.csv row {n} column vm", f"unknown VM {owner.strip()!r}"))
                continue
            disks = doc["vms"][i].setdefault("disks", [])
            rows["disks"][(i, len(disks))] = n
            disks.append(disk)
    if "policy.csv" in tables and {"key", "value"} <= set(tables["policy.csv"].columns):
        policy: dict[str, Any] = {}
        table = tables["policy.csv"]
        for (n, key), (_, value) in zip(table.column("key"), table.column("value"), strict=True):
            key = key.strip()
            if key in policy:
                problems.append(Problem(f"policy.csv row {n} column key", f"{key!r} given twice (first on row "
                                                                          f"{rows['policy'][key]})"))
                continue
            policy[key] = _cell(key, value.strip(), f"policy.csv row {n} column value", problems)
            rows["policy"][key] = n
        doc["policy"] = policy
    return doc, rows, problems


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
    numbers = rows[table]
    row = numbers[index] if index < len(numbers) else index + 2
    return f"{table}.csv row {row}" + (f" column {column}" if column else "")


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
