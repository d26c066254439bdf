"""The stack's front door: LiteLLM's own proxy command, with its Gunicorn
workers closing kept-alive connections without losing a request.

Rendered verbatim as ``litellm/door.py`` and run as the proxy container's
entrypoint (``python3 door.py --config ... --run_gunicorn``): it changes one
thing, the HTTP protocol LiteLLM's Uvicorn workers speak, then hands the
command line to LiteLLM's CLI unchanged. Standard library, Uvicorn and
LiteLLM only: it runs inside the official LiteLLM image.

Why requests died while workers recycled (bench/RESULTS.md: 164 of 3,000
chat completions, ``RemoteProtocolError``, from clients that keep connections
alive and do not retry). Read in the pinned releases (docs/facts.md,
"The front door"):

- LiteLLM's ``--run_gunicorn`` runs Gunicorn with
  ``uvicorn.workers.UvicornWorker``, which hands Gunicorn's ``max_requests``
  to Uvicorn as ``limit_max_requests`` (``uvicorn/workers.py``). Uvicorn's
  server checks the count every 0.1 s and then shuts itself down
  (``uvicorn/server.py``: ``on_tick``, ``shutdown``).
- That shutdown calls ``shutdown()`` on every open connection. Uvicorn's h11
  protocol closes an idle kept-alive connection at once, and lets one with a
  request in flight finish it, then closes it too
  (``uvicorn/protocols/http/h11_impl.py``: ``shutdown``, ``send``). Neither
  answer tells the client: the last response carries no ``Connection: close``,
  so the client keeps the connection in its pool as reusable.
- The clients are busy: each sends its next request the moment the last
  answer arrives. That request meets a connection the server is closing or
  has just closed, and the client sees the connection drop with no response
  (httpx: ``RemoteProtocolError: Server disconnected``). HTTP/1.1 allows a
  server to close an idle connection, and a client may retry only idempotent
  requests by itself (RFC 9112, section 9.3.1), so a POST is lost.

The fix, at the depth where it happens: a worker that is shutting down never
closes a connection its client believes is reusable. A response not yet
started, and the next response on every kept-alive connection, says
``Connection: close`` and the connection closes after it, the way RFC 9112
section 9.6 describes a server ending a persistent connection. A connection
that stays idle is closed after a short grace period (a client that has not
sent for that long is not about to). Gunicorn starts the replacement when the
worker exits, as before; the listening socket stays open in the master, so a
new connection waits in the backlog rather than being refused.

Two more settings the rendered stack needs and LiteLLM's Gunicorn options do
not expose:
- keep-alive: Gunicorn's default (2 s, what UvicornWorker passes on) is
  shorter than the idle expiry of the common clients' pools (httpx and the
  OpenAI SDKs, 5 s), so the server, not the client, closes idle connections,
  with the same race. The door keeps them ``GSC_PROXY_KEEPALIVE_S`` (rendered
  from ``proxy.keepalive_s``).
- the per-request access-log line (on unless ``GSC_PROXY_ACCESS_LOG`` is 0):
  measured at 3.6 % of a worker's time per request (docs/facts.md,
  "The front door").
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when the door opens: the renderer reads this module's names without them
    from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

KEEPALIVE_ENV = "GSC_PROXY_KEEPALIVE_S"
ACCESS_LOG_ENV = "GSC_PROXY_ACCESS_LOG"
# A draining worker closes a connection idle this long: a client that waited
# a second has no request on the wire, and the worker's replacement starts
# only when it exits.
DRAIN_IDLE_S = 1.0
CLOSE_HEADER = (b"connection", b"close")


def _keepalive_s(default: int) -> int:
    value = os.environ.get(KEEPALIVE_ENV, "")
    return int(value) if value else default


def _access_log_on() -> bool:
    return os.environ.get(ACCESS_LOG_ENV, "1") != "0"


def _last_on_connection(cycle: RequestResponseCycle) -> None:
    """This response is the connection's last, and says so: Uvicorn adds the
    request's ``Connection: close`` to the response and h11 then closes."""
    cycle.keep_alive = False
    headers: list[tuple[bytes, bytes]] = cycle.scope["headers"]  # type: ignore[assignment]
    if CLOSE_HEADER not in headers:
        headers.append(CLOSE_HEADER)


def draining_protocol() -> type[H11Protocol]:
    """Uvicorn's h11 protocol, except in ``shutdown()`` (see the module)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class DrainingH11Protocol(H11Protocol):
        _draining = False
        _cycle: RequestResponseCycle | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.timeout_keep_alive = _keepalive_s(self.timeout_keep_alive)
            self.access_log = self.access_log and _access_log_on()

        # Uvicorn assigns each request's cycle here; once draining, every new
        # one is the connection's last.
        @property  # type: ignore[override]
        def cycle(self) -> RequestResponseCycle | None:
            return self._cycle

        @cycle.setter
        def cycle(self, value: RequestResponseCycle | None) -> None:
            if value is not None and self._draining:
                _last_on_connection(value)
            self._cycle = value

        def shutdown(self) -> None:
            self._draining = True
            cycle = self._cycle
            if cycle is not None and not cycle.response_complete:
                if not cycle.response_started:
                    _last_on_connection(cycle)
                # Already answering without the header: the client may reuse
                # the connection, so it stays open for that next request.
                return
            if self.transport.is_closing():
                return
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(DRAIN_IDLE_S, self.timeout_keep_alive_handler)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._draining and self.timeout_keep_alive_task is not None:
                self.timeout_keep_alive_task.cancel()
                self.timeout_keep_alive_task = self.loop.call_later(DRAIN_IDLE_S, self.timeout_keep_alive_handler)

    return DrainingH11Protocol


def install() -> None:
    """Make every UvicornWorker Gunicorn forks speak the draining protocol.
    ``CONFIG_KWARGS`` is the class attribute Uvicorn's own worker subclasses
    set to choose their protocol (``uvicorn/workers.py``)."""
    from uvicorn.workers import UvicornWorker

    UvicornWorker.CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "http": draining_protocol()}


def main() -> None:
    install()
    from litellm.proxy.proxy_cli import run_server  # the official CLI; argv passes through

    run_server()


if __name__ == "__main__":
    main()
