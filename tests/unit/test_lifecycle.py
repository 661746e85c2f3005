"""A connection's lifecycle and keep-alive rule, without sockets."""

from __future__ import annotations

import pytest

from wsroom.transport.lifecycle import KeepAlive, Lifecycle, LifecycleError, Phase, Tick


def test_a_new_connection_is_open_and_owes_nothing() -> None:
    life = Lifecycle()
    assert life.phase is Phase.OPEN and life.is_open
    assert life.close_request is None and not life.owes_close_frame


def test_the_servers_close_moves_through_each_phase() -> None:
    life = Lifecycle()
    assert life.request_close(4000, "room closed")
    assert life.phase is Phase.CLOSE_REQUESTED and not life.is_open
    assert life.owes_close_frame and life.close_request == (4000, "room closed")
    life.close_sent()
    assert life.phase is Phase.CLOSE_SENT and not life.owes_close_frame
    assert life.end()
    assert life.phase is Phase.ENDED
    assert life.outcome((1000, "bye")) == (4000, "room closed")  # the server's own close wins


def test_only_the_first_close_counts() -> None:
    life = Lifecycle()
    assert life.request_close(4008, "slow consumer")
    assert not life.request_close(4001, "replaced")
    assert life.close_request == (4008, "slow consumer")


def test_a_close_reason_is_cut_to_what_a_close_frame_holds() -> None:
    life = Lifecycle()
    life.request_close(1000, "é" * 100)  # 200 bytes of UTF-8
    assert life.close_request is not None
    reason = life.close_request[1]
    assert len(reason.encode()) <= 123 and reason == "é" * 61  # never half a character


def test_a_close_frame_is_still_owed_once_the_read_side_ended() -> None:
    # A reader that refuses a frame (1007, 1009, a protocol error) asks for a close and stops
    # reading at once: the writer must still send that close frame.
    life = Lifecycle()
    life.request_close(1007, "invalid UTF-8")
    life.end()
    assert life.phase is Phase.ENDED and life.owes_close_frame
    life.close_sent()
    assert life.phase is Phase.ENDED and not life.owes_close_frame


def test_the_peers_close_or_eof_ends_an_open_connection() -> None:
    life = Lifecycle()
    assert life.end()
    assert not life.end()  # once
    assert not life.request_close(1000, "")  # too late: nothing is owed
    assert not life.owes_close_frame
    assert life.outcome((1001, "going away")) == (1001, "going away")
    assert Lifecycle().outcome(None) == (1006, "")


@pytest.mark.parametrize(
    "moves",
    [
        ["close_sent"],  # nothing was asked for
        ["request_close", "close_sent", "close_sent"],  # sent twice
    ],
)
def test_moves_the_life_does_not_allow_raise(moves: list[str]) -> None:
    life = Lifecycle()
    with pytest.raises(LifecycleError):
        for move in moves:
            if move == "request_close":
                life.request_close(1000, "")
            else:
                getattr(life, move)()


def test_keepalive_pings_then_judges_a_silent_peer_dead() -> None:
    keepalive = KeepAlive()
    assert keepalive.tick() is Tick.PING
    assert keepalive.tick() is Tick.DEAD


def test_keepalive_a_pong_keeps_the_peer_alive() -> None:
    keepalive = KeepAlive()
    for _ in range(5):
        assert keepalive.tick() is Tick.PING
        keepalive.pong()


def test_keepalive_judges_nothing_while_the_reader_is_held_up() -> None:
    keepalive = KeepAlive()
    assert keepalive.tick() is Tick.PING
    keepalive.reader_busy = True  # the pong may sit unread behind a full inbound window
    assert keepalive.tick() is Tick.NOTHING
    assert keepalive.tick() is Tick.NOTHING
    keepalive.reader_busy = False
    keepalive.pong()
    assert keepalive.tick() is Tick.PING
