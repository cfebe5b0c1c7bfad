"""libvirt error codes evac names, and which of them are worth a retry (NOTES §5).

The numbers are libvirt's `virErrorNumber` (stable ABI, libvirt/virterror.h); they are written out
here rather than read from the `libvirt` module so that the runner, the journal and the docs can use
them without importing libvirt (the simulated hypervisor raises the same codes).

Retry policy: an error is retryable when the same migration, tried again later, can succeed without
anyone changing anything: a daemon or RPC hiccup, a failed QEMU step, a job lock held by someone else
(68, "cannot acquire state change lock"). Errors that say the request itself is wrong (unsafe, CPU
incompatible, missing pool, unsupported flag, access denied) fail the same way every time, and an
aborted job (78) was aborted on purpose.
"""

from __future__ import annotations

from enum import IntEnum


class LibvirtCode(IntEnum):
    OK = 0
    INTERNAL_ERROR = 1
    NO_SUPPORT = 3
    INVALID_CONN = 6
    INVALID_DOMAIN = 7
    INVALID_ARG = 8
    OPERATION_FAILED = 9
    SYSTEM_ERROR = 38
    RPC = 39
    NO_DOMAIN = 42
    NO_NETWORK = 43
    AUTH_FAILED = 45
    NO_STORAGE_POOL = 49
    NO_STORAGE_VOL = 50
    OPERATION_INVALID = 55
    NO_INTERFACE = 57
    OPERATION_TIMEOUT = 68
    MIGRATE_PERSIST_FAILED = 69
    ARGUMENT_UNSUPPORTED = 74
    OPERATION_ABORTED = 78
    MIGRATE_UNSAFE = 81
    OPERATION_UNSUPPORTED = 84
    ACCESS_DENIED = 88
    CPU_INCOMPATIBLE = 91


# What a person should read next to a bare number in a report or the journal.
MEANING: dict[int, str] = {
    LibvirtCode.INTERNAL_ERROR: "internal error",
    LibvirtCode.NO_SUPPORT: "not supported by this driver",
    LibvirtCode.INVALID_CONN: "invalid connection",
    LibvirtCode.OPERATION_FAILED: "operation failed",
    LibvirtCode.SYSTEM_ERROR: "system error (socket, I/O)",
    LibvirtCode.RPC: "RPC error (connection to the daemon lost)",
    LibvirtCode.NO_DOMAIN: "no such domain",
    LibvirtCode.NO_NETWORK: "no such network",
    LibvirtCode.AUTH_FAILED: "authentication failed",
    LibvirtCode.NO_STORAGE_POOL: "no storage pool (e.g. none with that target path)",
    LibvirtCode.NO_STORAGE_VOL: "no such storage volume",
    LibvirtCode.OPERATION_INVALID: "operation invalid in this state",
    LibvirtCode.OPERATION_TIMEOUT: "job lock held by someone else (cannot acquire state change lock)",
    LibvirtCode.MIGRATE_PERSIST_FAILED: "migrated but not defined on the destination",
    LibvirtCode.ARGUMENT_UNSUPPORTED: "argument unsupported",
    LibvirtCode.OPERATION_ABORTED: "operation aborted",
    LibvirtCode.MIGRATE_UNSAFE: "migration unsafe (storage not shared or cache mode)",
    LibvirtCode.OPERATION_UNSUPPORTED: "operation unsupported",
    LibvirtCode.ACCESS_DENIED: "access denied",
    LibvirtCode.CPU_INCOMPATIBLE: "CPU incompatible with the destination",
}

RETRYABLE = frozenset({
    LibvirtCode.OPERATION_FAILED,
    LibvirtCode.SYSTEM_ERROR,
    LibvirtCode.RPC,
    LibvirtCode.OPERATION_TIMEOUT,
})

# Errors after which the connection itself is suspect: drop it and reconnect before the next call.
CONNECTION_LOST = frozenset({LibvirtCode.INVALID_CONN, LibvirtCode.SYSTEM_ERROR, LibvirtCode.RPC})


# A retryable code whose message says one of these fails the same way next time: libvirt reports a
# destination that ran out of space during copy-storage as error 9 "migration of disk vda failed: No
# space left on device" (measured on libvirt 9.0; tests/lab/test_storage_lab.py).
PERMANENT_CAUSES = ("No space left on device", "Disk quota exceeded")


def permanent_cause(message: str) -> str | None:
    """The cause a libvirt error message names that retrying will not remove (a full disk), if any."""
    return next((cause for cause in PERMANENT_CAUSES if cause in message), None)


def is_retryable(code: int, message: str = "") -> bool:
    """True when trying the same migration again later can succeed (see the module docstring)."""
    return code in RETRYABLE and permanent_cause(message) is None


def name(code: int) -> str:
    """`VIR_ERR_OPERATION_ABORTED`-style name of a code, or `code 123` for one evac does not name."""
    try:
        return "VIR_ERR_" + LibvirtCode(code).name
    except ValueError:
        return f"code {code}"


def describe(code: int) -> str:
    """`78 OPERATION_ABORTED (operation aborted)`: for reports."""
    meaning = MEANING.get(code)
    label = name(code).removeprefix("VIR_ERR_")
    return f"{code} {label}" + (f" ({meaning})" if meaning else "")
