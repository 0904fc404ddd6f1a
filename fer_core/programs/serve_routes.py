"""fer-serve's routes: POST /predict, GET /models and GET /health, each added to the app by a
function of its own. They share the app's Service (serve_app.py): its settings, the served
model names, the recognizers and the inference pool."""

from typing import Annotated, Literal

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from ..faces.detection import DEFAULT_DETECTOR, DEFAULT_MIN_CONFIDENCE, DETECTORS
from .serve_catalog import model_info
from .serve_pool import Busy
from .serve_schemas import ERROR_RESPONSES, HealthOut, ImageOut, ModelsOut
from .serve_service import Service, Settings
from .serve_work import ClientError, run_predict

TTA_CHOICES = ("auto", "none", "flip", "tencrop")

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


def add_predict_route(app: FastAPI, service: "Service") -> None:
    """POST /predict. Each option is declared twice, as a query parameter and as a form field,
    so that both show in the docs; chosen_options reconciles them."""
    settings, models = service.settings, service.models
    model_enum = {"enum": models}

    @app.post(
        "/predict",
        response_model=ImageOut | list[ImageOut],
        responses=ERROR_RESPONSES,
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
        options = chosen_options(
            service,
            query=dict(
                model=model,
                tta=tta,
                detector=detector,
                min_face_confidence=min_face_confidence,
                whole_image=whole_image,
            ),
            form=dict(
                model=model_f,
                tta=tta_f,
                detector=detector_f,
                min_face_confidence=min_face_confidence_f,
                whole_image=whole_image_f,
            ),
        )
        uploads = [*(files or []), *(file or [])]
        check_upload_count(request, len(uploads), settings.max_files)
        named = []
        for i, upload in enumerate(uploads):
            named.append((upload.filename or f"upload-{i + 1}", await upload.read()))
        if await request.is_disconnected():
            return JSONResponse({"detail": "client went away"}, 499)
        try:
            results = await service.pool.run(run_predict, service.recognizers, named, options, settings.max_pixels)
        except Busy:
            return busy_answer(settings)
        one_object = len(results) == 1 and not files
        return JSONResponse(results[0] if one_object else results)


def chosen_options(service: "Service", query: dict, form: dict) -> dict:
    """The recognizer's options for one request: each from its query parameter or its form
    field (the same value if both are given), else the server's default; an unknown model is
    refused here, before the upload is read into memory."""
    defaults = {
        "model": service.settings.model,
        "tta": "auto",
        "detector": DEFAULT_DETECTOR,
        "min_face_confidence": DEFAULT_MIN_CONFIDENCE,
        "whole_image": False,
    }
    options = {name: pick(name, query[name], form[name], default) for name, default in defaults.items()}
    if options["model"] not in service.models:
        raise ClientError(
            422,
            f"unknown model {options['model']!r}; served models: {', '.join(service.models)} "
            "(only shipped models, by name)",
        )
    return options


def pick(name: str, query_value, form_value, default):
    if query_value is not None and form_value is not None and query_value != form_value:
        raise ClientError(
            422,
            f"{name} given as a query parameter ({query_value!r}) and as a form field ({form_value!r}); give it once",
        )
    return next((v for v in (form_value, query_value) if v is not None), default)


def check_upload_count(request: Request, count: int, max_files: int) -> None:
    """400 when the request carries no file (saying what it sent instead), 413 over max_files."""
    if not count:
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
    if count > max_files:
        raise ClientError(413, f"{count} files; at most {max_files} per request")


def busy_answer(settings: "Settings") -> JSONResponse:
    """503 with Retry-After: a condition of the server, so the client should simply try again."""
    return JSONResponse(
        {
            "detail": f"busy: {settings.workers} inference thread(s) working and "
            f"{settings.queue} request(s) waiting; try again shortly"
        },
        503,
        headers={"Retry-After": "1"},
    )


def add_models_route(app: FastAPI, service: "Service") -> None:
    @app.get(
        "/models", response_model=ModelsOut, response_model_exclude_none=True, summary="The models a request may name"
    )
    async def list_models():
        """The shipped models (and the ensemble of them) with the test-time view their record chose
        on val and the val accuracy with it."""
        return {"default": service.settings.model, "models": [model_info(m) for m in service.models]}


def add_health_route(app: FastAPI, service: "Service") -> None:
    @app.get("/health", response_model=HealthOut, summary="Liveness and load")
    async def health():
        pool = service.pool
        return {
            "status": "ok",
            "model": service.settings.model,
            "loaded": service.recognizers.loaded(),
            "workers": pool.workers,
            "queue": pool.queue,
            "in_progress": pool.pending,
            "served": pool.done,
            "refused_busy": pool.refused,
        }
