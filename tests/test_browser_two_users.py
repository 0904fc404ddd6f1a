"""Two people on one dashboard in a real browser (two Chromium contexts, `streamlit run` on
localhost): while one has a run selected on Compare runs, the other deletes a run and starts
one from the Train page; the first keeps looking at the run they chose, and is told when
that run itself is deleted."""

from __future__ import annotations

import re
import shutil
import time

import pytest
from playwright.sync_api import expect

from fer_core.runs.runstore import RunStore
from tests.conftest import browser_page, streamlit_server, wait_idle

pytestmark = pytest.mark.slow
ROW_HEIGHT = 35  # st.dataframe's rows and header, in CSS pixels


@pytest.fixture(scope="module")
def lab(finished_runs, tmp_path_factory):
    """The dashboard on three runs: b16 and b32 (finished, trained) and "extra", newest."""
    home = tmp_path_factory.mktemp("two-users")
    shutil.copytree(finished_runs, home / "runs")
    store = RunStore(home / "runs")
    extra = store.create({"model": "stcnn", "epochs": 1}, name="extra")
    extra.update(status="finished", epochs_completed=1)
    with streamlit_server(home) as url:
        yield {"url": url, "store": store}
    from trainers.jobs import JobQueue

    queue = JobQueue(home / "jobs", store)
    for job in queue.jobs():
        if job["status"] in ("queued", "running"):
            queue.cancel(job["job_id"])


def open_runs(page, url: str) -> None:
    page.goto(url)
    page.get_by_test_id("stDataFrame").first.wait_for()
    wait_idle(page)


def click_row(page, row: int) -> None:
    """Tick a row's checkbox in the runs table (the row marker column at its left edge)."""
    box = page.get_by_test_id("stDataFrame").first.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + ROW_HEIGHT * (row + 1) + ROW_HEIGHT / 2)
    wait_idle(page)


def edited_run(page) -> str:
    """The run the Tags, notes and delete controls act on, as the page names it."""
    expander = page.get_by_test_id("stExpander").filter(has_text="Tags, notes and delete")
    confirm = expander.get_by_text(re.compile(r"^Yes, delete run \S+ and its checkpoints$"))
    if not confirm.is_visible():
        expander.locator("summary").click()
        wait_idle(page)  # a tick given while the page still reruns can be lost
    return confirm.inner_text().split()[3]


def rerun(page) -> None:
    """Any interaction reruns the page's script: the toggle over the settings table."""
    page.get_by_text("Only the settings that differ").click()
    wait_idle(page)


def delete_through_the_page(page, row: int, run_id: str) -> None:
    click_row(page, row)
    assert edited_run(page) == run_id
    label = f"Yes, delete run {run_id} and its checkpoints"
    page.get_by_text(label).click()
    expect(page.get_by_role("checkbox", name=label)).to_be_checked()
    wait_idle(page)
    page.get_by_role("button", name="Delete run").click(timeout=60_000)
    page.get_by_text(re.compile(rf"Deleted \S.*\({run_id}\)")).wait_for()


def test_a_selection_survives_another_users_delete_and_start(browser, lab):
    store = lab["store"]
    ids = {r["name"]: r["run_id"] for r in store.list_runs()}
    with browser_page(browser) as alice, browser_page(browser) as bob:
        open_runs(alice, lab["url"])
        click_row(alice, 1)  # rows, newest first: extra, b32, b16
        alice.get_by_text("showing 1: selected").wait_for()
        assert edited_run(alice) == ids["b32"]

        open_runs(bob, lab["url"])
        delete_through_the_page(bob, 0, ids["extra"])  # b32 moves up to row 0 for everyone
        rerun(alice)
        alice.get_by_text("2 runs; showing 1: selected").wait_for()
        assert edited_run(alice) == ids["b32"]

        bob.goto(f"{lab['url']}/train")  # Bob starts a training: a new run at the top of the table
        form = bob.get_by_test_id("stMain")
        form.get_by_text("Bundled sample").first.wait_for()
        for label, value in (("Epochs", 1), ("Use at most N images per split (0 = all)", 70)):
            field = form.get_by_role("spinbutton", name=label)
            field.fill(str(value))
            field.press("Tab")
        form.get_by_role("textbox", name="Run name (optional)").fill("bobs-run")
        form.get_by_role("button", name="Start training").click()
        deadline = time.time() + 240
        while time.time() < deadline and not any(r.get("name") == "bobs-run" for r in store.list_runs()):
            time.sleep(1)
        assert any(r.get("name") == "bobs-run" for r in store.list_runs())
        rerun(alice)
        alice.get_by_text("3 runs; showing 1: selected").wait_for()
        assert edited_run(alice) == ids["b32"]
        assert alice.get_by_test_id("stException").count() == 0

        open_runs(bob, lab["url"])
        delete_through_the_page(bob, 1, ids["b32"])  # now Alice's own run goes
        rerun(alice)
        notice = alice.get_by_text("dropped from your selection")
        notice.wait_for()
        assert "b32" in notice.inner_text()
        alice.get_by_text("showing 2: the newest").wait_for()
        assert alice.get_by_test_id("stException").count() == 0 and bob.get_by_test_id("stException").count() == 0
