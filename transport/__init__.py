"""The WebSocket transport: handshake, per-connection reader and writer, WSGI glue.

``wsroom.transport.flask`` (the ``flask`` extra) is imported on demand only.
"""

from __future__ import annotations

from .static import client_js, client_js_app
from .wsgi import UpgradeAwareHandler, make_handler, run_until_signal, serve

__all__ = [
    "UpgradeAwareHandler",
    "client_js",
    "client_js_app",
    "make_handler",
    "run_until_signal",
    "serve",
]
