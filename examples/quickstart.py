"""The Go wsroom README's quick start, in Python: one room, a /ws route on port 8080."""

import os

import wsroom
from wsroom.transport import make_handler, run_until_signal, serve


class Chat(wsroom.Hooks):
    def on_join(self, jc, client):
        client.send(wsroom.Envelope("welcome", {"you": jc.participant, "reconnect": jc.reconnect}))

    def on_message(self, room, participant, envelope):
        chat = wsroom.Envelope("chat", {"from": participant, "text": envelope.payload})
        hub.broadcast(room, chat, exclude=[participant])

    def on_leave(self, room, participant, reason):
        print(participant, "left", room, "because", repr(reason))


hub = wsroom.new_hub(Chat(), wsroom.ReconnectPolicy(grace_period=30, max_queued_per_conn=64))


def resolve(room, identity):  # runs before the upgrade; raise to refuse with 403
    return identity.user_id


def identity(environ):  # who is connecting: ?user=NAME (a real app checks a session or token)
    return wsroom.Identity(user_id=environ.get("QUERY_STRING", "").removeprefix("user="))


app = make_handler(hub, "lobby", identity, resolve)
try:
    server = serve(app, "127.0.0.1", 8080)
except OSError as exc:  # the port is in use, most likely: say so in one line
    hub.stop()
    raise SystemExit(f"quickstart: port 8080: {os.strerror(exc.errno or 0)}") from None
print("wsroom quick start on ws://127.0.0.1:8080/ws?user=NAME", flush=True)
run_until_signal(server, hub)  # Ctrl-C or SIGTERM: every client gets 1001
