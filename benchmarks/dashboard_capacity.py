"""How many people one dashboard serves: N browsers predicting at once, and a page load meanwhile.

    .venv/bin/python benchmarks/dashboard_capacity.py [--users 1,2,4,8] [--rounds 2] [--photo PATH]
        [--page-load-with 4] [--env FER_INFERENCE_LANES=N] [--deadline 420]

Starts the dashboard (`streamlit run dashboard/app.py`) on a free 127.0.0.1 port with the
committed runs (a copy) and drives Debian's Chromium through Playwright: per number of users N,
N fresh browser contexts open Predict, each drops the same real photo (`--photo`, default a
faces-dev group photo with three faces) at the same moment, and the time from the drop until
the page has finished drawing the answer (every face's label and chart) is recorded. Each level
runs `--rounds` times. Printed per N: answers, median and worst answer time, the worst as a
multiple of one user's median, errors (an exception, an error line, no face, or no answer
within 180 s) and the server's peak and final resident memory (psutil, sampled every 0.2 s).
Then the Compare runs page is loaded in a fresh context (until the runs table and the first
chart show), idle and while `--page-load-with` users predict. Bounded: at most 16 users per
level and `--deadline` seconds in all (levels that would start later are skipped).
The browsers run on the same cores as the server, as they did when the figures were taken.
Goals (issue 59): eight users each answered within 4x one user's time, and the page load while
others predict within 2x its idle time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from fer_core.device import cpu_description

PROJECT = Path(__file__).resolve().parents[1]
PHOTO = PROJECT.parent / "shared" / "data" / "faces-dev" / "2008_001322.jpg"
ANSWER_TIMEOUT = 180.0
IDLE = "!document.querySelector('[data-testid=\"stStatusWidget\"]') && !document.querySelector('[data-stale=\"true\"]')"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dashboard(home: Path, settings: list[str]) -> tuple[subprocess.Popen, str]:
    shutil.copytree(PROJECT / "results" / "runs", home / "runs")
    env = dict(os.environ, FER_RUNS_DIR=str(home / "runs"), FER_JOBS_DIR=str(home / "jobs"))
    env.update(setting.split("=", 1) for setting in settings)
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port)]
    with open(home / "streamlit.log", "wb") as log:
        server = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError((home / "streamlit.log").read_text()) from None
            time.sleep(0.5)


class Memory:
    """The server's resident memory, sampled in the background: the peak since the last reset."""

    def __init__(self, pid: int):
        self.process, self.peak = psutil.Process(pid), 0

    def mb(self) -> int:
        return self.process.memory_info().rss >> 20

    async def sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.mb())
            await asyncio.sleep(0.2)


def cpu_seconds(server: psutil.Process) -> tuple[float, float]:
    """CPU time so far of the server, and of the browser's processes (everything else this
    script started), in seconds."""

    def used(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.NoSuchProcess:
            return 0.0

    others = [p for p in psutil.Process().children(recursive=True) if p.pid != server.pid]
    return used(server), sum(used(p) for p in others)


async def until_idle(page, timeout: float) -> None:
    """Until Streamlit has finished its script run and redrawn everything (seen twice in a row)."""
    deadline, seen = time.perf_counter() + timeout, 0
    while seen < 2:
        if time.perf_counter() > deadline:
            raise TimeoutError("the page did not settle")
        seen = seen + 1 if await page.evaluate(IDLE) else 0
        await asyncio.sleep(0.1)


async def open_predict(browser, url: str):
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(ANSWER_TIMEOUT * 1000)
    await page.goto(f"{url}/predict")
    await page.locator("input[type=file]").wait_for(state="attached")
    await until_idle(page, ANSWER_TIMEOUT)
    return context, page


async def answer(page, photo: Path) -> tuple[float | None, str]:
    """Seconds from dropping the photo until its answer is drawn; None and why on an error."""
    start = time.perf_counter()
    await page.locator("input[type=file]").set_input_files(str(photo))
    try:
        await page.get_by_text("Face 1:").first.wait_for(timeout=ANSWER_TIMEOUT * 1000)
        await until_idle(page, ANSWER_TIMEOUT)
    except Exception as e:  # a timeout, or the browser gave up
        return None, f"no answer ({type(e).__name__})"
    seconds = time.perf_counter() - start
    for test_id in ("stException", "stAlert"):  # an exception, an error or a "no face found"
        if await page.get_by_test_id(test_id).count():
            return None, f"{test_id}: {(await page.get_by_test_id(test_id).first.inner_text())[:120]}"
    return seconds, ""


async def level(browser, url: str, users: int, photo: Path, memory: Memory) -> tuple[list[float], list[str], tuple]:
    """Answer times, errors, and the CPU seconds the server and the browsers used meanwhile."""
    opened = await asyncio.gather(*(open_predict(browser, url) for _ in range(users)))
    memory.peak = 0
    before = cpu_seconds(memory.process)
    results = await asyncio.gather(*(answer(page, photo) for _, page in opened))
    cpu = tuple(after - b for after, b in zip(cpu_seconds(memory.process), before, strict=True))
    for context, _ in opened:
        await context.close()
    return [s for s, _ in results if s is not None], [why for s, why in results if s is None], cpu


async def page_load(browser, url: str) -> float:
    """Seconds until Compare runs shows its runs table and first chart, in a fresh context."""
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    start = time.perf_counter()
    await page.goto(url)
    await page.get_by_test_id("stDataFrame").first.wait_for(timeout=ANSWER_TIMEOUT * 1000)
    await page.locator(".js-plotly-plot").first.wait_for(timeout=ANSWER_TIMEOUT * 1000)
    seconds = time.perf_counter() - start
    await context.close()
    return seconds


async def page_load_while_predicting(browser, url: str, users: int, photo: Path) -> tuple[float, list[float]]:
    opened = await asyncio.gather(*(open_predict(browser, url) for _ in range(users)))
    predictions = asyncio.gather(*(answer(page, photo) for _, page in opened))
    await asyncio.sleep(0.5)  # the uploads are in; the server is busy with them
    load = await page_load(browser, url)
    answered = [s for s, _ in await predictions]
    for context, _ in opened:
        await context.close()
    return load, [s for s in answered if s is not None]


async def run(args) -> None:
    from playwright.async_api import async_playwright

    began = time.time()
    home = Path(tempfile.mkdtemp(prefix="fer-capacity-"))
    server, url = start_dashboard(home, args.env)
    memory = Memory(server.pid)
    sampler = asyncio.create_task(memory.sample())
    print(f"CPU: {cpu_description()}; load average before {os.getloadavg()[0]:.2f}")
    settings = " ".join(args.env) or "default settings"
    print(f"dashboard {url}, {settings}, photo {args.photo.name}, {args.rounds} round(s) per level\n")
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"], headless=True
            )
            await level(browser, url, 1, args.photo, memory)  # warm-up: models loaded, pages compiled
            print(f"server after the warm-up: {memory.mb()} MB")
            print(
                "| users | answers | median s | worst s | worst / 1 user | errors | server peak MB | after MB "
                "| CPU s per answer: server / browsers |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            one = None
            for users in args.users:
                if time.time() - began > args.deadline:
                    print(f"| {users} | skipped: past the {args.deadline:.0f} s deadline |")
                    continue
                times, errors, peak, server_cpu, browser_cpu = [], [], 0, 0.0, 0.0
                for _ in range(args.rounds):
                    t, e, (on_server, in_browsers) = await level(browser, url, users, args.photo, memory)
                    times, errors, peak = times + t, errors + e, max(peak, memory.peak)
                    server_cpu, browser_cpu = server_cpu + on_server, browser_cpu + in_browsers
                nan = float("nan")
                median, worst = (statistics.median(times), max(times)) if times else (nan, nan)
                one = one or median
                print(
                    f"| {users} | {len(times)}/{users * args.rounds} | {median:.2f} | {worst:.2f} | "
                    f"{worst / one:.1f}x | {len(errors)} | {peak} | {memory.mb()} "
                    f"| {server_cpu / (users * args.rounds):.2f} / {browser_cpu / (users * args.rounds):.2f} |",
                    flush=True,
                )
                for why in sorted(set(errors)):
                    print(f"  error: {why}")
            idle = [await page_load(browser, url) for _ in range(3)]
            busy, answered = await page_load_while_predicting(browser, url, args.page_load_with, args.photo)
            print(
                f"\nCompare runs page load: idle {statistics.median(idle):.2f} s (median of 3), while "
                f"{args.page_load_with} users predict {busy:.2f} s ({busy / statistics.median(idle):.1f}x); "
                f"their answers {', '.join(f'{s:.1f}' for s in sorted(answered))} s"
            )
            await browser.close()
    finally:
        sampler.cancel()
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    print(f"load average after {os.getloadavg()[0]:.2f}; {time.time() - began:.0f} s in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="1,2,4,8", help="numbers of users, comma separated (each at most 16)")
    parser.add_argument("--rounds", type=int, default=2, help="drops per user and level")
    parser.add_argument("--photo", type=Path, default=PHOTO)
    parser.add_argument("--page-load-with", type=int, default=4, help="users predicting during the page load")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the server, e.g. FER_INFERENCE_LANES=16",
    )
    parser.add_argument("--deadline", type=float, default=420, help="seconds; later levels are skipped")
    args = parser.parse_args()
    args.users = [int(n) for n in args.users.split(",")]
    if not all(1 <= n <= 16 for n in args.users) or not 1 <= args.rounds <= 5:
        parser.error("each number of users must be 1-16, and --rounds 1-5")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
