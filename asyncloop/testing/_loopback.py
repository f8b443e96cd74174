"""Serve an aiohttp application on 127.0.0.1 and a free port (the local test servers' one way)."""

from __future__ import annotations

from aiohttp import web

__all__ = ("serve_on_loopback",)


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, str]:
    """Start `app` on 127.0.0.1, port chosen by the OS; return its runner and base URL.

    Never another interface: tests and benchmarks must not listen beyond loopback. The
    runner is cleaned up if starting fails; on success, the caller owns ``runner.cleanup()``.
    """
    # Handlers' sleeps end when their owner starts closing, so a short shutdown suffices.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    try:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
    except BaseException:
        await runner.cleanup()
        raise
    return runner, f"http://{host}:{port}"
