"""executor.site: the hosts file and topology obey the inventory's rules for URIs, addresses and names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from executor.site import load_site_config
from planner.errors import UsageError


def _problems(tmp_path: Path, doc: object) -> str:
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(UsageError) as info:
        load_site_config(path)
    return str(info.value)


@pytest.mark.parametrize("uri", ["qemu+ext:///system", "qemu+ssh://h/system?command=/bin/sh", "not a uri at all",
                                 "qemu+ssh://u:p@h/system", "qemu+ssh://h/system?known_hosts_verify=ignore"])
def test_a_dangerous_uri_in_the_hosts_file_is_refused(tmp_path: Path, uri: str) -> None:
    assert "hosts.h01.uri" in _problems(tmp_path, {"hosts": {"h01": {"uri": uri}}})


def test_a_tcp_uri_in_the_hosts_file_is_accepted(tmp_path: Path) -> None:
    """It only matches a collected URI, and `collect` judges those (tcp with --allow-insecure-transport)."""
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump({"hosts": {"h01": {"uri": "qemu+tcp://10.0.0.1/system"}}}))
    assert load_site_config(path).hosts["h01"].uri == "qemu+tcp://10.0.0.1/system"


@pytest.mark.parametrize("address", ["tcp://10.0.0.1", "10.0.0.1:4444", "h;x", "-oProxy"])
def test_a_migration_address_must_be_an_ip_or_a_host_name(tmp_path: Path, address: str) -> None:
    assert "hosts.h01.migration_address" in _problems(tmp_path, {"hosts": {"h01": {"migration_address": address}}})


def test_control_characters_in_names_are_refused(tmp_path: Path) -> None:
    text = _problems(tmp_path, {"hosts": {"h\n01": {}, "h02": {"switch": "tor\x1b[2J", "labels": {"rack": "r\t1"}}},
                                "shared_storage": {"nfs\r1": {"paths": ["/mnt/nfs"]}}})
    for where in ("hosts.'h\\n01'", "hosts.h02.switch", "hosts.h02.labels.rack", "shared_storage.'nfs\\r1'"):
        assert where in text, text
    assert "\x1b" not in text and "\n01" not in text
