"""fer-serve's answers as the OpenAPI schema shows them (at /docs and /openapi.json): what a
route returns and what each error status means. The routes build plain dicts; these only
describe (and for /models and /health, filter) them."""

from pydantic import BaseModel


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


ERROR_RESPONSES = {
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
