"""Property tests: valid inventories broken in one random way make `evac validate` exit 2, name the
location, and never show a traceback; valid inventories (generated fleets) exit 0."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.cli.main import main
from planner.errors import InventoryError
from planner.generate import generate_fleet
from planner.inventory import inventory_schema, parse_inventory
from tests.test_inventory import valid_doc

HOST_REQUIRED = ("name", "cpus", "memory_mib", "nic_gbps")
VM_REQUIRED = ("name", "host", "vcpus", "memory_mib")
HOST_NUMBERS = ("cpus", "memory_mib", "nic_gbps", "reserved_memory_mib", "local_disk_free_gib")
VM_NUMBERS = ("vcpus", "memory_mib", "dirty_rate_mibs")
POLICY_NUMBERS = ("cpu_overcommit", "memory_overcommit", "migration_share", "max_outbound_per_host",
                  "max_inbound_per_host", "max_concurrent", "max_downtime_ms", "progress_timeout_s")
WRONG_VALUES = st.one_of(st.text(max_size=5).map(lambda s: s + "G"), st.booleans(), st.none(),
                         # small integers: a 19-digit one is refused by the document reader, at its line and column,
                         # before any field is read (tests/test_hostile_inventories.py covers those)
                         st.lists(st.integers(-10**9, 10**9), max_size=2),
                         st.dictionaries(st.text(max_size=3), st.integers(-10**9, 10**9), max_size=1))

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _run(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["validate", str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err


def _write(tmp: Path, doc: Any) -> Path:
    path = tmp / "inventory.json"
    path.write_text(json.dumps(doc))  # NaN and Infinity are written as JSON's common extension
    return path


ALL_KINDS = ("delete", "wrong_type", "not_finite", "negative", "duplicate", "dangling", "policy")
# Breakages the JSON Schema can see too (not references between objects; JSON itself has no NaN).
FIELD_KINDS = ("delete", "wrong_type", "negative", "policy")


@st.composite
def broken(draw: st.DrawFn, kinds: tuple[str, ...] = ALL_KINDS) -> tuple[dict[str, Any], str]:
    """A valid document broken once, and the location the message must name."""
    doc = valid_doc()
    kind = draw(st.sampled_from(kinds))
    hosts, vms = doc["hosts"], doc["vms"]
    if kind == "delete":
        if draw(st.booleans()):
            i, key = draw(st.integers(0, len(hosts) - 1)), draw(st.sampled_from(HOST_REQUIRED))
            del hosts[i][key]
            return doc, f"hosts[{i}].{key}"
        i, key = draw(st.integers(0, len(vms) - 1)), draw(st.sampled_from(VM_REQUIRED))
        del vms[i][key]
        return doc, f"vms[{i}].{key}"
    if kind in ("wrong_type", "not_finite", "negative"):
        value: Any
        if kind == "wrong_type":
            value = draw(WRONG_VALUES)
        elif kind == "not_finite":
            value = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        else:
            value = draw(st.one_of(st.integers(-10**6, -1), st.floats(-1e6, -0.001)))
        if draw(st.booleans()):
            i, key = draw(st.integers(0, len(hosts) - 1)), draw(st.sampled_from(HOST_NUMBERS))
            hosts[i][key] = value
            return doc, f"hosts[{i}].{key}"
        i, key = draw(st.integers(0, len(vms) - 1)), draw(st.sampled_from(VM_NUMBERS))
        vms[i][key] = value
        return doc, f"vms[{i}].{key}"
    if kind == "duplicate":
        if draw(st.booleans()):
            i = draw(st.integers(1, len(hosts) - 1))
            hosts[i]["name"] = hosts[draw(st.integers(0, i - 1))]["name"]
            return doc, f"hosts[{i}].name"
        i = draw(st.integers(1, len(vms) - 1))
        vms[i]["name"] = vms[draw(st.integers(0, i - 1))]["name"]
        return doc, f"vms[{i}].name"
    if kind == "dangling":
        i = draw(st.integers(0, len(vms) - 1))
        what = draw(st.sampled_from(["host", "storage", "network"]))
        name = "x-" + draw(st.text("abcdefgh", min_size=1, max_size=6))
        if what == "host":
            vms[i]["host"] = name
            return doc, f"vms[{i}].host"
        if what == "storage":
            vms[i]["disks"] = [{"target": "vda", "storage": name}]
            return doc, f"vms[{i}].disks[0].storage"
        vms[i]["networks"] = [name]
        return doc, f"vms[{i}].networks"
    key = draw(st.sampled_from(POLICY_NUMBERS))
    doc["policy"][key] = draw(st.one_of(st.integers(-100, -1), st.floats(-100, -0.01), WRONG_VALUES))
    return doc, f"policy.{key}"


@SETTINGS
@given(case=broken())
def test_broken_inventories_exit_2_naming_the_location(case: tuple[dict[str, Any], str], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    doc, location = case
    code, output = _run(_write(tmp_path, doc), capsys)
    assert code == 2, output
    assert location in output
    assert "Traceback" not in output


@SETTINGS
@given(data=st.binary(max_size=200))
def test_garbage_bytes_exit_2_without_traceback(data: bytes, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "inventory.json"
    path.write_bytes(data)
    code, output = _run(path, capsys)
    assert code == 2, output
    assert "Traceback" not in output


@SETTINGS
@given(cut=st.integers(1, 400))
def test_truncated_json_names_line_and_column(cut: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = json.dumps(valid_doc(), indent=1)
    path = tmp_path / "inventory.json"
    path.write_text(text[:cut])
    code, output = _run(path, capsys)
    assert code == 2
    assert "malformed JSON" in output and "line " in output and "column " in output
    assert "Traceback" not in output


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hosts=st.integers(1, 12), vms=st.integers(0, 60), racks=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_generated_fleets_are_valid(hosts: int, vms: int, racks: int, seed: int, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    racks = min(racks, hosts)
    inv = generate_fleet(hosts, vms, racks, seed)
    code, output = _run(_write(tmp_path, inv.to_dict()), capsys)
    assert code == 0, output
    assert f"ok: {hosts} hosts, {vms} VMs" in output


SCHEMA = jsonschema.Draft202012Validator(inventory_schema())


@settings(max_examples=60, deadline=None)
@given(case=broken(kinds=FIELD_KINDS))
def test_schema_refuses_what_the_loader_refuses_field_by_field(case: tuple[dict[str, Any], str]) -> None:
    doc, _ = case
    with pytest.raises(InventoryError):
        parse_inventory(doc)
    assert not SCHEMA.is_valid(doc)


@settings(max_examples=10, deadline=None)
@given(hosts=st.integers(1, 10), vms=st.integers(0, 40), seed=st.integers(0, 2**16))
def test_schema_accepts_what_the_loader_accepts(hosts: int, vms: int, seed: int) -> None:
    doc = generate_fleet(hosts, vms, min(hosts, 3), seed).to_dict()
    assert parse_inventory(doc).warnings == []
    SCHEMA.validate(doc)
    SCHEMA.validate(valid_doc())
