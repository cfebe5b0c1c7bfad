"""Runs what-if scenarios: one after the other (`--serial`), or on Dask (a local cluster, or yours).

Scenarios are independent (planner.whatif), so a sweep is an embarrassingly parallel map: the base
inventory is scattered once to every worker and each task is one scenario's text-sized description
(`planner.whatif.evaluate.evaluate_scenario`). The local cluster has one single-threaded worker
PROCESS per core (CP-SAT and pandas hold the GIL; threads would not help). `--scheduler
tcp://HOST:PORT` uses a running Dask cluster instead (`dask scheduler` + `dask worker`); its
workers need evac installed (the same version: they import planner.whatif).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence

from planner.errors import EnvironmentProblem, Problem, UsageError
from planner.model import Inventory
from planner.whatif import Scenario, ScenarioResult, Settings, evaluate_scenario

CONNECT_TIMEOUT_S = 10.0
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
SCHEDULER_RE = re.compile(rf"tcp://(?P<host>{_HOST}):(?P<port>[0-9]{{1,5}})")

Done = Callable[[ScenarioResult], None]


def check_scheduler(address: str) -> str:
    """`tcp://HOST:PORT` with a host name, IPv4 or [IPv6] and a port 1-65535; else a UsageError (exit 2)."""
    m = SCHEDULER_RE.fullmatch(address)
    if m is None:
        raise UsageError("evac whatif", [Problem("--scheduler", f"{address!r} is not tcp://HOST:PORT "
                                                                f"(e.g. tcp://10.0.0.5:8786)")])
    if not 1 <= int(m["port"]) <= 65535:
        raise UsageError("evac whatif", [Problem("--scheduler", f"port {m['port']} is not between 1 and 65535")])
    return address


def local_workers() -> int:
    """Worker processes of the local cluster: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def run_serial(inventory: Inventory, scenarios: Sequence[Scenario], settings: Settings,
               done: Done | None = None) -> list[ScenarioResult]:
    out = []
    for sc in scenarios:
        r = evaluate_scenario(inventory, sc, settings)
        if done is not None:
            done(r)
        out.append(r)
    return out


def run_dask(inventory: Inventory, scenarios: Sequence[Scenario], settings: Settings, *,
             scheduler: str | None = None, processes: int | None = None,
             done: Done | None = None) -> list[ScenarioResult]:
    """The scenarios evaluated on Dask, in the order given (see the module docstring)."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as e:  # pragma: no cover - a dependency of evac
        raise EnvironmentProblem(f"evac whatif: Dask is not installed ({e}); use --serial") from None
    if not scenarios:
        return []
    cluster = None
    try:
        if scheduler is None:
            cluster = LocalCluster(n_workers=processes or local_workers(), threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=logging.CRITICAL)
            client = Client(cluster)
        else:
            client = Client(check_scheduler(scheduler), timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as e:
        if cluster is not None:
            cluster.close()
        raise EnvironmentProblem(f"evac whatif: cannot reach the Dask scheduler {scheduler or '(local)'}: {e}") \
            from None
    try:
        inv = client.scatter(inventory, broadcast=True)
        futures = client.map(evaluate_scenario, [inv] * len(scenarios), list(scenarios),
                             [settings] * len(scenarios), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[ScenarioResult | None] = [None] * len(scenarios)
        for fut in as_completed(futures):
            r = fut.result()
            results[index[fut.key]] = r
            if done is not None:
                done(r)
        return [r for r in results if r is not None]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
