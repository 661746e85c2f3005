"""A connection's lifecycle and keep-alive rule, without sockets."""

from __future__ import annotations

import pytest

from wsroom.transport.lifecycle import (
    ControlBudget,
    KeepAlive,
    Lifecycle,
    LifecycleError,
    Phase,
    Tick,
)


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


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def play(keepalive: KeepAlive, clock: FakeClock, script: str) -> None:
    """Run a keep-alive through ``script``, steps separated by spaces: ``+S`` (S seconds pass),
    ``written`` (the ping left), ``received`` (bytes came in), ``busy`` / ``free`` (the reader
    is held up or not), or a tick's expected result (``PING``, ``NOTHING``, ``DEAD``)."""
    for step in script.split():
        if step.startswith("+"):
            clock.now += float(step[1:])
        elif step == "written":
            keepalive.ping_written()
        elif step == "received":
            keepalive.received()
        elif step in ("busy", "free"):
            keepalive.reader_busy = step == "busy"
        else:
            assert keepalive.tick() is Tick[step], f"at {step!r} of {script!r}"


@pytest.mark.parametrize(
    "script",
    [
        # A silent peer: a ping, then dead at the next tick.
        "+2 PING written +2 DEAD",
        # Any bytes after the ping (a pong or any frame) keep the peer alive.
        "+2 PING written +0.5 received +1.5 PING written +0.5 received +1.5 PING",
        # The loop was held up for three intervals, then its timer fires twice back to back:
        # a ping, then nothing until the peer had time to answer; never ping-then-dead.
        "+7 PING written +0.001 NOTHING +0.5 received +1.5 PING",
        # Time counts, not ticks: a burst of ticks judges nothing; half an interval unanswered
        # is enough (timer callbacks run a little early or late against the clock).
        "PING written NOTHING NOTHING NOTHING +1 DEAD",
        # The peer's time starts when the ping is written: a ping waiting behind a long frame
        # to a slow reader is the server's delay...
        "PING +2 NOTHING +1 written +0.5 NOTHING +0.5 DEAD",
        # ... but a ping not written in two intervals means the peer drains nothing: dead.
        "PING +2 NOTHING +2 DEAD",
        # While the reader is held up (the pong may sit behind a full inbound window), nothing
        # is judged.
        "PING written busy +2 NOTHING +2 NOTHING free received +2 PING",
    ],
)
def test_keepalive_judges_by_time_since_the_last_bytes_and_the_last_ping(script: str) -> None:
    clock = FakeClock()
    play(KeepAlive(2.0, clock), clock, script)


def test_control_budget_allows_a_burst_then_its_rate() -> None:
    clock = FakeClock()
    budget = ControlBudget(rate=10, burst=20, clock=clock)
    assert all(budget.spend() for _ in range(20))
    assert not budget.spend()  # the 21st at once is over
    clock.now += 1.0  # ten more are earned each second
    assert all(budget.spend() for _ in range(9))


def test_control_budget_a_steady_peer_under_the_rate_never_runs_out() -> None:
    clock = FakeClock()
    budget = ControlBudget(rate=10, burst=20, clock=clock)
    for _ in range(1000):
        clock.now += 0.11
        assert budget.spend()
    for _ in range(40):  # a flood: over within the burst
        clock.now += 0.001
        if not budget.spend():
            break
    else:
        raise AssertionError("a flood was never cut off")
