"""A migration's lifecycle as ONE transition table (STYLE §10, h11's `_state.py`).

The journal stores these states; the runner moves a migration only through `transition`, so an
illegal move (say, running → done without verifying) raises instead of corrupting the journal.
docs/executor.md draws the table (`mermaid()` prints it).

    pending ──precheck_ok──▶ prechecked ──migrate──▶ running ──returned/error──▶ verifying
    verifying ──verified──▶ done            (running on destination, gone from source, persisted)
    verifying ──on_source_retry──▶ retry_wait ──precheck_ok──▶ prechecked   (bounded retries)
    verifying ──on_source_final──▶ failed   (VM runs on its source; the error is reported)
    verifying ──on_source_aborted──▶ aborted (timeout action abort, or Ctrl-C)
    verifying ──split──▶ quarantined        (both / paused both / post-copy failed: touch nothing)
    verifying ──reattach──▶ verifying       (a job still runs, or a host does not answer: wait, look again)
    quarantined ──reexamine──▶ verifying    (resume: look again at a VM a human has not been asked about yet)

`classify` is the pure half of "look the VM up on BOTH hosts after any error" (NOTES §5). It says
MIGRATING while libvirt still runs the migration (the source has the job, or the destination holds
the paused incoming domain) and UNANSWERED while a host does not answer: both mean "not yet", the
runner waits (bounded) and looks again; only what is still unclear after that is SPLIT.
"""

from __future__ import annotations

from enum import StrEnum

from executor.hypervisor import DomainState, DomainStatus
from planner.errors import EvacError


class State(StrEnum):
    PENDING = "pending"
    PRECHECKED = "prechecked"
    RUNNING = "running"
    VERIFYING = "verifying"
    RETRY_WAIT = "retry_wait"
    DONE = "done"
    FAILED = "failed"
    ABORTED = "aborted"
    QUARANTINED = "quarantined"

    @property
    def final(self) -> bool:
        return self in FINAL

    @property
    def in_flight(self) -> bool:
        """Between intent and a verified outcome: on resume these are reconciled with both hosts."""
        return self in IN_FLIGHT


class Event(StrEnum):
    PRECHECK_OK = "precheck_ok"
    PRECHECK_FAILED = "precheck_failed"  # the hosts said no before anything moved
    BLOCKED = "blocked"  # the monitor can never start it (its room was never freed)
    MIGRATE = "migrate"  # intent journaled, migrate called
    RETURNED = "returned"  # migrate returned success
    ERROR = "error"  # migrate raised: look at both hosts
    VERIFIED = "verified"  # on destination only, running, persisted where it was persistent
    ON_SOURCE_RETRY = "on_source_retry"  # still on the source, retryable error, attempts left
    ON_SOURCE_FINAL = "on_source_final"  # still on the source, giving up
    ON_SOURCE_ABORTED = "on_source_aborted"  # still on the source because evac aborted the job
    SPLIT = "split"  # on both hosts, paused on both, or a host did not answer
    RECONCILE = "reconcile"  # resume: an in-flight migration found in the journal, look at both hosts
    REATTACH = "reattach"  # the migration is still running in libvirt, or a host does not answer: wait
    REEXAMINE = "reexamine"  # resume: a quarantined VM is looked at again (its hosts may answer now)
    REQUEUE = "requeue"  # resume: try a failed or aborted migration again


FINAL = frozenset({State.DONE, State.FAILED, State.ABORTED, State.QUARANTINED})
IN_FLIGHT = frozenset({State.PRECHECKED, State.RUNNING, State.VERIFYING, State.RETRY_WAIT})

TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.PENDING, Event.PRECHECK_OK): State.PRECHECKED,
    (State.PENDING, Event.PRECHECK_FAILED): State.FAILED,
    (State.PENDING, Event.BLOCKED): State.FAILED,
    (State.PRECHECKED, Event.MIGRATE): State.RUNNING,
    (State.RUNNING, Event.RETURNED): State.VERIFYING,
    (State.RUNNING, Event.ERROR): State.VERIFYING,
    (State.VERIFYING, Event.VERIFIED): State.DONE,
    (State.VERIFYING, Event.ON_SOURCE_RETRY): State.RETRY_WAIT,
    (State.VERIFYING, Event.ON_SOURCE_FINAL): State.FAILED,
    (State.VERIFYING, Event.ON_SOURCE_ABORTED): State.ABORTED,
    (State.VERIFYING, Event.SPLIT): State.QUARANTINED,
    (State.RETRY_WAIT, Event.PRECHECK_OK): State.PRECHECKED,
    (State.RETRY_WAIT, Event.PRECHECK_FAILED): State.FAILED,
    (State.RETRY_WAIT, Event.ON_SOURCE_ABORTED): State.ABORTED,  # Ctrl-C during the backoff
    (State.RETRY_WAIT, Event.BLOCKED): State.FAILED,  # resumed on its source, its room never came
    (State.PRECHECKED, Event.ON_SOURCE_ABORTED): State.ABORTED,  # Ctrl-C before migrate was called
    (State.PRECHECKED, Event.ERROR): State.VERIFYING,  # prepare_storage failed: look before retrying
    (State.PRECHECKED, Event.RECONCILE): State.VERIFYING,
    (State.RUNNING, Event.RECONCILE): State.VERIFYING,
    (State.VERIFYING, Event.RECONCILE): State.VERIFYING,
    (State.RETRY_WAIT, Event.RECONCILE): State.VERIFYING,
    (State.VERIFYING, Event.REATTACH): State.VERIFYING,
    (State.QUARANTINED, Event.REEXAMINE): State.VERIFYING,
    (State.FAILED, Event.REQUEUE): State.PENDING,
    (State.ABORTED, Event.REQUEUE): State.PENDING,
}


class IllegalTransition(EvacError):
    """A bug in evac: the runner tried a move the lifecycle does not allow."""

    def __init__(self, state: State, event: Event) -> None:
        self.state = state
        self.event = event
        super().__init__(f"illegal transition: {event} in state {state}")


def transition(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def mermaid() -> str:
    """The table as a mermaid state diagram (docs/executor.md)."""
    lines = ["stateDiagram-v2", "    [*] --> pending"]
    lines += [f"    {s} --> {t}: {e}" for (s, e), t in TRANSITIONS.items()]
    lines += [f"    {s} --> [*]" for s in (State.DONE, State.FAILED, State.ABORTED, State.QUARANTINED)]
    return "\n".join(lines)


# ---------------------------------------------------------------- where is the VM? (NOTES §5)


class Placement(StrEnum):
    ON_DESTINATION = "on_destination"  # running (or paused by us) on the destination only: done
    ON_SOURCE = "on_source"  # on the source only: failed or retry
    MIGRATING = "migrating"  # libvirt still runs the migration: follow the job, then look again
    UNANSWERED = "unanswered"  # a host does not answer: wait for it (bounded), then look again
    SPLIT = "split"  # anything else: quarantine, touch nothing

    @property
    def settled(self) -> bool:
        """False while looking again later may give another answer."""
        return self not in (Placement.MIGRATING, Placement.UNANSWERED)


# libvirt's paused reasons (virDomainPausedReason) that classify reads.
PAUSED_MIGRATION = 2  # VIR_DOMAIN_PAUSED_MIGRATION: the incoming domain of a running migration
PAUSED_POSTCOPY_FAILED = 13  # VIR_DOMAIN_PAUSED_POSTCOPY_FAILED: a post-copy migration broke; a human decides


def classify(source: DomainStatus, destination: DomainStatus, *, live: bool = True,
             persistent: bool = True) -> tuple[Placement, str]:
    """Where the VM is after a migration call returned or failed, with the reason in words.

    ON_DESTINATION requires what NOTES §6.5 calls done: on the destination in the expected state,
    absent from the source, defined on the destination if it was persistent. A migration libvirt
    still runs is MIGRATING, a host that did not answer UNANSWERED (look again later); anything else
    not clearly one side or the other is SPLIT."""
    s, d = source.state, destination.state
    if (s is DomainState.PAUSED and source.reason == PAUSED_POSTCOPY_FAILED) or \
            (d is DomainState.PAUSED and destination.reason == PAUSED_POSTCOPY_FAILED):
        return Placement.SPLIT, "post-copy failed: VM paused, its memory split between hosts"
    if DomainState.UNKNOWN in (s, d):
        who = source.host if s is DomainState.UNKNOWN else destination.host
        return Placement.UNANSWERED, f"{who} did not answer: VM location unknown"
    if source.job_active and s is not DomainState.ABSENT:
        return Placement.MIGRATING, f"a job still runs on {source.host} (source {s}, destination {d})"
    if (d is DomainState.PAUSED and destination.reason == PAUSED_MIGRATION) or destination.job_active:
        return Placement.MIGRATING, f"{destination.host} holds the incoming domain (source {s}, destination {d})"
    if live and s is DomainState.SHUTOFF and d in (DomainState.RUNNING, DomainState.PAUSED):
        # The end of a live migration seen from outside: the destination runs, the source QEMU has
        # stopped, its definition is not removed yet (measured: ~0.5 s, libvirt 9.0).
        return Placement.MIGRATING, f"finishing: shut off on {source.host}, {d} on {destination.host}"
    if DomainState.OTHER in (s, d):
        return Placement.SPLIT, f"VM in an unexpected state (source {s}, destination {d})"
    expected = {DomainState.RUNNING, DomainState.PAUSED} if live else {DomainState.SHUTOFF}
    if s is DomainState.ABSENT and d in expected:
        if persistent and not destination.persistent:
            return Placement.SPLIT, "migrated but not defined on the destination (error 69 case): repair the definition"
        return Placement.ON_DESTINATION, f"{d} on {destination.host}"
    if d is DomainState.ABSENT and s in expected | {DomainState.SHUTOFF}:
        return Placement.ON_SOURCE, f"{s} on {source.host}"
    if s is DomainState.ABSENT and d is DomainState.ABSENT:
        return Placement.SPLIT, "VM found on neither host"
    return Placement.SPLIT, f"VM present on both hosts (source {s}, destination {d})"
