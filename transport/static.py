"""Serving the browser client, ``wsroom.js``, from any WSGI app.

``client_js_app()`` is a WSGI app that answers every GET or HEAD with the ES module; mount it at
a path of your choice (the examples use ``/wsroom.js``). ``client_js()`` gives the text itself,
for frameworks that prefer to return it from a view.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

from ._wsgi_types import Environ, StartResponse, WSGIApp

__all__ = ["CLIENT_JS_CONTENT_TYPE", "client_js", "client_js_app", "client_js_etag"]

CLIENT_JS_CONTENT_TYPE = "text/javascript; charset=utf-8"


@lru_cache(maxsize=1)
def client_js() -> bytes:
    """The bytes of ``wsroom.js``, as shipped inside the package."""
    return resources.files("wsroom").joinpath("static/wsroom.js").read_bytes()


def client_js_etag() -> str:
    """A strong ETag for the shipped ``wsroom.js``."""
    return '"' + hashlib.sha256(client_js()).hexdigest()[:20] + '"'


def client_js_app(max_age: int = 0) -> WSGIApp:
    """A WSGI app serving ``wsroom.js`` with a JavaScript content type (ES modules need one).

    ``max_age`` sets ``Cache-Control``; 0 (the default) means "revalidate each time", answered
    with 304 when the browser's ``If-None-Match`` matches.
    """
    if max_age < 0:
        raise ValueError(f"max_age must be >= 0, got {max_age!r}")
    cache = f"public, max-age={max_age}" if max_age else "no-cache"

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            body = b"method not allowed\n"
            start_response(
                "405 Method Not Allowed",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("Allow", "GET, HEAD"),
                ],
            )
            return [body]
        etag = client_js_etag()
        if environ.get("HTTP_IF_NONE_MATCH") == etag:
            start_response("304 Not Modified", [("ETag", etag), ("Cache-Control", cache)])
            return []
        data = client_js()
        start_response(
            "200 OK",
            [
                ("Content-Type", CLIENT_JS_CONTENT_TYPE),
                ("Content-Length", str(len(data))),
                ("ETag", etag),
                ("Cache-Control", cache),
            ],
        )
        return [] if method == "HEAD" else [data]

    return app
