"""The model's canonical form: the digest a plan records must not depend on how numbers were typed."""

from planner.model import VM, Disk, Host, Inventory, Link, Policy


def _inventory(as_float: bool) -> Inventory:
    f = float if as_float else int
    return Inventory(
        hosts=(Host("h1", cpus=8, memory_mib=16384, nic_gbps=f(10), switch="a", local_disk_free_gib=f(100)),
               Host("h2", cpus=8, memory_mib=16384, nic_gbps=f(25), switch="b")),
        vms=(VM("v1", "h1", vcpus=2, memory_mib=2048, dirty_rate_mibs=f(3),
                disks=(Disk("vda", capacity_gib=f(20), allocation_gib=f(5)),)),),
        links=(Link("a", "b", f(100)),),
        policy=Policy(max_downtime_ms=f(500), progress_timeout_s=f(150), completion_timeout_per_gib_s=f(150),
                      cpu_overcommit=f(4), memory_overcommit=f(1)),
    )


def test_digest_ignores_int_vs_float() -> None:
    assert _inventory(True).sha256 == _inventory(False).sha256


def test_digest_changes_with_content() -> None:
    a = _inventory(True)
    b = Inventory(hosts=a.hosts, vms=(VM("v1", "h1", vcpus=4, memory_mib=2048),), links=a.links, policy=a.policy)
    assert a.sha256 != b.sha256


def test_default_policy_matches_contract_defaults() -> None:
    d = Inventory(hosts=(), vms=()).to_dict()["policy"]
    assert d == {"cpu_overcommit": 4.0, "memory_overcommit": 1.0, "migration_share": 0.5,
                 "max_outbound_per_host": 2, "max_inbound_per_host": 2, "max_concurrent": 0,
                 "max_downtime_ms": 500.0, "auto_converge": True, "progress_timeout_s": 150.0,
                 "completion_timeout_per_gib_s": 150.0}
