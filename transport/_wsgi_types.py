"""The WSGI type aliases the transport's apps and servers share."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Environ", "StartResponse", "WSGIApp"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
