"""Tic-tac-toe, one pykka actor per game: the only owner of that game's state.

Hooks call it through a proxy made once per game (``game.play(pid, cell)``); the actor
broadcasts each new state through the hub's proxy, so every member sees states in order.
"""

from __future__ import annotations

import uuid
from typing import Any

import wsroom
from wsroom.actors import GeventActor

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
MARKS = ("X", "O")


def winner_of(board: list[str]) -> tuple[str, tuple[int, int, int]] | None:
    for line in LINES:
        a, b, c = line
        if board[a] and board[a] == board[b] == board[c]:
            return board[a], line
    return None


class Game(GeventActor):
    """One game. ``status``: waiting (a seat is free), playing, won, draw, abandoned.

    ``epoch`` is a random id made with the game: ``version`` counts from zero again in a new
    game under the same name (after a server restart, or once everyone left), so a page that
    sees another epoch knows its board is stale, whatever the versions say.
    """

    def __init__(self, hub: wsroom.Hub, room: str) -> None:
        super().__init__()
        self.hub_proxy = hub.proxy  # made once, by the hub
        self.room = room
        self.board = [""] * 9
        self.turn = "X"
        self.status = "waiting"
        self.winner: str | None = None
        self.line: tuple[int, int, int] | None = None
        self.seats: dict[str, dict[str, Any] | None] = {"X": None, "O": None}
        self.version = 0
        self.epoch = uuid.uuid4().hex[:12]
        self.first = "X"  # who starts this round; alternates on rematch

    # -- commands (called through the proxy) --------------------------------------------

    def join(self, pid: str, name: str) -> dict[str, Any]:
        """A member (re)joined: seat it if a seat is free; return the state for it alone."""
        mark = self.mark_of(pid)
        if mark is not None:
            seat = self.seats[mark]
            assert seat is not None
            seat.update(online=True, name=name)
        else:
            free = [m for m in MARKS if self.seats[m] is None]
            if free:
                self.seats[free[0]] = {"id": pid, "name": name, "online": True}
                if all(self.seats.values()) and self.status in ("waiting", "abandoned"):
                    self._new_round()
        return self._changed(broadcast_to_others=pid)

    def play(self, pid: str, cell: int) -> str | None:
        """A move; the reason it is refused, or None."""
        mark = self.mark_of(pid)
        if mark is None:
            return "you are watching this game"
        if self.status != "playing":
            return "the game is not on"
        if mark != self.turn:
            return "not your turn"
        if not isinstance(cell, int) or not 0 <= cell < 9 or self.board[cell]:
            return "that square is taken"
        self.board[cell] = mark
        won = winner_of(self.board)
        if won is not None:
            self.status = "won"
            self.winner, self.line = won
        elif all(self.board):
            self.status = "draw"
        else:
            self.turn = "O" if mark == "X" else "X"
        self._changed()
        return None

    def rematch(self, pid: str) -> str | None:
        if self.mark_of(pid) is None:
            return "you are watching this game"
        if self.status not in ("won", "draw"):
            return "the game is not over"
        self.first = "O" if self.first == "X" else "X"
        self._new_round()
        self._changed()
        return None

    def presence(self, pid: str, online: bool) -> None:
        """A player dropped (False: inside its grace period, its seat kept) or is back."""
        mark = self.mark_of(pid)
        seat = self.seats[mark] if mark is not None else None
        if seat is not None and seat["online"] != online:
            seat["online"] = online
            self._changed()

    def left(self, pid: str) -> None:
        """A membership ended for good (grace expired, or the room closed)."""
        mark = self.mark_of(pid)
        if mark is None:
            return
        self.seats[mark] = None
        if self.status == "playing":
            self.status = "abandoned"  # the "opponent left" state
        elif self.status in ("won", "draw") or self.status != "abandoned":
            self.status = "waiting"
        self._changed()

    def snapshot(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "version": self.version,
            "board": list(self.board),
            "turn": self.turn,
            "status": self.status,
            "winner": self.winner,
            "line": list(self.line) if self.line else None,
            "players": {m: (dict(s) if s else None) for m, s in self.seats.items()},
        }

    # -- internals ----------------------------------------------------------------------

    def mark_of(self, pid: str) -> str | None:
        for mark, seat in self.seats.items():
            if seat is not None and seat["id"] == pid:
                return mark
        return None

    def _new_round(self) -> None:
        self.board = [""] * 9
        self.turn = self.first
        self.status = "playing"
        self.winner = None
        self.line = None

    def _changed(self, broadcast_to_others: str | None = None) -> dict[str, Any]:
        self.version += 1
        state = self.snapshot()
        exclude = (broadcast_to_others,) if broadcast_to_others else ()
        # Fire and forget through the hub's proxy: asks from this one actor stay in order.
        self.hub_proxy.broadcast(self.room, wsroom.Envelope("state", state), exclude)
        return state


class Lobby(GeventActor):
    """Owns the map from room to game proxy: one actor (and one proxy) per game."""

    def __init__(self, hub: wsroom.Hub) -> None:
        super().__init__()
        self.hub = hub
        self.games: dict[str, Any] = {}

    def game(self, room: str) -> Any:
        proxy = self.games.get(room)
        if proxy is None:
            proxy = Game.start(self.hub, room).proxy()
            self.games[room] = proxy
        return proxy

    def find(self, room: str) -> Any:
        return self.games.get(room)

    def drop(self, room: str) -> None:
        proxy = self.games.pop(room, None)
        if proxy is not None:
            proxy.actor_ref.stop(block=False)

    def on_stop(self) -> None:
        for proxy in self.games.values():
            proxy.actor_ref.stop(block=False)
