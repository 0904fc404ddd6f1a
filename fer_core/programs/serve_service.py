"""What fer-serve's routes share: its Settings and the Service (the served models, the loaded
recognizers and the inference pool, which lives as long as the app runs). Apart from
create_app (serve_app.py) so that the routes can name it without importing the app."""

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from ..faces.detection import DEFAULT_DETECTOR, DEFAULT_MIN_CONFIDENCE, MAX_PIXELS
from ..inference.registry import default_model
from .serve_pool import Pool, Recognizers

log = logging.getLogger("fer_core.programs.serve")  # one logger for all of fer-serve


@dataclass(frozen=True)
class Settings:
    model: str = default_model()  # Recognizer's default: the best on val
    workers: int = 2  # inference threads
    queue: int = 16  # requests that may wait for a thread beyond those running
    max_upload_bytes: int = 25 * 1024 * 1024  # per request, like the dashboard's maxUploadSize
    max_pixels: int = MAX_PIXELS
    max_files: int = 16
    body_timeout: float = 30.0  # seconds a client may pause while sending its body
    preload: tuple[str, ...] | None = None  # models loaded (and run once) before accepting connections;
    # None: the default model


@dataclass
class Service:
    """What one app's routes share. The pool exists only while the app runs (its lifespan), so
    that the threads belong to the server's event loop and stop with it."""

    settings: Settings
    models: list[str]  # the names a request may ask for
    preload: tuple[str, ...]
    recognizers: Recognizers = field(default_factory=Recognizers)
    pool: Pool | None = None

    @asynccontextmanager
    async def lifespan(self, app):
        import numpy as np

        settings = self.settings
        self.pool = Pool(settings.workers, settings.queue)
        for name in self.preload:  # load and run once, so that the first request does not wait for it
            await asyncio.get_running_loop().run_in_executor(
                self.pool.executor,
                lambda name=name: self.recognizers.get(name, "auto", DEFAULT_DETECTOR, DEFAULT_MIN_CONFIDENCE, False)(
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
            self.pool.shutdown()
