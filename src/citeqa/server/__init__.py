"""The HTTP service: ``create_app`` builds the ASGI app, ``run`` serves it with uvicorn."""

from __future__ import annotations

import copy
import ipaddress
import logging
import socket
from types import FrameType
from typing import Any

from .._exceptions import CiteqaError, IndexStoreError, InvalidInputError
from ..settings import Settings
from .app import create_app

__all__ = [
    "MIN_PUBLIC_TOKEN_CHARS", "check_bind", "create_app", "is_loopback", "listen_sockets", "run",
]

MIN_PUBLIC_TOKEN_CHARS = 32
GRACEFUL_SHUTDOWN_S = 10

log = logging.getLogger("citeqa.server")


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public address


def check_bind(settings: Settings) -> None:
    """Refuse to expose the admin endpoints beyond this machine behind a guessable token."""
    token = settings.admin_token
    if token and len(token) < MIN_PUBLIC_TOKEN_CHARS and not is_loopback(settings.host):
        raise InvalidInputError(
            f"refusing to listen on {settings.host} with an admin token of {len(token)} "
            f"characters: use at least {MIN_PUBLIC_TOKEN_CHARS} (e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`), "
            "or bind 127.0.0.1, or unset CITEQA_ADMIN_TOKEN"
        )


def listen_sockets(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address ``host`` resolves to, as uvicorn would bind them.

    Bound before the app starts, so a port in use or a host that does not resolve is a
    ``CiteqaError`` at once: not uvicorn's log line and exit status 3 with the model
    still loading in a thread (which could abort the process as it exited).
    """
    name = host.strip().strip("[]")
    where = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(
            name or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue  # a family this machine lacks; asyncio skips it too
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:  # gaierror included
        for sock in sockets:
            sock.close()
        raise CiteqaError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    if not sockets:
        raise CiteqaError(f"cannot listen on {where}: no usable address")
    return sockets


def _log_config(json_lines: bool = False) -> dict[str, Any]:
    from uvicorn.config import LOGGING_CONFIG

    # uvicorn's own format (its access lines carry method, path and status, never headers),
    # plus our logger on the same handler.
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["citeqa"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    if json_lines:  # CITEQA_LOG_FORMAT=json: our request lines, bare, instead of uvicorn's
        config["formatters"]["json_lines"] = {"format": "%(message)s"}
        config["handlers"]["json_lines"] = {
            "class": "logging.StreamHandler", "formatter": "json_lines",
            "stream": "ext://sys.stdout",
        }
        config["loggers"]["citeqa.access"] = {
            "handlers": ["json_lines"], "level": "INFO", "propagate": False,
        }
    return config


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM. Raises a ``CiteqaError`` when the address cannot be
    bound or the index cannot load."""
    check_bind(settings)
    sockets = listen_sockets(settings.host, settings.port)  # before the model loads
    try:
        _serve(settings, sockets)
    finally:
        for sock in sockets:
            sock.close()


def _serve(settings: Settings, sockets: list[socket.socket]) -> None:
    import uvicorn

    failures: list[Exception] = []
    server: uvicorn.Server | None = None

    def on_load_failure(exc: Exception) -> None:
        # Exit rather than serve 503s forever: a supervisor or the user sees why at once.
        failures.append(exc)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_load_failure=on_load_failure)
    service = app.state.service

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            service.draining = True  # new requests get 503; those in flight finish
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=_log_config(settings.log_format == "json"),
        access_log=settings.log_format != "json",
        server_header=False,
        timeout_graceful_shutdown=getattr(settings, "shutdown_grace_s", GRACEFUL_SHUTDOWN_S),
    )
    server = Server(config)
    if settings.admin_token:
        log.info("admin endpoints enabled (POST/DELETE /documents)")
    # uvicorn logs where it listens only for the sockets it binds itself.
    log.info("listening on http://%s (Ctrl-C to quit)", _address(sockets[0]))
    try:
        server.run(sockets=sockets)
    finally:
        if service.loader is not None:
            # Exiting while the model loads can abort the process (a native thread pool
            # torn down mid-use: "terminate called without an active exception").
            service.loader.join()
    if failures:
        exc = failures[0]
        if isinstance(exc, CiteqaError):
            raise exc
        raise IndexStoreError(f"the index could not be loaded: {exc}") from exc
    if not server.started:
        raise CiteqaError(f"could not start the server on {settings.host}:{settings.port}")


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
