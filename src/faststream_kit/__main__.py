"""``faststream-kit demo``: serve the demo page on http://127.0.0.1:8000."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="faststream-kit")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="serve the demo page")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    try:
        import uvicorn

        from ._demo import DemoSettings, create_app
        from ._demo._telemetry import with_telemetry
    except ImportError as exc:
        parser.exit(2, f"the demo needs {exc.name or exc}: pip install 'faststream-kit[demo]'\n")

    settings = DemoSettings.from_env()
    model = f"OpenAI {settings.openai_model}" if settings.openai_model else "a scripted model"
    bucket = f"s3://{settings.bucket}/{settings.prefix}" if settings.bucket else "an embedded S3"
    print(f"faststream-kit demo on http://{args.host}:{args.port}  (Ctrl+C to stop)")
    print(f"chat: {model}; gallery: {bucket}", flush=True)
    app = with_telemetry(create_app(settings))  # OTEL_TRACES_EXPORTER=console: spans printed
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
