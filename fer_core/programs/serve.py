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
"""

import argparse
import asyncio
import io
import logging
import os
import sys
import threading
import warnings
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Annotated, Literal

from ..faces.detection import (
    DEFAULT_DETECTOR,
    DEFAULT_MIN_CONFIDENCE,
    DETECT_MAX_SIDE,
    DETECTORS,
    MAX_PIXELS,
    WORKING_PIXELS,
)
from ..inference.registry import default_model
from .serve_limits import BodyLimit
from .serve_pool import Busy, Pool, Recognizers

log = logging.getLogger("fer_core.programs.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MODEL = default_model()  # Recognizer's default: the best on val
TTA_CHOICES = ("auto", "none", "flip", "tencrop")


@dataclass(frozen=True)
class Settings:
    model: str = DEFAULT_MODEL
    workers: int = 2  # inference threads
    queue: int = 16  # requests that may wait for a thread beyond those running
    max_upload_bytes: int = 25 * 1024 * 1024  # per request, like the dashboard's maxUploadSize
    max_pixels: int = MAX_PIXELS
    max_files: int = 16
    body_timeout: float = 30.0  # seconds a client may pause while sending its body
    preload: tuple[str, ...] | None = None  # models loaded (and run once) before accepting connections;
    # None: the default model


class ClientError(Exception):
    """A request the server refuses; the status and the message go to the client as they are."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


# --------------------------------------------------------------------------- the work of a request

_haar_lock = threading.Lock()  # OpenCV's cascade object is shared; do not count on it being re-entrant


def measure(name: str, data: bytes, max_pixels: int) -> tuple[int, str]:
    """An uploaded file's pixel count and format from its header (nothing decoded yet), or
    ClientError saying why it cannot be used."""
    from PIL import Image

    if not data:
        raise ClientError(400, f"{name}: the file is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height, kind = *im.size, im.format
        except Image.DecompressionBombError:
            raise ClientError(413, f"{name}: too many pixels (the limit is {max_pixels:,})") from None
        except Exception:
            raise ClientError(
                415,
                f"{name}: not an image ({len(data):,} bytes in no format this server reads; "
                "send a JPEG, PNG, WebP, BMP, TIFF or GIF image)",
            ) from None
    if width * height > max_pixels:
        raise ClientError(413, f"{name}: {width}x{height} is {width * height:,} pixels; the limit is {max_pixels:,}")
    if min(width, height) * min(1.0, DETECT_MAX_SIDE / max(width, height)) < 1:
        # shrunk for the detector a side would be 0 pixels: no face can be found, so say why
        raise ClientError(422, f"{name}: {width}x{height} is too narrow to search for faces")
    return width * height, kind


def decode(name: str, data: bytes, kind: str):
    """An uploaded file as an upright RGB PIL image, or ClientError saying why not."""
    from ..faces.detection import ImageError, load_photo

    try:
        return load_photo(data, name=name)
    except ImageError as e:  # a known format, but broken (truncated, corrupt)
        raise ClientError(422, f"{e} (a {kind} file that cannot be decoded)") from None


def run_predict(recognizers: Recognizers, uploads: list[tuple[str, bytes]], options: dict, max_pixels: int):
    """In a pool thread: every file's header first (a file that is no image or too large fails
    the request before any work), then the faces found and classified, several images in one
    pass as long as their decoded pixels (each reduced to WORKING_PIXELS at most) add up to no
    more than one image's (so that a request of many large photos never holds them all at once)."""
    sizes = [
        (min(px, WORKING_PIXELS), kind) for px, kind in (measure(name, data, max_pixels) for name, data in uploads)
    ]
    max_pixels = min(max_pixels, WORKING_PIXELS)
    recognizer = recognizers.get(**options)
    results, group = [], []

    def flush():
        images = [decode(name, data, kind) for (name, data), (_, kind) in group]
        with _haar_lock if options["detector"] == "haar" else nullcontext():
            per_image = recognizer.batch(images)
        results.extend(
            {"path": name, "tta": recognizer.tta, "faces": [face.to_dict() for face in faces]}
            for ((name, _), _), faces in zip(group, per_image, strict=True)
        )
        group.clear()

    for upload, size in zip(uploads, sizes, strict=True):
        if group and sum(px for _, (px, _) in group) + size[0] > max_pixels:
            flush()
        group.append((upload, size))
    flush()
    return results


def served_models() -> list[str]:
    """What a client may ask for: the shipped models, and the ensemble once one is shipped."""
    from ..inference.registry import ensemble_members, shipped_names

    names = shipped_names()
    return names + (["ensemble"] if ensemble_members() else [])


def model_info(name: str) -> dict:
    from ..inference.registry import ensemble_members, model_record

    record = model_record(name) or {}
    val = record.get("val", {})
    view = val.get("tta", "none")
    metrics = val.get("metrics", {})
    info = {
        "name": name,
        "tta": view,
        "val_accuracy": metrics.get(view, {}).get("accuracy"),
        "val_accuracy_by_tta": {k: v.get("accuracy") for k, v in metrics.items()},
        "val_faces": val.get("faces"),
    }
    if name == "ensemble":
        info["members"] = ensemble_members()
        if "weights" in record:  # the calibrated, weighted ensemble: each member in its own view
            chosen = next(o for o in record["calibration"]["options"] if o["option"] == record["calibration"]["chosen"])
            info |= {
                "tta": "auto",
                "views": record["views"],
                "weights": record["weights"],
                "val_accuracy": record["calibration"]["in_sample"]["accuracy"],
                "val_accuracy_out_of_fold": chosen["calibrated_out_of_fold"]["accuracy"],
            }
    else:
        info["architecture"] = record.get("architecture")
    return info


# --------------------------------------------------------------------------- the app

PREDICT_DESCRIPTION = """
Find the faces in one or more images and classify each face's emotion.

**Images**: multipart/form-data file parts in the field `files` (repeat it for several) or
`file`. At most {max_files} files and {max_mb:g} MB per request, {max_pixels:,} pixels per image;
JPEG, PNG, WebP, BMP, TIFF, GIF (first frame).

**Options**, as query parameters or form fields (not both with different values): `model`
(one of {models}; default `{default}`), `tta` (`auto` = the view the model's record chose on
val), `detector`, `min_face_confidence`, `whole_image` (classify the whole image when no face
is found).

**Answer**: per image, what `fer-predict --json` prints for it:
`{{"path": <the file's name>, "tta": <the view used>, "faces": [{{"box": [x, y, w, h], "label",
"confidence", "probabilities": {{class: p}}, "detection_confidence"}}, ...]}}`, faces left to right.
**A list** of these, in upload order, when the request used the field `files` or sent several
files; **one object** for a single file sent as `file` (as `fer-predict --json` does for one
image). So a client that always uses `files` always gets a list.

**Errors**, as `{{"detail": "..."}}`: 400 no file / empty file / unreadable form, 408 body
stopped arriving, 413 body, image or file count over the limits, 415 a file that is not an
image (the message names it), 422 a bad option, an unknown model or a corrupt image file,
503 (with Retry-After) all inference threads busy and the queue full: try again.
"""


def create_app(settings: Settings | None = None):
    from fastapi import FastAPI, File, Form, Query, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    settings = settings or Settings()
    recognizers = Recognizers()
    models = served_models()
    preload = (settings.model,) if settings.preload is None else settings.preload
    for name in (settings.model, *preload):
        if name not in models:
            raise ValueError(f"unknown model {name!r}; served: {', '.join(models) or 'none shipped yet'}")
    state = {"pool": None}

    @asynccontextmanager
    async def lifespan(app):
        state["pool"] = Pool(settings.workers, settings.queue)
        import numpy as np

        for name in preload:  # load and run once, so that the first request does not wait for it
            await asyncio.get_running_loop().run_in_executor(
                state["pool"].executor,
                lambda name=name: recognizers.get(name, "auto", DEFAULT_DETECTOR, DEFAULT_MIN_CONFIDENCE, False)(
                    np.full((64, 64, 3), 128, np.uint8)
                ),
            )
        log.info(
            "fer-serve: model %s ready; %d inference thread(s), queue %d",
            settings.model,
            settings.workers,
            settings.queue,
        )
        try:
            yield
        finally:
            state["pool"].shutdown()

    class FaceOut(BaseModel):
        box: list[int]
        label: str
        confidence: float
        probabilities: dict[str, float]
        detection_confidence: float

    class ImageOut(BaseModel):
        path: str
        tta: str
        faces: list[FaceOut]

    class ErrorOut(BaseModel):
        detail: str

    class ModelOut(BaseModel):
        name: str
        tta: str
        val_accuracy: float | None
        val_accuracy_by_tta: dict[str, float | None]
        val_faces: int | None = None
        architecture: str | None = None
        members: list[str] | None = None
        views: dict[str, str] | None = None  # the ensemble: each member's test-time view
        weights: dict[str, float] | None = None  # ... and its weight (calibrated on val)
        val_accuracy_out_of_fold: float | None = None

    class ModelsOut(BaseModel):
        default: str
        models: list[ModelOut]

    class HealthOut(BaseModel):
        status: str
        model: str
        loaded: list[str]
        workers: int
        queue: int
        in_progress: int
        served: int
        refused_busy: int

    app = FastAPI(
        title="fer-serve",
        version="0.1.0",
        lifespan=lifespan,
        description="Facial-expression recognition over HTTP: the faces in a photo and their emotions "
        '(FER2013 classes), from the lab\'s shipped models. Errors are JSON `{"detail": "..."}`.',
        docs_url=None,  # served below from the swagger-ui-bundle package: FastAPI's would load it from a CDN
        redoc_url=None,
    )
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="fer-serve - API docs",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes, idle_timeout=settings.body_timeout)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        return JSONResponse({"detail": str(exc.detail)}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        where = {"query": "query parameter", "body": "form field", "path": "path parameter", "header": "header"}
        parts = []
        for e in exc.errors():
            loc = [str(x) for x in e.get("loc", ())]
            place = f"{where.get(loc[0], loc[0])} '{'.'.join(loc[1:])}'" if len(loc) > 1 else ".".join(loc) or "request"
            got = f" (got {e['input']!r})" if isinstance(e.get("input"), (str, int, float)) else ""
            parts.append(f"{place}: {e.get('msg', 'invalid')}{got}")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, 422)

    @app.exception_handler(ClientError)
    async def client_error(request, exc):
        return JSONResponse({"detail": exc.detail}, exc.status)

    @app.exception_handler(Exception)
    async def server_error(request, exc):
        log.exception("fer-serve: %s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the server's log"}, 500)

    errors = {
        code: {"model": ErrorOut, "description": text}
        for code, text in (
            (400, "no file, an empty file or an unreadable form"),
            (408, "the body stopped arriving"),
            (413, "body, pixels or file count over the limits"),
            (415, "a file that is not an image"),
            (422, "a bad option, an unknown model or a broken image file"),
            (503, "busy: all threads working and the queue full"),
        )
    }

    model_enum = {"enum": models}

    @app.post(
        "/predict",
        response_model=ImageOut | list[ImageOut],
        responses=errors,
        summary="Faces and their emotions in uploaded images",
        description=PREDICT_DESCRIPTION.format(
            max_files=settings.max_files,
            max_mb=settings.max_upload_bytes / 2**20,
            max_pixels=settings.max_pixels,
            default=settings.model,
            models=", ".join(f"`{m}`" for m in models),
        ),
    )
    async def predict(
        request: Request,
        files: Annotated[list[UploadFile] | None, File(description="images; repeat for several")] = None,
        file: Annotated[list[UploadFile] | None, File(description="an image (the answer is one object)")] = None,
        model: Annotated[
            str | None, Query(description=f"default {settings.model}", json_schema_extra=model_enum)
        ] = None,
        tta: Annotated[Literal[TTA_CHOICES] | None, Query(description="test-time view; default auto")] = None,
        detector: Annotated[Literal[DETECTORS] | None, Query(description=f"default {DEFAULT_DETECTOR}")] = None,
        min_face_confidence: Annotated[
            float | None, Query(ge=0, le=1, allow_inf_nan=False, description=f"default {DEFAULT_MIN_CONFIDENCE}")
        ] = None,
        whole_image: Annotated[bool | None, Query(description="default false")] = None,
        model_f: Annotated[str | None, Form(alias="model", json_schema_extra=model_enum)] = None,
        tta_f: Annotated[Literal[TTA_CHOICES] | None, Form(alias="tta")] = None,
        detector_f: Annotated[Literal[DETECTORS] | None, Form(alias="detector")] = None,
        min_face_confidence_f: Annotated[
            float | None, Form(alias="min_face_confidence", ge=0, le=1, allow_inf_nan=False)
        ] = None,
        whole_image_f: Annotated[bool | None, Form(alias="whole_image")] = None,
    ):
        def pick(name, query_value, form_value, default):
            if query_value is not None and form_value is not None and query_value != form_value:
                raise ClientError(
                    422,
                    f"{name} given as a query parameter ({query_value!r}) and as a form field "
                    f"({form_value!r}); give it once",
                )
            return next((v for v in (form_value, query_value) if v is not None), default)

        options = {
            "model": pick("model", model, model_f, settings.model),
            "tta": pick("tta", tta, tta_f, "auto"),
            "detector": pick("detector", detector, detector_f, DEFAULT_DETECTOR),
            "min_face_confidence": pick(
                "min_face_confidence", min_face_confidence, min_face_confidence_f, DEFAULT_MIN_CONFIDENCE
            ),
            "whole_image": pick("whole_image", whole_image, whole_image_f, False),
        }
        if options["model"] not in models:
            raise ClientError(
                422,
                f"unknown model {options['model']!r}; served models: {', '.join(models)} "
                "(only shipped models, by name)",
            )
        uploads = [*(files or []), *(file or [])]
        if not uploads:
            kind = request.headers.get("content-type", "").split(";")[0].strip()
            hint = (
                ""
                if kind == "multipart/form-data"
                else f" (this request's Content-Type is {kind})"
                if kind
                else " (this request has no Content-Type)"
            )
            raise ClientError(
                400, f"no image: send one or more files as multipart/form-data in the field 'files' (or 'file'){hint}"
            )
        if len(uploads) > settings.max_files:
            raise ClientError(413, f"{len(uploads)} files; at most {settings.max_files} per request")
        named = []
        for i, upload in enumerate(uploads):
            named.append((upload.filename or f"upload-{i + 1}", await upload.read()))
        if await request.is_disconnected():
            return JSONResponse({"detail": "client went away"}, 499)
        try:
            results = await state["pool"].run(run_predict, recognizers, named, options, settings.max_pixels)
        except Busy:
            return JSONResponse(
                {
                    "detail": f"busy: {settings.workers} inference thread(s) working and "
                    f"{settings.queue} request(s) waiting; try again shortly"
                },
                503,
                headers={"Retry-After": "1"},
            )
        one_object = len(results) == 1 and not files
        return JSONResponse(results[0] if one_object else results)

    @app.get(
        "/models", response_model=ModelsOut, response_model_exclude_none=True, summary="The models a request may name"
    )
    async def list_models():
        """The shipped models (and the ensemble of them) with the test-time view their record chose
        on val and the val accuracy with it."""
        return {"default": settings.model, "models": [model_info(m) for m in models]}

    @app.get("/health", response_model=HealthOut, summary="Liveness and load")
    async def health():
        pool = state["pool"]
        return {
            "status": "ok",
            "model": settings.model,
            "loaded": recognizers.loaded(),
            "workers": pool.workers,
            "queue": pool.queue,
            "in_progress": pool.pending,
            "served": pool.done,
            "refused_busy": pool.refused,
        }

    return app


# --------------------------------------------------------------------------- the command


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
