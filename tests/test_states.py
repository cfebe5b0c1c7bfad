"""The lifecycle table and the both-hosts classification (NOTES §5)."""

from __future__ import annotations

import pytest

from executor.hypervisor import DomainState, DomainStatus
from executor.states import (
    FINAL,
    PAUSED_MIGRATION,
    PAUSED_POSTCOPY_FAILED,
    TRANSITIONS,
    Event,
    IllegalTransition,
    Placement,
    State,
    classify,
    mermaid,
    transition,
)


def test_happy_path() -> None:
    s = State.PENDING
    for e in (Event.PRECHECK_OK, Event.MIGRATE, Event.RETURNED, Event.VERIFIED):
        s = transition(s, e)
    assert s is State.DONE


def test_retry_goes_back_through_precheck() -> None:
    s = transition(State.VERIFYING, Event.ON_SOURCE_RETRY)
    assert s is State.RETRY_WAIT
    assert transition(s, Event.PRECHECK_OK) is State.PRECHECKED
    with pytest.raises(IllegalTransition):
        transition(s, Event.MIGRATE)  # never migrate again without a fresh precheck


@pytest.mark.parametrize("final", sorted(FINAL))
def test_final_states_only_leave_by_requeue_or_reexamine(final: State) -> None:
    leaving = {e for (s, e) in TRANSITIONS if s is final}
    assert leaving <= ({Event.REEXAMINE} if final is State.QUARANTINED else {Event.REQUEUE})
    with pytest.raises(IllegalTransition):
        transition(final, Event.MIGRATE)


def test_running_cannot_be_done_without_verifying() -> None:
    with pytest.raises(IllegalTransition):
        transition(State.RUNNING, Event.VERIFIED)


def test_every_state_is_reachable_from_pending() -> None:
    seen, todo = {State.PENDING}, [State.PENDING]
    while todo:
        s = todo.pop()
        for (a, _), b in TRANSITIONS.items():
            if a is s and b not in seen:
                seen.add(b)
                todo.append(b)
    assert seen == set(State)


def test_mermaid_draws_every_transition() -> None:
    text = mermaid()
    assert text.count("-->") == len(TRANSITIONS) + 1 + len(FINAL)


def _st(host: str, state: DomainState, persistent: bool = True, reason: int = 0) -> DomainStatus:
    return DomainStatus(host, "vm", "u", state, reason, persistent)


@pytest.mark.parametrize(("src", "dst", "expected"), [
    (_st("a", DomainState.ABSENT), _st("b", DomainState.RUNNING), Placement.ON_DESTINATION),
    (_st("a", DomainState.RUNNING), _st("b", DomainState.ABSENT), Placement.ON_SOURCE),
    (_st("a", DomainState.PAUSED), _st("b", DomainState.ABSENT), Placement.ON_SOURCE),
    (_st("a", DomainState.RUNNING), _st("b", DomainState.PAUSED, reason=1), Placement.SPLIT),
    (_st("a", DomainState.PAUSED), _st("b", DomainState.PAUSED), Placement.SPLIT),
    (_st("a", DomainState.UNKNOWN), _st("b", DomainState.ABSENT), Placement.UNANSWERED),
    (_st("a", DomainState.ABSENT), _st("b", DomainState.UNKNOWN), Placement.UNANSWERED),
    (_st("a", DomainState.UNKNOWN), _st("b", DomainState.PAUSED, reason=PAUSED_POSTCOPY_FAILED), Placement.SPLIT),
    (_st("a", DomainState.RUNNING), _st("b", DomainState.PAUSED, reason=PAUSED_MIGRATION), Placement.MIGRATING),
    (_st("a", DomainState.ABSENT), _st("b", DomainState.PAUSED, reason=PAUSED_MIGRATION), Placement.MIGRATING),
    (DomainStatus("a", "vm", "u", DomainState.RUNNING, job_active=True), _st("b", DomainState.ABSENT),
     Placement.MIGRATING),
    (_st("a", DomainState.PAUSED, reason=PAUSED_POSTCOPY_FAILED), _st("b", DomainState.PAUSED, reason=PAUSED_MIGRATION),
     Placement.SPLIT),
    (_st("a", DomainState.ABSENT), _st("b", DomainState.ABSENT), Placement.SPLIT),
    (_st("a", DomainState.ABSENT), _st("b", DomainState.RUNNING, persistent=False), Placement.SPLIT),
    (_st("a", DomainState.ABSENT), _st("b", DomainState.PAUSED, reason=PAUSED_POSTCOPY_FAILED), Placement.SPLIT),
    (_st("a", DomainState.OTHER), _st("b", DomainState.ABSENT), Placement.SPLIT),
    (_st("a", DomainState.SHUTOFF), _st("b", DomainState.RUNNING), Placement.MIGRATING),  # switchover ending
])
def test_classify(src: DomainStatus, dst: DomainStatus, expected: Placement) -> None:
    placement, why = classify(src, dst)
    assert placement is expected
    assert why


def test_classify_offline_and_transient() -> None:
    assert classify(_st("a", DomainState.ABSENT), _st("b", DomainState.SHUTOFF), live=False)[0] \
        is Placement.ON_DESTINATION
    assert classify(_st("a", DomainState.ABSENT), _st("b", DomainState.RUNNING, persistent=False),
                    persistent=False)[0] is Placement.ON_DESTINATION


def test_only_settled_placements_end_the_look() -> None:
    assert {p for p in Placement if not p.settled} == {Placement.MIGRATING, Placement.UNANSWERED}
    assert transition(State.QUARANTINED, Event.REEXAMINE) is State.VERIFYING
    assert transition(State.VERIFYING, Event.REATTACH) is State.VERIFYING
