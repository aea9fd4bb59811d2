"""``python -m service [--port P] [--host H]``: the API under uvicorn (uvloop, httptools).

One worker, access log off (per-request log lines cost throughput; request metrics are in
/metrics), the header/connection limits of service/server.py. Configuration comes from the
environment (see service/settings.py).
"""

from __future__ import annotations

import argparse
import sys


def _skip_httpx_cli() -> None:
    """Keep httpx's command-line module (rich, click, pygments: ~6 MB RSS) out of the server.

    ``import httpx`` tries ``from ._main import main`` and falls back to a stub on
    ImportError; a placeholder module without ``main`` takes that path. Only this process
    (the server) is affected, and it never uses the httpx CLI.
    """
    import types

    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", types.ModuleType("httpx._main"))


def main(argv: list[str] | None = None) -> int:
    _skip_httpx_cli()
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument(
        "--port", type=int, default=None, help="listen port (default $PORT or 8081)"
    )
    parser.add_argument(
        "--host", default=None, help="listen address (default $BIND_HOST or 0.0.0.0)"
    )
    args = parser.parse_args(argv)

    from pydantic import ValidationError

    from service.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"service: bad configuration:\n{exc}", file=sys.stderr)
        return 2
    if args.port is not None:
        settings.port = args.port
    if args.host is not None:
        settings.bind_host = args.host

    import uvicorn

    from service.app import create_app
    from service.logsetup import configure_logging

    configure_logging(settings)
    from service.server import uvicorn_config

    config = uvicorn.Config(
        **uvicorn_config(
            create_app(settings),
            max_header_bytes=settings.max_header_bytes,
            header_timeout_s=settings.header_timeout_s,
            max_connections=settings.max_connections,
            keepalive_timeout_s=settings.keepalive_timeout_s,
        ),
        host=settings.bind_host,
        port=settings.port,
        log_level=settings.log_level,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    server.run()
    # uvicorn exits without raising when the port is taken; report it as a failure.
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
