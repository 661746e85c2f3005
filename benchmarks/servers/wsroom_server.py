"""wsroom: rooms served through ``make_handler``; hooks that broadcast and answer.

Wire protocol shared with floor_server.py (and run by benchmarks/node/loadgen.js):
``/ws?id=N`` joins the room ``bench`` as participant N (``/ws?id=N&room=R`` joins room R, for
scenario E's many small rooms); the server says ``{"type": "joined"}``; ``bcast`` goes to every
other member of the sender's room, ``echo`` back to its sender, ``relay`` to the member its
payload names in ``to`` (scenario G).

With ``--redis URL`` the hub is on the Redis backplane (scenarios F, G, H): several of these
processes on one Redis are one hub.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import parse_qs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gevent

import wsroom
from wsroom.transport import make_handler, serve

from _common import ROOM, parse_args, raise_nofile, ready


class BenchHooks(wsroom.Hooks):
    def __init__(self) -> None:
        self.hub: wsroom.Hub | None = None

    def on_join(self, jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        client.send(wsroom.Envelope("joined", None))

    def on_message(self, room: str, participant: str, envelope: wsroom.Envelope) -> None:
        assert self.hub is not None
        if envelope.type == "bcast":
            self.hub.broadcast(room, envelope, exclude=(participant,))
        elif envelope.type == "echo":
            self.hub.send_to(room, participant, envelope)
        elif envelope.type == "relay":
            self.hub.send_to(room, envelope.payload["to"], envelope)


def identity(environ: dict) -> wsroom.Identity:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    return wsroom.Identity(query.get("id", [""])[0])


def room_of(environ: dict) -> str:
    """The room named by the query (scenario E), else the one room of the other scenarios."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    return query.get("room", [ROOM])[0]


def resolve(room: str, ident: wsroom.Identity) -> str:
    return ident.user_id


def main() -> None:
    args = parse_args(__doc__ or "")
    raise_nofile()
    hooks = BenchHooks()
    # The README's configuration: a 30 s grace period, 64 queued; outbox bounds at their defaults.
    # 64 queued is also a resume member's bound on unacknowledged envelopes (contract §7):
    # --max-queued changes it (scenario R only, and only when asked).
    policy = wsroom.ReconnectPolicy(grace_period=30.0, max_queued_per_conn=args.max_queued)
    if args.redis:
        # The backplane's defaults (1 s heartbeat, dead after 5 s, calls give up after 8 s).
        hub = wsroom.new_hub(hooks, policy, backplane=args.redis)
    else:
        hub = wsroom.new_hub(hooks, policy)
    hooks.hub = hub
    server = serve(make_handler(hub, room_of, identity, resolve), host=args.host, port=args.port)
    ready(server.server_port)
    gevent.wait()


if __name__ == "__main__":
    main()
