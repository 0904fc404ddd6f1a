"""`fer-serve`: the recognizer over HTTP (FastAPI on uvicorn), on this machine unless told otherwise.

    fer-serve                                   # http://127.0.0.1:8000, the ensemble, 2 inference threads
    fer-serve --model stcnn --port 8080 --workers 2 --queue 16
    curl -F files=@photo.jpg 'http://127.0.0.1:8000/predict?tta=none'

Endpoints: `POST /predict` (images as multipart files in the field `files`, or `file`),
`GET /models`, `GET /health`, and the OpenAPI docs at `/docs` (schema at `/openapi.json`; the
Swagger UI's files come from the swagger-ui-bundle package, so the docs work offline).

Every answer goes through `fer_core.Recognizer`, so a photo gets the same faces and labels as
from `fer-predict --json` and the dashboard. Limits protect the one process: the request body
is counted while it arrives (a Content-Length over the limit is refused before a byte of the
body is read), images are measured from their header before they are decoded, and inference
runs in a fixed pool of threads behind a bounded queue; when the queue is full the answer is
503 with Retry-After, a condition of the server, never a 5xx for a client's mistake. Errors are
JSON: `{"detail": "..."}`.

To serve other machines, pass `--host 0.0.0.0` (there is no authentication: put it behind a
proxy that has some).

This module is the command: its options and the start of the server. The server itself is
`serve_app.py` (create_app), its routes `serve_routes.py`, their answers' schemas
`serve_schemas.py`, the work on a request's images `serve_work.py`, the models offered
`serve_catalog.py`, the body limits `serve_limits.py` and the inference pool `serve_pool.py`.
"""

import argparse
import logging
import os
import sys

from ..faces.detection import MAX_PIXELS
from ..inference.registry import default_model

log = logging.getLogger("fer_core.programs.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MODEL = default_model()  # Recognizer's default: the best on val


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="fer-serve",
        description="Serve facial-expression recognition over HTTP "
        "(POST /predict, GET /models, GET /health, docs at /docs).",
    )
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default {DEFAULT_HOST}: this machine only; 0.0.0.0 for every network)",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"the model for requests that name none: a shipped name or ensemble (default {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--preload",
        default=None,
        metavar="NAMES",
        help="models to load before serving, joined by commas, or 'all' (default: --model); "
        "others load on their first request",
    )
    p.add_argument(
        "--workers", type=int, default=2, metavar="N", help="inference threads in this one process (default 2)"
    )
    p.add_argument(
        "--queue",
        type=int,
        default=16,
        metavar="N",
        help="requests that may wait for a thread; more get 503 + Retry-After (default 16)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="PyTorch/OpenCV/OpenMP threads per inference (default: CPUs / workers, at least 1)",
    )
    p.add_argument("--max-upload-mb", type=float, default=25, metavar="MB", help="request body limit (default 25)")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        metavar="N",
        help=f"pixels per image (default {MAX_PIXELS:,})",
    )
    p.add_argument("--max-files", type=int, default=16, metavar="N", help="files per request (default 16)")
    p.add_argument(
        "--body-timeout",
        type=float,
        default=30,
        metavar="S",
        help="longest pause while a client sends its body (default 30 s)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=128,
        metavar="N",
        help="open connections; more are answered 503 by uvicorn (default 128)",
    )
    p.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=True, help="log each request (default on)"
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = p.parse_args(argv)
    for name in ("workers", "max_files", "port", "max_connections"):
        if getattr(args, name) < (0 if name == "port" else 1):
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.queue < 0:
        p.error("--queue must be 0 or more")
    if args.max_upload_mb <= 0 or args.body_timeout <= 0 or args.max_pixels < 1:
        p.error("--max-upload-mb, --body-timeout and --max-pixels must be positive")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # before torch and the detector load OpenMP
    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401
        import uvicorn
    except ImportError as e:
        print(f"fer-serve: error: {e.name} is missing; pip install 'fer-lab[serve]'", file=sys.stderr)
        return 2
    import cv2
    import torch

    torch.set_num_threads(threads)  # parallel across requests rather than within one: the pool's threads share the CPUs
    cv2.setNumThreads(threads)  # the face detectors run on OpenCV
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(message)s")
    from .serve_app import create_app  # needs the web framework, known by now to be installed
    from .serve_catalog import served_models
    from .serve_service import Settings

    if args.preload is None:
        preload = None
    elif args.preload.strip() == "all":
        preload = tuple(served_models())
    else:
        preload = tuple(n.strip() for n in args.preload.split(",") if n.strip())
    try:
        app = create_app(
            Settings(
                model=args.model,
                workers=args.workers,
                queue=args.queue,
                preload=preload,
                max_upload_bytes=int(args.max_upload_mb * 2**20),
                max_pixels=args.max_pixels,
                max_files=args.max_files,
                body_timeout=args.body_timeout,
            )
        )
    except ValueError as e:
        print(f"fer-serve: error: {e}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("fer-serve: listening on %s: other machines can reach it, and it has no authentication", args.host)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        limit_concurrency=args.max_connections,
        timeout_keep_alive=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
