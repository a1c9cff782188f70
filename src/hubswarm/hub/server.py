"""Run the hub: an AppRunner with slow-loris timeouts, TLS, and graceful shutdown on signals.

``running_hub`` is the async context manager tests and the lab use; ``serve`` is what the CLI
runs until SIGINT/SIGTERM. Shutdown stops accepting, gives in-flight requests
``config.shutdown_timeout`` seconds, cancels the rest (their partial uploads are removed by the
store's ``finally``), and sweeps ``.partial/`` once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from hubswarm.clock import Clock
from hubswarm.errors import ConfigError
from hubswarm.httpnet import NetworkSite
from hubswarm.hub.app import (
    OPLOG_KEY,
    STATS_KEY,
    STORE_KEY,
    HubConfig,
    QuietAccessLogger,
    create_app,
)
from hubswarm.limits import HUB_LINGERING_TIME, HUB_READ_BUFSIZE
from hubswarm.net import StreamNetwork
from hubswarm.oplog import ServerLog


def make_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Server TLS context from PEM files (TLS 1.2+); raises ConfigError if they don't load."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from exc
    return ctx


def _format_url(host: str, port: int, tls: bool) -> str:
    scheme = "https" if tls else "http"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


async def _sweep_partials(app: web.Application) -> None:
    # Every handler has finished or been cancelled by now: nothing in .partial/ is live.
    await asyncio.to_thread(app[STORE_KEY].prepare)


@contextlib.asynccontextmanager
async def running_hub(
    config: HubConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    configure: Callable[[web.Application], None] | None = None,
    *,
    clock: Clock | None = None,
    network: StreamNetwork | None = None,
) -> AsyncIterator[str]:
    """Serve the hub while the block runs; yield its base URL (real port when ``port`` is 0).

    ``configure(app)`` may add routes (the tracker's ``/announce``) before the app starts;
    ``clock`` is the app's source of time (default: the running loop's) and ``network``
    where it listens (default: the kernel's TCP; another network takes no TLS).
    """
    if network is not None and ssl_context is not None:
        raise ConfigError("TLS is served on the kernel's TCP only")
    app = create_app(config, clock=clock)
    if configure is not None:
        configure(app)
    app.on_cleanup.append(_sweep_partials)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=config.shutdown_timeout,
        access_log_class=QuietAccessLogger,
        # Malformed requests and disconnects: one throttled line each, no traceback.
        logger=ServerLog(app[OPLOG_KEY], logging.getLogger("aiohttp.server")),
        # Time allowed for a request's headers and between keep-alive requests (slow-loris).
        keepalive_timeout=config.keepalive_timeout,
        # How long a refused body is still read and dropped before the socket is closed.
        lingering_time=min(HUB_LINGERING_TIME, config.read_timeout),
        # Body buffer per connection: lets the socket keep filling while a chunk is hashed and
        # written in a thread (aiohttp's 64 KiB default serializes network and disk).
        read_bufsize=HUB_READ_BUFSIZE,
    )
    await runner.setup()
    try:
        site: web.BaseSite
        if network is None:
            site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
        else:
            site = NetworkSite(runner, network, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        server = runner.server
        if server is not None:
            app[STATS_KEY].connections_source = lambda: len(server.connections)
        if isinstance(site, NetworkSite):
            bound_host, bound_port = site.address  # the host's own address for 0.0.0.0
        else:
            bound_host, bound_port = host, int(runner.addresses[0][1])
        yield _format_url(bound_host, bound_port, ssl_context is not None)
    finally:
        await runner.cleanup()


async def serve(
    config: HubConfig,
    host: str = "127.0.0.1",
    port: int = 8080,
    ssl_context: ssl.SSLContext | None = None,
    ready: Callable[[str], None] | None = None,
    configure: Callable[[web.Application], None] | None = None,
    alongside: Callable[[str], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully; ``ready(url)`` once listening.

    ``alongside(url)`` runs beside the server (e.g. a peer seeding its files) and is cancelled
    before it stops; if it fails, the server stops too.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with (
            running_hub(config, host, port, ssl_context, configure) as url,
            asyncio.TaskGroup() as tg,
        ):
            task = tg.create_task(alongside(url)) if alongside is not None else None
            if ready is not None:
                ready(url)
            # The server's lifetime: it ends only by a signal (or the caller cancelling us).
            await stop.wait()
            if task is not None:
                task.cancel()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
