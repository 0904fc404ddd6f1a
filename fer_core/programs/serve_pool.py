"""fer-serve's inference pool: the recognizers shared by all requests (one per model and
options, loaded once) and the bounded thread pool that runs them, refusing work beyond it."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

VARIANTS_CACHED = 64  # (model, options) recognizers kept; they share their model's weights


class Recognizers:
    """One Recognizer per (model, options), made on first use and shared by all requests.

    The weights are loaded once per model name; the variants for other options are shallow
    copies that share them (a Recognizer only reads its models)."""

    def __init__(self):
        self._base: dict[str, object] = {}
        self._variants: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}

    def loaded(self) -> list[str]:
        return sorted(self._base)

    def base(self, model: str):
        with self._lock:
            if model in self._base:
                return self._base[model]
            load_lock = self._load_locks.setdefault(model, threading.Lock())
        with load_lock:  # one thread loads a model; others asking for it wait for that one
            if model not in self._base:
                from ..faces.recognizer import Recognizer

                recognizer = Recognizer(model)
                with self._lock:
                    self._base[model] = recognizer
            return self._base[model]

    def get(self, model: str, tta: str, detector: str, min_face_confidence: float, whole_image: bool):
        key = (model, tta, detector, float(min_face_confidence), bool(whole_image))
        with self._lock:
            if key in self._variants:
                self._variants.move_to_end(key)
                return self._variants[key]
        variant = self.base(model).with_options(
            tta=tta, detector=detector, min_face_confidence=min_face_confidence, whole_image=whole_image
        )
        with self._lock:
            variant = self._variants.setdefault(key, variant)
            self._variants.move_to_end(key)
            while len(self._variants) > VARIANTS_CACHED:
                self._variants.popitem(last=False)
        return variant


class Busy(Exception):
    pass


class Pool:
    """`workers` threads and at most `queue` jobs waiting for one; more is refused (Busy).

    The count is kept on the event loop and released when the thread finishes the job (not when
    the request goes away), so a client that disconnects cannot make room for more work than
    the threads can do."""

    def __init__(self, workers: int, queue: int):
        self.workers, self.queue = workers, queue
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="fer-serve")
        self.pending = 0
        self.done = 0
        self.refused = 0

    @property
    def capacity(self) -> int:
        return self.workers + self.queue

    async def run(self, fn, *args):
        if self.pending >= self.capacity:
            self.refused += 1
            raise Busy
        loop = asyncio.get_running_loop()
        self.pending += 1

        def release(_):
            loop.call_soon_threadsafe(self._release)

        future = self.executor.submit(fn, *args)
        future.add_done_callback(release)
        return await asyncio.wrap_future(future)

    def _release(self):
        self.pending -= 1
        self.done += 1

    def shutdown(self):
        self.executor.shutdown(wait=True, cancel_futures=True)
