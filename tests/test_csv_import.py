"""planner.csv_import: a folder of CSV files is the same inventory as the JSON, problems name file, row, column."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.csv_import import load_csv_inventory, write_csv_inventory
from planner.errors import InventoryError
from planner.generate import generate_fleet
from planner.inventory import load_inventory, parse_inventory
from tests.test_inventory import valid_doc

HOSTS = """name,cpus,memory_mib,nic_gbps,switch,storage,networks,labels,state,cpu_features
a1,32,131072,25,tor-a,nfs-1;ceph-1,br-prod,rack=r1;zone=a,up,avx512f;pku
a2,32,131072,25,tor-a,nfs-1,br-prod,rack=r1,maintenance,
b1,64,262144,10,tor-b,nfs-1,br-prod;br-dmz,,,
"""
VMS = """name,host,vcpus,memory_mib,dirty_rate_mibs,anti_affinity,pinned,uuid
web-01,a1,2,4096,1.5,web,false,4b1f0c9e-2f0e-4c36-9d55-0f6a3c2a9e11
web-02,a2,2,4096,,web;front,no,
db-01,b1,8,32768,3,,true,
"""
DISKS = """vm,target,source,format,storage,capacity_gib,allocation_gib
web-01,vda,/mnt/nfs/web-01.qcow2,qcow2,nfs-1,20,6.5
web-01,vdb,/var/lib/libvirt/images/web-01-data.qcow2,qcow2,,40,12
db-01,vda,/mnt/nfs/db-01.qcow2,qcow2,nfs-1,100,80
"""
LINKS = "a,b,gbps\ntor-a,spine,100\ntor-b,spine,40\n"
POLICY = "key,value\nmigration_share,0.4\nmax_concurrent,8\nauto_converge,false\n"


def _folder(tmp_path: Path, **overrides: str) -> Path:
    files = {"hosts.csv": HOSTS, "vms.csv": VMS, "disks.csv": DISKS, "links.csv": LINKS, "policy.csv": POLICY}
    files.update({k.replace("_", "."): v for k, v in overrides.items()})
    for name, text in files.items():
        if text:
            (tmp_path / name).write_text(text)
    return tmp_path


def _problems(path: Path) -> list[str]:
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    return [str(p) for p in info.value.problems]


def test_csv_folder_loads(tmp_path: Path) -> None:
    inv = load_inventory(_folder(tmp_path)).inventory
    assert inv.host["a1"].storage == frozenset({"nfs-1", "ceph-1"}) and inv.host["a1"].labels == {"rack": "r1",
                                                                                                    "zone": "a"}
    assert inv.host["a2"].state.value == "maintenance" and inv.host["b1"].networks == frozenset({"br-prod", "br-dmz"})
    web = inv.vm["web-01"]
    assert [d.storage for d in web.disks] == ["nfs-1", None] and web.disks[1].allocation_gib == 12
    assert inv.vm["web-02"].anti_affinity == frozenset({"web", "front"}) and inv.vm["web-02"].dirty_rate_mibs == 0
    assert inv.vm["db-01"].pinned is True and inv.vm["web-02"].pinned is False
    assert inv.policy.migration_share == 0.4 and inv.policy.max_concurrent == 8 and inv.policy.auto_converge is False
    assert [(lk.a, lk.gbps) for lk in inv.links] == [("tor-a", 100.0), ("tor-b", 40.0)]


def test_a_csv_file_path_means_its_folder(tmp_path: Path) -> None:
    assert len(load_inventory(_folder(tmp_path) / "vms.csv").inventory.vms) == 3


def test_round_trip_keeps_the_digest(tmp_path: Path) -> None:
    inv = generate_fleet(12, 80, 3, seed=5)
    write_csv_inventory(inv, tmp_path)
    assert load_csv_inventory(tmp_path).inventory.sha256 == inv.sha256
    contract = parse_inventory(valid_doc()).inventory
    write_csv_inventory(contract, tmp_path / "c")
    assert load_csv_inventory(tmp_path / "c").inventory.sha256 == contract.sha256


def test_problems_name_file_row_and_column(tmp_path: Path) -> None:
    vms = VMS.replace("db-01,b1,8,32768", "db-01,b9,8,-4").replace("web-02,a2,2,4096", "web-02,a2,2,8G")
    disks = DISKS.replace("db-01,vda,/mnt/nfs/db-01.qcow2,qcow2,nfs-1", "db-01,vda,/mnt/nfs/db-01.qcow2,qcow2,nfs-9")
    found = _problems(_folder(tmp_path, vms_csv=vms, disks_csv=disks,
                              policy_csv=POLICY.replace("0.4", "1.4")))
    assert "vms.csv row 3 column memory_mib: must be a positive integer of MiB, got the string '8G' (units are in " \
           "the field name: write 8192)" in found
    assert "vms.csv row 4 column memory_mib: must be a positive integer, got -4" in found
    assert any(p.startswith("vms.csv row 4 column host: unknown host 'b9'") for p in found)
    assert any(p.startswith("disks.csv row 4 column storage: no host mounts storage 'nfs-9'") for p in found)
    assert any(p.startswith("policy.csv row 2 column value: must be at most 1") for p in found)


def test_missing_file_column_and_unknown_disk_owner(tmp_path: Path) -> None:
    hosts = HOSTS.replace("name,cpus,", "name,").replace("a1,32,", "a1,").replace("a2,32,", "a2,") \
        .replace("b1,64,", "b1,")
    disks = DISKS + "ghost,vda,,raw,,1,1\n"
    found = _problems(_folder(tmp_path, hosts_csv=hosts, disks_csv=disks))
    assert "hosts.csv: missing column cpus" in found
    assert not any("column cpus: required" in p for p in found)  # said once, not once per row
    assert "disks.csv row 5 column vm: unknown VM 'ghost'" in found
    (tmp_path / "vms.csv").unlink()
    assert any(p.startswith("vms.csv: missing") for p in _problems(tmp_path))


def test_bad_labels_and_unknown_columns(tmp_path: Path) -> None:
    hosts = HOSTS.replace("rack=r1;zone=a", "rack=r1;zonea").replace("name,cpus", "name,colour,cpus") \
        .replace("a1,32", "a1,red,32").replace("a2,32", "a2,,32").replace("b1,64", "b1,,64")
    found = _problems(_folder(tmp_path, hosts_csv=hosts))
    assert "hosts.csv row 2 column labels: 'zonea' is not key=value (write k=v;k=v)" in found
    loaded = load_inventory(_folder(tmp_path, hosts_csv=hosts.replace("zonea", "zone=a")))
    assert [str(w) for w in loaded.warnings] == ["hosts.csv row 2 column colour: unknown key, ignored"]


def test_malformed_csv(tmp_path: Path) -> None:
    found = _problems(_folder(tmp_path, vms_csv='name,host\n"web-01,a1\n'))
    assert any(p.startswith("vms.csv row 2 (line 2): malformed CSV") for p in found)
    (tmp_path / "vms.csv").write_bytes(b"")
    assert any(p.startswith("vms.csv: empty file") for p in _problems(tmp_path))


VMS_HEADER = "name,host,vcpus,memory_mib\n"


def test_unterminated_quote_is_named_where_it_opens(tmp_path: Path) -> None:
    """The quote opens on row 3; the csv parser only notices at the end of the file, many lines later."""
    text = VMS_HEADER + "web-01,a1,1,512\n" + '"web-02,a1,1,512\n' + "".join(f"db-{i},b1,1,512\n" for i in range(9))
    found = _problems(_folder(tmp_path, vms_csv=text))
    assert "vms.csv row 3 (line 3): malformed CSV: a quoted cell that starts in this row is never closed " \
           "(unterminated quote)" in found


def test_extra_cells_name_their_row(tmp_path: Path) -> None:
    text = VMS_HEADER + "web-01,a1,1,512\nweb-02,a1,1,512,extra\ndb-01,b1,8,1024,,\n"
    found = _problems(_folder(tmp_path, vms_csv=text))
    assert "vms.csv row 3: 5 cells but the header has 4 columns (a comma too many, or a cell with a comma " \
           "that needs quotes)" in found
    assert not any("row 4" in p for p in found)  # trailing empty cells are no data


def test_a_column_given_twice_in_the_header(tmp_path: Path) -> None:
    text = "name,host,vcpus,memory_mib,vcpus\nweb-01,a1,1,512,2\n"
    found = _problems(_folder(tmp_path, vms_csv=text))
    assert "vms.csv row 1 column vcpus: column given twice in the header (columns 3 and 5)" in found


def test_rows_count_as_a_spreadsheet_shows_them(tmp_path: Path) -> None:
    """A blank row and a quoted cell over two lines: the bad cell is on row 5 (line 6)."""
    text = VMS_HEADER + 'web-01,a1,1,512\n\n"web\n-02",a1,1,512\ndb-01,b1,-8,1024\n'
    found = _problems(_folder(tmp_path, vms_csv=text))
    assert any(p.startswith("vms.csv row 5 column vcpus:") for p in found), found


def test_policy_key_given_twice(tmp_path: Path) -> None:
    found = _problems(_folder(tmp_path, policy_csv=POLICY + "migration_share,0.9\n"))
    assert "policy.csv row 5 column key: 'migration_share' given twice (first on row 2)" in found


def test_a_utf16_csv_is_named(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "hosts.csv").write_bytes(HOSTS.encode("utf-16"))
    assert "hosts.csv byte 0: UTF-16 text: evac reads UTF-8 (save the file as UTF-8)" in _problems(folder)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.integers(0, 19), column=st.sampled_from(["vcpus", "memory_mib", "host", "name"]),
       value=st.sampled_from(["-3", "abc", "1.5", "nan", "", "8G", "true"]))
def test_a_broken_cell_names_its_file_row_and_column(tmp_path_factory: pytest.TempPathFactory, row: int, column: str,
                                                     value: str, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    from executor.cli.main import main

    folder = tmp_path_factory.mktemp("csv")
    write_csv_inventory(generate_fleet(6, 20, 2, seed=1), folder)
    frame = pd.read_csv(folder / "vms.csv", dtype=str, keep_default_na=False)
    if column == "name" and value:
        row = max(row, 1)
        value = frame.loc[row - 1, "name"]  # a duplicate: reported at the later row
    elif column == "host" and value:
        value = "x-" + value  # an unknown host
    frame.loc[row, column] = value
    frame.to_csv(folder / "vms.csv", index=False)
    code = main(["validate", str(folder)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"vms.csv row {row + 2} column {column}" in err
    assert "Traceback" not in err


def test_a_control_character_in_a_csv_cell_names_its_row_and_column(tmp_path: Path) -> None:
    vms = VMS.replace("web-02,a2", '"web\n02",a2')
    found = _problems(_folder(tmp_path, vms_csv=vms))
    assert any(p.startswith("vms.csv row 3 column name: ") and "control character" in p for p in found), found


def test_a_dangerous_uri_in_a_csv_cell_names_its_row_and_column(tmp_path: Path) -> None:
    hosts = HOSTS.replace("name,cpus,", "name,uri,cpus,").replace("a1,32,", "a1,qemu+ext:///system,32,") \
        .replace("a2,32,", "a2,,32,").replace("b1,64,", "b1,,64,")
    found = _problems(_folder(tmp_path, hosts_csv=hosts))
    assert any(p.startswith("hosts.csv row 2 column uri: ") and "ext" in p for p in found), found


@pytest.mark.parametrize("digits", [19, 400, 4301])
@pytest.mark.parametrize("column", ["memory_mib", "nic_gbps"])
def test_a_huge_number_in_a_cell_names_the_cell(tmp_path: Path, digits: int, column: str) -> None:
    """4,301 digits broke int() (Python's conversion limit) and 400 broke float(): a traceback either way."""
    cells = {"memory_mib": "131072", "nic_gbps": "25"}
    cells[column] = "9" * digits
    hosts = HOSTS.replace("a1,32,131072,25,", f"a1,32,{cells['memory_mib']},{cells['nic_gbps']},", 1)
    found = _problems(_folder(tmp_path, hosts_csv=hosts))
    assert f"hosts.csv row 2 column {column}: integer with {digits} digits: no evac field takes a number this " \
           f"large" in found
