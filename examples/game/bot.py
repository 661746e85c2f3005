"""An automatic tic-tac-toe opponent, built on the Python client ``wsroom.client``.

    python examples/game/bot.py ws://127.0.0.1:8080/ws/GAME_ID

The game page's "Play the bot" button starts one inside the server process; run by hand it
works from any machine that can reach the server.
"""

from __future__ import annotations

import random
import sys
import uuid
from typing import Any
from urllib.parse import quote

from wsroom.client import ClientClosed, RoomClient

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))


def choose(board: list[str], me: str) -> int:
    """Win if it can, block if it must, else centre, a corner, anything."""
    them = "O" if me == "X" else "X"
    for who in (me, them):
        for line in LINES:
            marks = [board[i] for i in line]
            if marks.count(who) == 2 and marks.count("") == 1:
                return line[marks.index("")]
    if not board[4]:
        return 4
    free = [i for i in (0, 2, 6, 8) if not board[i]] or [i for i in range(9) if not board[i]]
    return random.choice(free)


def play(url: str, name: str = "Bot", idle: float = 600.0) -> None:
    """Join the game at ``url`` and play until the opponent leaves (or ``idle`` seconds pass)."""
    sid = f"bot-{uuid.uuid4().hex[:12]}"
    client = RoomClient(f"{url}?name={quote(name)}&sid={sid}")
    try:
        client.connect()
        while True:
            envelope = client.recv(timeout=idle)
            state: dict[str, Any] | None = None
            if envelope.type == "hello":
                state = envelope.payload["state"]
            elif envelope.type == "state":
                state = envelope.payload
            if state is None:
                continue
            players = state["players"]
            me = next((m for m, p in players.items() if p and p["id"] == sid), None)
            if me is None or state["status"] == "abandoned":
                return  # no seat for us, or the opponent left
            if state["status"] == "playing" and state["turn"] == me:
                client.send("play", {"cell": choose(state["board"], me)})
    except (ClientClosed, TimeoutError):
        return
    finally:
        client.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    play(sys.argv[1])
