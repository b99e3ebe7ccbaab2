"""The exchange's lifecycle table."""

from __future__ import annotations

import pytest

from proxy.http.exchange import TRANSITIONS, ExchangeEvent, ExchangeState, next_exchange_state
from proxy.lifecycle import IllegalTransition

S, E = ExchangeState, ExchangeEvent


@pytest.mark.parametrize(
    "path",
    [
        # a plain proxied request
        [(E.SEND, S.WAITING), (E.RESPONSE_HEAD, S.STREAMING), (E.ANSWER, S.ANSWERED), (E.FINISH, S.DONE)],
        # no route / stopped service: answered at once
        [(E.ANSWER, S.ANSWERED), (E.FINISH, S.DONE)],
        # held by a pause, then resumed
        [(E.HOLD, S.HELD), (E.SEND, S.WAITING), (E.RESPONSE_HEAD, S.STREAMING), (E.ANSWER, S.ANSWERED)],
        # held past --max-pause
        [(E.HOLD, S.HELD), (E.ANSWER, S.ANSWERED)],
        # buffered request, buffered response
        [
            (E.BUFFER, S.BUFFERING),
            (E.SEND, S.WAITING),
            (E.BUFFER_RESPONSE, S.BUFFERING_RESPONSE),
            (E.RESPONSE_HEAD, S.STREAMING),
            (E.ANSWER, S.ANSWERED),
        ],
        # request body over the limit
        [(E.BUFFER, S.BUFFERING), (E.ANSWER, S.ANSWERED)],
        # upgrade, then either side closes
        [(E.SEND, S.WAITING), (E.UPGRADE, S.TUNNEL), (E.FINISH, S.DONE)],
        # target failed or timed out before its response head
        [(E.SEND, S.WAITING), (E.ANSWER, S.ANSWERED)],
        # the client went away mid-response
        [(E.SEND, S.WAITING), (E.RESPONSE_HEAD, S.STREAMING), (E.FINISH, S.DONE)],
    ],
)
def test_exchange_paths(path: list[tuple[ExchangeEvent, ExchangeState]]) -> None:
    state = S.ROUTING
    for event, expected in path:
        state = next_exchange_state(state, event)
        assert state is expected


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.STREAMING, E.RESPONSE_HEAD),  # one response head per exchange
        (S.TUNNEL, E.ANSWER),  # a tunnel has no end of response
        (S.ANSWERED, E.SEND),
        (S.DONE, E.FINISH),  # reported once
        (S.ROUTING, E.RESPONSE_HEAD),  # no response before the request went anywhere
        (S.HELD, E.UPGRADE),
    ],
)
def test_illegal_moves_raise(state: ExchangeState, event: ExchangeEvent) -> None:
    with pytest.raises(IllegalTransition):
        next_exchange_state(state, event)


def test_done_is_final_and_every_other_state_but_routing_can_finish() -> None:
    assert not any(s is S.DONE for s, _ in TRANSITIONS)
    finishing = {s for s, e in TRANSITIONS if e is E.FINISH}
    assert finishing == set(S) - {S.ROUTING, S.DONE}


def test_the_inline_move_table_is_the_transition_table() -> None:
    from proxy.http.exchange import _MOVES

    assert {(s, e): n for s, moves in _MOVES.items() for e, n in moves.items()} == TRANSITIONS
