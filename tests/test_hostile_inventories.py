"""Hostile inventories, generated: JSON and YAML documents edited at random, damaged bytes, CSV folders with
stray quotes, commas and cells; `evac validate` (and `evac plan -o`) in-process.

Always: exit 0 (the edit happened to be valid) or 2 naming the file and the place; never a traceback;
`plan -o` never touches its target when it refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from planner.errors import InventoryError
from planner.inventory import parse_inventory
from planner.plan import load_plan
from tests.hostile import (
    assert_refusal_names,
    count,
    dumps,
    has_located_problem,
    hostile_settings,
    mangled_bytes,
    mutated_document,
    report_cases,
    run_cli,
)
from tests.test_csv_import import DISKS, HOSTS, LINKS, POLICY, VMS
from tests.test_inventory import valid_doc

__all__ = ["report_cases"]
pytestmark = pytest.mark.timeout(300)

BASE = valid_doc()


def _valid(doc: Any) -> bool:
    try:
        parse_inventory(doc)
    except InventoryError:
        return False
    return True


@hostile_settings(1400)
@given(doc=mutated_document(BASE))
def test_edited_json_inventories(doc: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    count("json inventory edited")
    path = tmp_path / "inventory.json"
    path.write_text(dumps(doc))
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code in (0, 2), err
    if code == 2:
        assert_refusal_names(err, str(path))
        assert has_located_problem(err) or not isinstance(doc, dict), err
    else:
        assert _valid(json.loads(path.read_text())), err


@hostile_settings(900)
@given(data=st.data())
def test_damaged_json_and_yaml_inventory_bytes(data: st.DataObject, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    suffix = data.draw(st.sampled_from([".json", ".yaml"]))
    count(f"{suffix[1:]} inventory bytes")
    text = json.dumps(BASE, indent=1) if suffix == ".json" else yaml.safe_dump(BASE, sort_keys=False)
    path = tmp_path / f"inventory{suffix}"
    path.write_bytes(data.draw(mangled_bytes(text)))
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code in (0, 2), err
    if code == 2:
        assert_refusal_names(err, str(path))


@hostile_settings(500)
@given(doc=mutated_document(BASE, max_edits=2))
def test_edited_yaml_inventories(doc: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    count("yaml inventory edited")
    path = tmp_path / "inventory.yaml"
    try:
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    except (ValueError, yaml.YAMLError):
        assume(False)
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code in (0, 2), err
    if code == 2:
        assert_refusal_names(err, str(path))


CSV_FILES = {"hosts.csv": HOSTS, "vms.csv": VMS, "disks.csv": DISKS, "links.csv": LINKS, "policy.csv": POLICY}
CSV_DAMAGE = st.sampled_from(['"', ",", "\n", ";", "=", "\x00", " ", "\r", ",,", '""', "x", "-1", "nan", "é", "9" * 400,
                              "9" * 4301, "1e400"])


@st.composite
def damaged_csv_folder(draw: st.DrawFn) -> dict[str, bytes | None]:
    files: dict[str, bytes | None] = {k: v.encode() for k, v in CSV_FILES.items()}
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(files)))
        text = (files[name] or b"").decode("utf-8", "replace")
        how = draw(st.sampled_from(["insert", "insert", "delete", "dup_header", "cell", "drop", "utf16", "swap",
                                    "truncate", "extra_cells"]))
        lines = text.splitlines(keepends=True)
        if how == "insert":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(CSV_DAMAGE) + text[at:]
        elif how == "delete":
            at = draw(st.integers(0, max(0, len(text) - 1)))
            text = text[:at] + text[at + draw(st.integers(1, 12)):]
        elif how == "dup_header" and lines:
            header = lines[0].rstrip("\n").split(",")
            lines[0] = ",".join([*header, draw(st.sampled_from(header))]) + "\n"
            text = "".join(lines)
        elif how == "cell" and len(lines) > 1:
            i = draw(st.integers(1, len(lines) - 1))
            cells = lines[i].rstrip("\n").split(",")
            cells[draw(st.integers(0, len(cells) - 1))] = draw(st.text(max_size=6))
            lines[i] = ",".join(cells) + "\n"
            text = "".join(lines)
        elif how == "extra_cells" and len(lines) > 1:
            i = draw(st.integers(1, len(lines) - 1))
            lines[i] = lines[i].rstrip("\n") + ",extra,cells\n"
            text = "".join(lines)
        elif how == "swap" and len(lines) > 2:
            lines[0], lines[1] = lines[1], lines[0]
            text = "".join(lines)
        elif how == "truncate":
            text = text[:draw(st.integers(0, len(text)))]
        if how == "drop":
            files[name] = None
        elif how == "utf16":
            files[name] = text.encode("utf-16")
        else:
            files[name] = text.encode()
    return files


@hostile_settings(350)
@given(files=damaged_csv_folder())
def test_damaged_csv_folders(files: dict[str, bytes | None], tmp_path_factory: pytest.TempPathFactory,
                             capsys: pytest.CaptureFixture[str]) -> None:
    count("csv folder")
    folder = tmp_path_factory.mktemp("csv")
    for name, content in files.items():
        if content is not None:
            (folder / name).write_bytes(content)
    code, _, err = run_cli(["validate", str(folder)], capsys)
    assert code in (0, 2), err
    if code == 2:
        assert_refusal_names(err, str(folder))
        assert any(f in err for f in CSV_FILES) or has_located_problem(err), err


SMALL = {"version": 1, "hosts": [
    {"name": "h0", "cpus": 8, "memory_mib": 16384, "nic_gbps": 10, "state": "maintenance"},
    {"name": "h1", "cpus": 8, "memory_mib": 16384, "nic_gbps": 10}],
    "vms": [{"name": "vm0", "host": "h0", "vcpus": 1, "memory_mib": 1024},
            {"name": "vm1", "host": "h0", "vcpus": 1, "memory_mib": 2048, "dirty_rate_mibs": 5}]}


@hostile_settings(150)
@given(doc=mutated_document(SMALL, max_edits=2))
def test_plan_never_replaces_its_output_when_it_refuses(doc: Any, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    count("plan -o")
    path = tmp_path / "inventory.json"
    path.write_text(dumps(doc))
    out = tmp_path / "plan.json"
    out.write_bytes(b"KNOWN CONTENT\n")
    code, _, err = run_cli(["plan", str(path), "-o", str(out), "--time-limit", "2", "--workers", "1"], capsys)
    assert code in (0, 1, 2), err
    if code == 2:
        assert_refusal_names(err, str(path), "--drain")
        assert out.read_bytes() == b"KNOWN CONTENT\n"
    else:
        load_plan(out)  # a whole, valid plan
