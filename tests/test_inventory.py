"""planner.inventory: inventory v1 accepted exactly; every problem reported at once, with its location."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from planner.errors import InventoryError
from planner.inventory import inventory_schema, load_inventory, parse_inventory
from planner.model import HostState, VMState

DATA = Path(__file__).resolve().parent.parent / "data"
CONTRACT = Path("/work/shared/contracts/inventory-v1.md")


def valid_doc() -> dict[str, Any]:
    """The contract's example, completed into a fleet of three hosts on two switches."""
    host = {"name": "h01", "uri": "qemu+ssh://h01.example.net/system", "migration_address": "10.0.0.1", "cpus": 64,
            "memory_mib": 262144, "reserved_memory_mib": 8192, "arch": "x86_64", "cpu_model": "Icelake-Server",
            "cpu_features": ["avx512f", "pku"], "nic_gbps": 25, "switch": "tor-a", "local_disk_free_gib": 1800,
            "storage": ["nfs-1"], "networks": ["br-prod"], "labels": {"rack": "r1", "zone": "a"}, "state": "up"}
    h02 = {**copy.deepcopy(host), "name": "h02", "uri": "qemu+ssh://h02.example.net/system",
           "migration_address": "10.0.0.2"}
    h03 = {**copy.deepcopy(host), "name": "h03", "uri": "qemu+ssh://h03.example.net/system", "switch": "tor-b",
           "migration_address": "10.0.1.1"}
    vm = {"name": "web-01", "uuid": "4b1f0c9e-2f0e-4c36-9d55-0f6a3c2a9e11", "host": "h01", "vcpus": 4,
          "memory_mib": 8192, "state": "running", "dirty_rate_mibs": 12.5, "cpu_model": "Icelake-Server",
          "cpu_features": ["avx512f"],
          "disks": [{"target": "vda", "source": "/mnt/nfs/web-01.qcow2", "format": "qcow2", "storage": "nfs-1",
                     "capacity_gib": 20, "allocation_gib": 6.5},
                    {"target": "vdb", "source": "/var/lib/libvirt/images/web-01-data.qcow2", "format": "qcow2",
                     "storage": None, "capacity_gib": 40, "allocation_gib": 12}],
          "networks": ["br-prod"], "labels": {"app": "web"}, "anti_affinity": ["web"], "affinity": [],
          "pinned": False, "priority": 0}
    vm2 = {"name": "web-02", "host": "h02", "vcpus": 2, "memory_mib": 4096, "anti_affinity": ["web"]}
    vm3 = {"name": "db-01", "host": "h03", "vcpus": 8, "memory_mib": 32768, "state": "shutoff"}
    return {"version": 1, "hosts": [host, h02, h03], "vms": [vm, vm2, vm3],
            "links": [{"a": "tor-a", "b": "spine", "gbps": 100}, {"a": "tor-b", "b": "spine", "gbps": 100}],
            "policy": {"cpu_overcommit": 4.0, "memory_overcommit": 1.0, "migration_share": 0.5,
                       "max_outbound_per_host": 2, "max_inbound_per_host": 2, "max_concurrent": 0,
                       "max_downtime_ms": 500, "auto_converge": True, "progress_timeout_s": 150,
                       "completion_timeout_per_gib_s": 150}}


def problems_of(doc: object) -> list[str]:
    with pytest.raises(InventoryError) as info:
        parse_inventory(doc, "t.json")
    return [str(p) for p in info.value.problems if p.severity == "error"]


def test_contract_example_loads_into_the_model() -> None:
    inv = parse_inventory(valid_doc(), "t.json").inventory
    h = inv.host["h01"]
    assert (h.cpus, h.memory_mib, h.usable_memory_mib, h.nic_gbps, h.switch) == (64, 262144, 253952, 25.0, "tor-a")
    assert h.storage == frozenset({"nfs-1"}) and h.labels == {"rack": "r1", "zone": "a"} and h.state is HostState.UP
    vm = inv.vm["web-01"]
    assert vm.disks[1].storage is None and vm.local_disk_alloc_gib == 12
    assert vm.anti_affinity == frozenset({"web"}) and vm.dirty_rate_mibs == 12.5
    assert inv.vm["db-01"].state is VMState.SHUTOFF
    assert inv.policy.migration_share == 0.5 and len(inv.links) == 2


def test_contract_document_itself_parses() -> None:
    if not CONTRACT.exists():
        pytest.skip("contract not available on this machine")
    text = CONTRACT.read_text()
    example = text.split("```json", 1)[1].split("```", 1)[0]
    inv = parse_inventory(json.loads(example), "contract").inventory
    assert [h.name for h in inv.hosts] == ["h01"] and inv.vm["web-01"].host == "h01"


def test_defaults_and_optional_extras() -> None:
    doc = {"version": 1, "hosts": [{"name": "a", "cpus": 8, "memory_mib": 16384, "nic_gbps": 10,
                                    "storage_free_gib": {"nfs-1": 120.5}}],
           "vms": [{"name": "v", "host": "a", "vcpus": 1, "memory_mib": 512, "persistent": False,
                    "disks": [{"target": "vda", "cache": "none"}]}],
           "missing_hosts": [{"name": "b", "uri": "qemu+ssh://b/system", "reason": "timeout"}]}
    loaded = parse_inventory(doc)
    inv = loaded.inventory
    assert loaded.warnings == []
    assert inv.host["a"].storage_free_gib == {"nfs-1": 120.5} and inv.host["a"].switch is None
    assert inv.vm["v"].persistent is False and inv.vm["v"].disks[0].cache == "none"
    assert inv.vm["v"].disks[0].format == "raw" and inv.vm["v"].state is VMState.RUNNING
    assert inv.missing_hosts[0].reason == "timeout"
    assert inv.policy.cpu_overcommit == 4.0 and inv.policy.max_downtime_ms == 500


def test_digest_does_not_depend_on_how_numbers_or_defaults_are_written() -> None:
    a = valid_doc()
    b = valid_doc()
    b["hosts"][0]["nic_gbps"] = 25.0
    b["hosts"][0]["memory_mib"] = 262144.0
    del b["policy"]
    assert parse_inventory(a).inventory.sha256 == parse_inventory(b).inventory.sha256
    again = parse_inventory(parse_inventory(a).inventory.to_dict()).inventory
    assert again.sha256 == parse_inventory(a).inventory.sha256


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["vms"][1].__setitem__("memory_mib", -4), "vms[1].memory_mib: must be a positive integer, got -4"),
    (lambda d: d["hosts"][0].__setitem__("cpus", True), "hosts[0].cpus: must be a positive integer, got true"),
    (lambda d: d["vms"][0].__setitem__("vcpus", 2.5), "vms[0].vcpus: must be a positive integer, got 2.5"),
    (lambda d: d["vms"][0].__setitem__("dirty_rate_mibs", math.nan), "vms[0].dirty_rate_mibs: must be a finite"),
    (lambda d: d["hosts"][1].__setitem__("nic_gbps", math.inf), "hosts[1].nic_gbps: must be a finite number"),
    (lambda d: d["hosts"][1].__setitem__("nic_gbps", "25G"),
     "hosts[1].nic_gbps: must be a number of Gbit/s, got the string '25G' (units are in the field name: write 25)"),
    (lambda d: d["hosts"][0].__setitem__("memory_mib", "256GiB"), "write 262144"),
    (lambda d: d["hosts"][0].__setitem__("memory_mib", 2**40), "hosts[0].memory_mib: must be at most 67108864"),
    (lambda d: d["hosts"][0].__setitem__("cpus", 5000), "hosts[0].cpus: must be at most 4096"),
    (lambda d: d["hosts"][0].__setitem__("nic_gbps", 25000), "hosts[0].nic_gbps: must be at most 1600"),
    (lambda d: d["hosts"][0].__setitem__("reserved_memory_mib", 300000), "hosts[0].reserved_memory_mib: must be "
                                                                         "less than memory_mib"),
    (lambda d: d["vms"][0]["disks"][0].__setitem__("capacity_gib", -1), "vms[0].disks[0].capacity_gib: must be "
                                                                        "at least 0"),
    (lambda d: d["vms"][0].__setitem__("state", "runing"), "vms[0].state: must be one of running, paused, shutoff; "
                                                           "got the string 'runing' (did you mean 'running'?)"),
    (lambda d: d["hosts"][2].__setitem__("state", "offline"), "hosts[2].state: must be one of up, maintenance, "
                                                              "down"),
    (lambda d: d["hosts"][1].__setitem__("name", "h01"), "hosts[1].name: duplicate host name 'h01'"),
    (lambda d: d["vms"][1].__setitem__("name", "web-01"), "vms[1].name: duplicate VM name 'web-01'"),
    (lambda d: d["hosts"][1].__setitem__("uri", "qemu+ssh://h01.example.net/system"),
     "hosts[1].uri: same uri as host 'h01': qemu+ssh://h01.example.net/system"),
    (lambda d: d["vms"][1].__setitem__("uuid", "4B1F0C9E-2F0E-4C36-9D55-0F6A3C2A9E11"),
     "vms[1].uuid: duplicate uuid 4B1F0C9E-2F0E-4C36-9D55-0F6A3C2A9E11 (also VM 'web-01')"),
    (lambda d: d["vms"][0].__setitem__("uuid", "not-a-uuid"), "vms[0].uuid: malformed uuid 'not-a-uuid'"),
    (lambda d: d["vms"][2].__setitem__("host", "h3"), "vms[2].host: unknown host 'h3' (did you mean 'h03'?)"),
    (lambda d: d["hosts"][2].__setitem__("switch", "h01"), "hosts[2].switch: 'h01' is a host's name"),
    (lambda d: d["links"][1].__setitem__("a", "tor-bb"), "hosts[2].switch: switch tor-b has no link path"),
    (lambda d: d["links"].append({"a": "h02", "b": "spine", "gbps": 10}), "links[2].a: 'h02' is a host"),
    (lambda d: d["vms"][0]["disks"][0].__setitem__("storage", "nfs-9"),
     "vms[0].disks[0].storage: no host mounts storage 'nfs-9' (hosts mount: nfs-1)"),
    (lambda d: d["vms"][1].__setitem__("networks", ["br-dmz"]),
     "vms[1].networks: no host offers network 'br-dmz' (hosts offer: br-prod)"),
    (lambda d: d["vms"][1].__setitem__("vcpus", 300), "vms[1].vcpus: 300 vCPUs fit on no host: the largest takes 256"),
    (lambda d: d["vms"][1].__setitem__("memory_mib", 262144), "vms[1].memory_mib: 262144 MiB fits on no host"),
    (lambda d: d["policy"].__setitem__("migration_share", 1.5), "policy.migration_share: must be at most 1"),
    (lambda d: d["policy"].__setitem__("migration_share", 0), "policy.migration_share: must be at least 0.01"),
    (lambda d: d["policy"].__setitem__("migration_share", 1e-9), "policy.migration_share: must be at least 0.01"),
    (lambda d: d["hosts"][0].__setitem__("nic_gbps", 1e-6),
     "hosts[0].nic_gbps: must be at least 0.01 (10 Mbit/s, the slowest Ethernet; the field is in Gbit/s), got 1e-06"),
    (lambda d: d["links"][0].__setitem__("gbps", 0.001), "links[0].gbps: must be at least 0.01 (10 Mbit/s"),
    (lambda d: d["policy"].__setitem__("cpu_overcommit", -1), "policy.cpu_overcommit: must be positive"),
    (lambda d: d["policy"].__setitem__("max_concurrent", -1), "policy.max_concurrent: must be an integer >= 0"),
    (lambda d: d["policy"].__setitem__("auto_converge", "yes"), "policy.auto_converge: must be true or false"),
    (lambda d: d["links"].pop(), "hosts[2].switch: switch tor-b has no link path to switch 'tor-a'"),
    (lambda d: d["hosts"][2].pop("switch"), "hosts[2].switch: missing, but 2 other hosts name their switch"),
    (lambda d: d.__setitem__("version", 2), "version: must be 1 (this is inventory v1), got 2"),
    (lambda d: d.pop("version"), "version: required"),
    (lambda d: d.pop("hosts"), "hosts: required: a list"),
    (lambda d: d["vms"][0].pop("host"), "vms[0].host: required"),
    (lambda d: d["vms"].append("web-03"), "vms[3]: must be an object, got the string 'web-03'"),
    (lambda d: d["hosts"][0].__setitem__("labels", {"rack": 1}), "hosts[0].labels.rack: must be a string, got 1"),
    (lambda d: d["hosts"][0].__setitem__("storage", "nfs-1"), "hosts[0].storage: must be a list of strings"),
    (lambda d: d["vms"][0]["disks"].append({"target": "vda"}), "vms[0].disks[2].target: duplicate disk target 'vda'"),
])
def test_each_problem_is_named_with_its_location(mutate: Any, expected: str) -> None:
    doc = valid_doc()
    mutate(doc)
    found = problems_of(doc)
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    doc = valid_doc()
    doc["hosts"][0]["cpus"] = "many"
    doc["vms"][1]["memory_mib"] = -4
    doc["vms"][2]["host"] = "nowhere"
    doc["policy"]["migration_share"] = 2
    found = problems_of(doc)
    assert len(found) == 4
    assert [p.split(":")[0] for p in found] == ["hosts[0].cpus", "vms[1].memory_mib", "vms[2].host",
                                                "policy.migration_share"] or len(set(found)) == 4


def test_a_bad_host_size_is_not_blamed_on_every_vm() -> None:
    """A host size that failed validation must not make every VM "fit on no host" as well."""
    doc = valid_doc()
    for h in doc["hosts"]:
        h["memory_mib"] = "256G"
    found = problems_of(doc)
    assert [p.split(":")[0] for p in found] == ["hosts[0].memory_mib", "hosts[1].memory_mib", "hosts[2].memory_mib"]
    doc = valid_doc()
    doc["vms"][2]["memory_mib"] = 10**6  # with sizes known, an oversized VM is still caught
    assert any("fits on no host" in p for p in problems_of(doc))


def test_unknown_keys_are_warnings_with_did_you_mean() -> None:
    doc = valid_doc()
    doc["vms"][0]["memroy_mib"] = 1
    doc["polcy"] = {}
    loaded = parse_inventory(doc)
    texts = [str(w) for w in loaded.warnings]
    assert "vms[0].memroy_mib: unknown key, ignored (did you mean 'memory_mib'?)" in texts
    assert "polcy: unknown key, ignored (did you mean 'policy'?)" in texts
    assert all(w.severity == "warning" for w in loaded.warnings)


def test_a_host_over_capacity_now_is_a_warning() -> None:
    doc = valid_doc()
    doc["vms"].append({"name": "big", "host": "h02", "vcpus": 255, "memory_mib": 8192})
    loaded = parse_inventory(doc)
    assert any(w.where == "hosts[1]" and "vCPUs" in w.message for w in loaded.warnings)


def test_a_link_to_a_switch_without_hosts_is_a_warning() -> None:
    doc = valid_doc()
    doc["links"].append({"a": "tor-c", "b": "spine", "gbps": 10})
    texts = [str(w) for w in parse_inventory(doc).warnings]
    assert texts == ["links[2].a: no host is plugged into switch 'tor-c' and no other link reaches it, so this link "
                     "carries nothing (did you mean 'tor-b'?)"]


def test_links_without_switches_are_an_error() -> None:
    doc = valid_doc()
    for h in doc["hosts"]:
        del h["switch"]
    assert any(p.startswith("links: no host names its switch") for p in problems_of(doc))
    del doc["links"]
    assert len(parse_inventory(doc).inventory.hosts) == 3  # one flat switch


def test_not_an_object() -> None:
    assert problems_of([1, 2]) == ["must be a JSON/YAML object with version, hosts and vms; got a list"]


def test_json_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text('{\n  "version": 1,\n  "hosts": [,]\n}\n')
    with pytest.raises(InventoryError) as info:
        load_inventory(f)
    assert str(info.value.problems[0]).startswith("line 3 column 13: malformed JSON")


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("version: 1\nhosts:\n  - name: a\n   cpus: 4\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(f)
    assert str(info.value.problems[0]).startswith("line 4 column 4: malformed YAML")


def test_garbage_bytes(tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_bytes(b"\xff\x00garbage")
    with pytest.raises(InventoryError) as info:
        load_inventory(f)
    assert "not UTF-8" in str(info.value)
    f.write_bytes(b"\xff\xfe\x00garbage")  # a UTF-16 byte-order mark: said by name
    with pytest.raises(InventoryError, match="UTF-16 text: evac reads UTF-8"):
        load_inventory(f)


def test_yaml_and_json_give_the_same_inventory(tmp_path: Path) -> None:
    doc = valid_doc()
    (tmp_path / "a.json").write_text(json.dumps(doc))
    (tmp_path / "a.yml").write_text(yaml.safe_dump(doc))
    assert load_inventory(tmp_path / "a.json").inventory.sha256 == load_inventory(tmp_path / "a.yml").inventory.sha256


@pytest.mark.parametrize("name", ["small", "medium", "hard"])
def test_sample_fleets_load_without_warnings_and_match_the_schema(name: str) -> None:
    path = DATA / f"{name}.json"
    loaded = load_inventory(path)
    assert loaded.warnings == []
    jsonschema.Draft202012Validator(inventory_schema()).validate(json.loads(path.read_text()))


def test_schema_is_valid_draft_2020_12() -> None:
    schema = inventory_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize(("path", "value"), [
    (("hosts", 0, "cpus"), True), (("hosts", 0, "nic_gbps"), "25G"), (("vms", 0, "memory_mib"), -4),
    (("vms", 0, "state"), "gone"), (("policy", "migration_share"), 1.5), (("version",), 2),
    (("hosts", 0, "memory_mib"), 2**40), (("vms", 0, "uuid"), "xyz"), (("vms", 0, "vcpus"), 2.5),
])
def test_schema_and_loader_agree_on_broken_fields(path: tuple[Any, ...], value: Any) -> None:
    doc = json.loads((DATA / "small.json").read_text())
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert not jsonschema.Draft202012Validator(inventory_schema()).is_valid(doc)
    assert problems_of(doc)


def test_duplicate_json_keys_are_a_warning_naming_the_path(tmp_path: Path) -> None:
    text = json.dumps(valid_doc()).replace('"vcpus": 2,', '"vcpus": 2, "vcpus": 3,')
    f = tmp_path / "dup.json"
    f.write_text(text)
    loaded = load_inventory(f)
    assert loaded.inventory.vm["web-02"].vcpus == 3
    assert [str(w) for w in loaded.warnings] == ["vms[1].vcpus: key given twice (in 'web-02'); the last value, "
                                                 "3, is used"]


def test_negative_priority_is_fine_but_bounded() -> None:
    doc = valid_doc()
    doc["vms"][0]["priority"] = -5
    assert parse_inventory(doc).inventory.vm["web-01"].priority == -5
    doc["vms"][0]["priority"] = -(10**12)
    assert problems_of(doc) == ["vms[0].priority: must be at least -1000000000, got -1000000000000"]


# ---- names a shell, a terminal or a log line would misread (issue 8 item 3)

CONTROL_CHARACTERS = ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u202e"]


@pytest.mark.parametrize("char", CONTROL_CHARACTERS)
@pytest.mark.parametrize(("path", "where"), [
    (("hosts", 1, "name"), "hosts[1].name"), (("vms", 1, "name"), "vms[1].name"), (("vms", 2, "host"), "vms[2].host"),
    (("hosts", 2, "switch"), "hosts[2].switch"), (("vms", 0, "disks", 1, "target"), "vms[0].disks[1].target"),
    (("vms", 0, "disks", 0, "storage"), "vms[0].disks[0].storage"), (("hosts", 0, "storage", 0), "hosts[0].storage"),
    (("hosts", 0, "networks", 0), "hosts[0].networks"), (("hosts", 0, "labels", "rack"), "hosts[0].labels.rack"),
    (("vms", 0, "anti_affinity", 0), "vms[0].anti_affinity"), (("vms", 0, "disks", 0, "source"),
                                                              "vms[0].disks[0].source"),
    (("hosts", 0, "cpu_model"), "hosts[0].cpu_model"), (("links", 0, "a"), "links[0].a"),
])
def test_a_control_character_in_any_name_is_an_error_at_its_location(char: str, path: tuple[Any, ...],
                                                                      where: str) -> None:
    doc = valid_doc()
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = f"a{char}b"
    found = problems_of(doc)
    assert any(p.startswith(where) and "control character" in p for p in found), found
    assert all(char not in p for p in found)  # the message shows it escaped, never raw


def test_a_control_character_in_a_label_key_is_an_error() -> None:
    doc = valid_doc()
    doc["vms"][0]["labels"] = {"app\nx": "web"}
    assert any("vms[0].labels" in p and "control character" in p for p in problems_of(doc))


def test_printable_unicode_names_are_fine() -> None:
    doc = valid_doc()
    doc["vms"][0]["name"] = "wéb-01 (prod) ünïcode ✓"
    doc["vms"][0]["labels"] = {"owner": "Zoë"}
    assert parse_inventory(doc).inventory.vm["wéb-01 (prod) ünïcode ✓"]


# ---- URIs and migration addresses (issue 8 item 4): the rules of `evac collect`, at validation

@pytest.mark.parametrize(("uri", "needle"), [
    ("qemu+ext:///system", "`ext` transport"), ("qemu+ssh://h0/system?command=/bin/sh", "command="),
    ("qemu+tls://h0/system?no_verify=1", "no_verify"), ("qemu+ssh://user:pass@h0/system", "password"),
    ("qemu+ssh://h0/system?known_hosts_verify=ignore", "known_hosts_verify"), ("not a uri at all", "spaces"),
    ("h01.example.net", "malformed"),
])
def test_a_dangerous_host_uri_is_an_error_at_validation(uri: str, needle: str) -> None:
    doc = valid_doc()
    doc["hosts"][1]["uri"] = uri
    found = problems_of(doc)
    assert any(p.startswith("hosts[1].uri: ") and needle in p for p in found), found


def test_a_dangerous_missing_host_uri_is_an_error() -> None:
    doc = valid_doc()
    doc["missing_hosts"] = [{"name": "h09", "uri": "qemu+ext:///system", "reason": "unreachable"}]
    assert any(p.startswith("missing_hosts[0].uri: ") for p in problems_of(doc))


def test_tcp_is_a_warning_at_validation() -> None:
    doc = valid_doc()
    doc["hosts"][1]["uri"] = "qemu+tcp://10.77.0.12/system"
    loaded = parse_inventory(doc)
    assert [str(w) for w in loaded.warnings if w.where == "hosts[1].uri"] == [
        "hosts[1].uri: qemu+tcp is unencrypted and unauthenticated: `evac run` refuses it unless "
        "--allow-insecure-transport is given"]


@pytest.mark.parametrize("address", ["tcp://10.0.0.9", "10.0.0.9:49152", "10.0.0.9/x", "h;rm", "-oProxy",
                                     "h02?x=1", "a b", "fd00::1]", "[h02]", "h_02", ""])
def test_a_migration_address_must_be_an_ip_or_a_host_name(address: str) -> None:
    doc = valid_doc()
    doc["hosts"][1]["migration_address"] = address
    found = problems_of(doc)
    assert any(p.startswith("hosts[1].migration_address: ") for p in found), found


@pytest.mark.parametrize("address", ["10.0.0.9", "fd00::1", "[fd00::1]", "h02", "h02.mig.example.net",
                                     "h02.example.net."])
def test_good_migration_addresses_pass(address: str) -> None:
    doc = valid_doc()
    doc["hosts"][1]["migration_address"] = address
    assert parse_inventory(doc).inventory.host["h02"].migration_address == address


def test_reconfiguration_fields_load_and_round_trip() -> None:
    doc = valid_doc()
    plain = parse_inventory(copy.deepcopy(doc), "plain").inventory
    doc["vms"][0].update(requires_host_labels={"zone": "a"}, cpu_used=1.5, memory_used_mib=4096)
    inv = parse_inventory(doc, "inv").inventory
    v = inv.vm["web-01"]
    assert dict(v.requires_host_labels) == {"zone": "a"} and v.cpu_used == 1.5 and v.memory_used_mib == 4096
    again = parse_inventory(copy.deepcopy(inv.to_dict()), "again").inventory
    assert again.sha256 == inv.sha256 != plain.sha256
    # an inventory that does not use them keeps the digest it always had
    assert "requires_host_labels" not in json.dumps(plain.to_dict()) and "cpu_used" not in json.dumps(plain.to_dict())


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("requires_host_labels", ["zone"], "requires_host_labels"),
    ("requires_host_labels", {"zone": 1}, "requires_host_labels"),
    ("cpu_used", -1, "cpu_used"),
    ("cpu_used", "2 cores", "cpu_used"),
    ("memory_used_mib", 1.5, "memory_used_mib"),
    ("memory_used_mib", -3, "memory_used_mib"),
])
def test_bad_reconfiguration_fields_are_named(field: str, value: Any, needle: str) -> None:
    doc = valid_doc()
    doc["vms"][0][field] = value
    with pytest.raises(InventoryError) as e:
        parse_inventory(doc, "inv")
    assert any(p.where.startswith(f"vms[0].{needle}") for p in e.value.problems), e.value.problems
