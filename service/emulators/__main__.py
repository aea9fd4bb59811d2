"""``python -m service.emulators {c2s|diretrix|work} --port P [--profile …] [--seed 42]``.

Runs one emulator in its own process under uvicorn (uvloop + httptools, access log off) so
the local stack can start, measure and stop each upstream separately. Ready when
``GET /_emulator/health`` answers 200.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from service.emulators.faults import PROFILES, UPSTREAMS, env_latency_scale

DEFAULT_PORTS = {"c2s": 9001, "diretrix": 9002, "work": 9003}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.emulators",
        description="Run one upstream emulator (C2S, Diretrix or Work API).",
    )
    parser.add_argument("upstream", choices=UPSTREAMS)
    parser.add_argument(
        "--port", type=int, help="TCP port (default: c2s 9001, diretrix 9002, work 9003)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--profile", choices=PROFILES, default="nominal")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--latency-scale",
        type=float,
        help="multiply every latency (default: $EMULATOR_LATENCY_SCALE or 1.0)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    port = DEFAULT_PORTS[args.upstream] if args.port is None else args.port
    if not 0 <= port <= 65535:
        parser.error(f"--port must be 0-65535, got {port}")
    try:
        scale = env_latency_scale() if args.latency_scale is None else args.latency_scale
    except ValueError as exc:
        parser.error(str(exc))
    if scale < 0:
        parser.error(f"--latency-scale must be >= 0, got {scale}")

    import uvicorn

    module = importlib.import_module(f"service.emulators.{args.upstream}")
    app = module.create_app(profile=args.profile, seed=args.seed, latency_scale=scale)
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=port,
            loop="uvloop",
            http="httptools",
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,  # do not wait out injected 35 s hangs on shutdown
        )
    except OSError as exc:  # pragma: no cover - uvicorn usually exits itself on bind errors
        print(f"error: cannot serve on {args.host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
