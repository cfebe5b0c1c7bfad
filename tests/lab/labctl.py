#!/usr/bin/env python3
"""labctl: start, inspect and stop the local libvirt lab (tests/lab/harness.py) by hand.

    labctl.py up --hosts 3     N hosts h1..hN (env LAB = lab directory, default /tmp/evac-lab)
    labctl.py status           daemons, hostnames, domains, NBD exports
    labctl.py down             stop everything, also a half-started or crashed lab
    labctl.py guest            build the memdirty test kernel, print its path

Exit codes: 0 ok, 1 failed, 3 this machine cannot run the lab (not root, missing programs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.lab.harness import (  # after the sys.path line: the repo root must come first
    Lab,
    LabError,
    LabUnavailable,
    build_guest,
    down_lab,
    lab_dir_from_env,
    lab_is_live,
)


def _up(hosts: int) -> int:
    lab = Lab.up(hosts=hosts)
    print(f"lab up: {hosts} hosts in {lab.up_seconds:.2f} s ({lab.lab_dir})")
    for h in lab.hosts:
        print(f"  {h.name}  {h.address:<12} {h.uri}")
        print(f"  {'':<3} {'':<12} peers: {h.peer_uri}")
    print(f"evac collect -o inventory.json --hosts-file {lab.hosts_file} " + " ".join(f"'{h.uri}'" for h in lab.hosts))
    return 0


def _down() -> int:
    lab_dir = lab_dir_from_env()
    if not lab_dir.exists() and not lab_is_live(lab_dir):
        print(f"no lab in {lab_dir}")
        return 0
    print(f"lab down in {down_lab(lab_dir):.2f} s ({lab_dir})")
    return 0


def _status() -> int:
    lab_dir = lab_dir_from_env()
    if not lab_is_live(lab_dir):
        print(f"no lab running in {lab_dir}")
        return 1
    lab = Lab.attach(lab_dir)
    healthy = True
    for h in lab.hosts:
        if not lab.daemon_alive(h):
            print(f"{h.name}: libvirtd NOT running (pid file {h.dir / 'libvirtd.pid'})")
            healthy = False
            continue
        conn = lab.connect(h)
        doms = ", ".join(f"{d.name()}({'running' if d.isActive() else 'off'})" for d in conn.listAllDomains())
        print(f"{h.name}: pid {lab.daemon_pid(h)}  hostname {conn.getHostname()}  {h.uri}\n    domains: {doms or '-'}")
    exports = sorted(p.stem for p in (lab.lab_dir / "nbd").glob("*.pid"))
    print(f"NBD exports: {', '.join(exports) or '-'}")
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labctl.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a lab")
    up.add_argument("--hosts", type=int, default=3)
    sub.add_parser("down", help="stop the lab and remove its files")
    sub.add_parser("status", help="show the lab")
    sub.add_parser("guest", help="build the memdirty guest kernel")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return _up(args.hosts)
        if args.command == "down":
            return _down()
        if args.command == "status":
            return _status()
        print(build_guest())
        return 0
    except LabUnavailable as exc:
        print(f"labctl: {exc}", file=sys.stderr)
        return 3
    except LabError as exc:
        print(f"labctl: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
