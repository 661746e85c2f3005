"""Flask integration: call ``handle`` inside a view declared with ``websocket=True``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import flask

from wsroom.types import Identity, RoomID

from .wsgi import REFUSALS, refusal_response, upgraded_response

if TYPE_CHECKING:
    from wsroom.hooks import Resolver
    from wsroom.hub import Hub

__all__ = ["handle"]


class _Upgraded(flask.Response):
    """The view's answer after an upgrade: its WSGI call writes nothing (the 101 is sent)."""

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        return upgraded_response(environ)


def handle(hub: Hub, room: RoomID | str, identity: Identity, resolve: Resolver) -> flask.Response:
    """Serve this request's WebSocket as a member of ``room``; return the result from the view.

    Blocks (cooperatively) for the connection's life. Refusals come back as the same plain
    HTTP answers as ``make_handler`` gives. Serve the app with ``wsroom.transport.serve``, or
    with gunicorn's gevent worker.
    """
    environ = flask.request.environ
    try:
        hub.handle_ws(environ, room, identity, resolve)
    except REFUSALS as exc:
        status, headers, body = refusal_response(exc)
        return flask.Response(body, status, headers)
    return _Upgraded()
