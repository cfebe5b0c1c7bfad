"""Unit conversions. Units live in names (`_mib`, `_gib`, `_gbps`, `_mibs`, `_s`, `_ms`)."""

from __future__ import annotations

MIB_PER_GIB = 1024.0

# 1 Gbit/s = 10^9 bit/s = 10^9 / 8 / 2^20 MiB/s = 119.209 MiB/s (inventory v1, "Bandwidth units").
MIBS_PER_GBPS = 1e9 / 8 / 2**20


def gbps_to_mibs(gbps: float) -> float:
    return gbps * MIBS_PER_GBPS


def mibs_to_gbps(mibs: float) -> float:
    return mibs / MIBS_PER_GBPS


def gib_to_mib(gib: float) -> float:
    return gib * MIB_PER_GIB


def mib_to_gib(mib: float) -> float:
    return mib / MIB_PER_GIB
