"""A small hub for the wsroom.js tests: a test page, /wsroom.js, and /ws/<room>?user=.

Hooks: every join gets ``hello`` {you, reconnect}; ``echo`` is answered to the sender;
``shout`` is broadcast to the others; ``drop`` closes the sender's connection with 4008
(not a final code: the client reconnects). ``--refuse NAME`` makes the resolver refuse that
user (403), as a server restarted with new rules would.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import wsroom  # noqa: E402
from wsroom.transport import client_js_app, make_handler, run_until_signal, serve  # noqa: E402

PAGE = b"""<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">
<title>wsroom.js test</title>
<script type="module">
import * as wsroom from "/wsroom.js";
window.wsroom = wsroom;
window.ready = true;
</script>
"""


class Hooks(wsroom.Hooks):
    hub: wsroom.Hub

    def on_join(self, jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        client.send(wsroom.Envelope("hello", {"you": jc.participant, "reconnect": jc.reconnect}))

    def on_message(self, room: Any, participant: Any, envelope: wsroom.Envelope) -> None:
        if envelope.type == "echo":
            self.hub.send_to(room, participant, envelope)
        elif envelope.type == "shout":
            self.hub.broadcast(room, envelope, exclude=[participant])
        elif envelope.type == "drop":
            raise wsroom.CloseConnection(4008, "dropped for the test")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--grace", type=float, default=20.0)
    parser.add_argument("--refuse", default="", help="a user the resolver refuses (403)")
    args = parser.parse_args()

    def resolve(room: Any, ident: wsroom.Identity) -> str:
        if args.refuse and ident.user_id == args.refuse:
            raise ValueError(f"{args.refuse} is not welcome")
        return ident.user_id

    hooks = Hooks()
    hub = wsroom.new_hub(hooks, wsroom.ReconnectPolicy(args.grace, 64))
    hooks.hub = hub
    ws = make_handler(
        hub,
        lambda env: str(env["PATH_INFO"]).rsplit("/", 1)[-1],
        lambda env: wsroom.Identity(parse_qs(env.get("QUERY_STRING", "")).get("user", [""])[0]),
        resolve,
    )
    js = client_js_app()

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/wsroom.js":
            return js(environ, start_response)
        if path.startswith("/ws/"):
            return ws(environ, start_response)
        headers = [("Content-Type", "text/html"), ("Content-Length", str(len(PAGE)))]
        start_response("200 OK", headers)
        return [PAGE]

    server = serve(app, "127.0.0.1", args.port)
    print(f"js test hub on http://127.0.0.1:{server.server_port}", flush=True)
    run_until_signal(server, hub)


if __name__ == "__main__":
    main()
