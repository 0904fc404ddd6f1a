"""fer-serve's app: create_app, which puts the parts together: the shared Service
(serve_service.py), the offline API docs, the body limits (serve_limits.py), JSON for every
error, and the routes (serve_routes.py)."""

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from .serve_catalog import served_models
from .serve_limits import BodyLimit
from .serve_routes import add_health_route, add_models_route, add_predict_route
from .serve_service import Service, Settings, log
from .serve_work import ClientError


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for these settings; ValueError when the default or a preloaded model is not served."""
    settings = settings or Settings()
    models = served_models()
    preload = (settings.model,) if settings.preload is None else settings.preload
    for name in (settings.model, *preload):
        if name not in models:
            raise ValueError(f"unknown model {name!r}; served: {', '.join(models) or 'none shipped yet'}")
    service = Service(settings, models, preload)
    app = FastAPI(
        title="fer-serve",
        version="0.1.0",
        lifespan=service.lifespan,
        description="Facial-expression recognition over HTTP: the faces in a photo and their emotions "
        '(FER2013 classes), from the lab\'s shipped models. Errors are JSON `{"detail": "..."}`.',
        docs_url=None,  # served by add_docs_page from the swagger-ui-bundle package: FastAPI's would use a CDN
        redoc_url=None,
    )
    add_docs_page(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes, idle_timeout=settings.body_timeout)
    add_error_handlers(app)
    add_predict_route(app, service)
    add_models_route(app, service)
    add_health_route(app, service)
    return app


def add_docs_page(app: FastAPI) -> None:
    """The Swagger UI at /docs with its files from this machine, so that the docs work offline."""
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


def add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON `{"detail": "..."}`: the framework's own, a bad parameter named by
    where it was given, a ClientError as it says, and anything else a logged 500."""

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
