"""executor.uri.check_run_uris: what one `evac run` would connect to, judged in every mode alike."""

from __future__ import annotations

from dataclasses import replace

from executor.uri import check_run_uris
from planner.model import Inventory
from tests.fleet import make_inventory


def _inventory(uri: str = "qemu+ssh://{name}.example.net/system") -> Inventory:
    base = make_inventory(2, 1)
    return replace(base, hosts=tuple(replace(h, uri=uri.format(name=h.name)) for h in base.hosts))


def test_safe_uris_and_peers_pass() -> None:
    assert check_run_uris(_inventory(), {"h1": "qemu+tls://h1.example.net/system"}) == []


def test_each_problem_names_its_host_or_option() -> None:
    inv = _inventory("qemu+tcp://{name}/system")
    problems = check_run_uris(inv, {"h1": "qemu+ext:///system", "ghost": "qemu:///system"})
    where = sorted(p.where for p in problems)
    assert where == ["--peer-uri ghost", "--peer-uri h1", "hosts[0].uri (h0)", "hosts[1].uri (h1)"], problems
    assert check_run_uris(inv, {}, allow_insecure_transport=True) == []


def test_overrides_replace_the_inventory_uri() -> None:
    problems = check_run_uris(_inventory(), uri_overrides={"h0": "qemu+ext:///system", "zz": "qemu:///system"})
    assert sorted(p.where for p in problems) == ["URI of h0", "URI of zz"]
