"""What the newcomer's walk at 1400x900 found unclear, through Streamlit's AppTest on a copy of the
committed runs: two runs of one name told apart, the shipped run's status explained, the Sweeps
caption in words, a job whose run was deleted gone from Train, the temperature choice on Faces &
errors, whole numbers in the report's HTML. (That everything fits: test_browser_layout.py.)"""

from __future__ import annotations

import re
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.paper_tables import SHIPPED_COLUMN
from dashboard.report_html import paper_report, report_html
from fer_core.inference.registry import model_record
from fer_core.runs.predictions import shipped_predictions
from fer_core.runs.runstore import RunStore, write_json_atomic
from fer_core.runs.status import now_iso
from tests.conftest import PROJECT

APP = str(PROJECT / "dashboard" / "app.py")


@pytest.fixture
def runs(tmp_path, monkeypatch) -> RunStore:
    shutil.copytree(PROJECT / "results" / "runs", tmp_path / "runs")
    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FER_JOBS_DIR", str(tmp_path / "jobs"))
    return RunStore(tmp_path / "runs")


def app(page: str = "") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_runs_of_one_name_are_told_apart_and_the_shipped_run_explained(runs):
    at = app()
    table = at.dataframe[0].value
    twins = table[table.name == "ref-stcnn-long"]
    assert (
        len(twins) == 2
        and twins.label.nunique() == 2
        and all(twins.run_id.str[:15].isin([label.split("(")[1].rstrip(")") for label in twins.label]))
    )
    source = model_record("stcnn")["source"]
    row = table.set_index("run_id").loc[source["run_id"]]
    assert row.shipped_as == f"stcnn (epoch {source['epoch']})" and row.status == source["status"] == "cancelled"
    [why] = [c.value for c in at.caption if "shipped `stcnn`" in c.value]
    assert f"stopped after {source['epochs_completed']} of {source['epochs']} epochs" in why
    assert f"epoch {source['epoch']} is the shipped" in why


def test_the_sweeps_caption_counts_statuses_in_words(runs):
    at = app("sweeps")
    caption = at.caption[0].value
    assert "{" not in caption and re.search(r"\d+ finished", caption), caption


def test_a_job_whose_run_was_deleted_leaves_the_train_page(runs, tmp_path):
    jobs = tmp_path / "jobs"
    job = {
        "job_id": "20261205-000000-gone-0000",
        "run_id": "20261205-000000-gone-0000",
        "name": "gone",
        "model": "stcnn",
        "args": ["--preset", "stcnn", "--epochs", "1"],
        "key": "0" * 16,
        "status": "finished",
        "created": now_iso(),
        "started": now_iso(),
        "ended": now_iso(),
        "pid": None,
    }
    write_json_atomic(jobs / f"{job['job_id']}.json", job)  # a finished job; its run is not in the store
    at = app("train")
    assert not [m for m in at.markdown if "gone" in m.value]
    assert any("their runs were deleted" in c.value for c in at.caption)
    assert not (jobs / f"{job['job_id']}.json").exists()


def test_faces_and_errors_says_where_a_temperature_is_not_applied(runs, fer2013):
    record = model_record("resnet50")["calibration"]["views"]
    view = next(v for v, c in record.items() if not c["applied"])
    at = app("faces")
    at.selectbox(key="faces_model").set_value("resnet50 (shipped)").run()
    at.selectbox(key="faces_view_resnet50_val").set_value(view).run()
    [said] = [m.value for m in at.tabs[3].markdown if m.value.startswith("**resnet50")]
    assert "**not applied**" in said and f"T = {record[view]['temperature']:.3f}" in said


def test_the_report_file_prints_whole_numbers_and_no_none():
    sections = paper_report(RunStore(PROJECT / "results" / "runs"), shipped_predictions())
    html = report_html(sections)
    tables = "".join(re.findall(r"<table.*?</table>", html, re.S))
    assert "<td>28709</td>" in tables and not re.search(r"\d\.?\d*e[+-]\d", tables)
    assert ">None<" not in tables and ">nan<" not in tables
    headline = sections[0].items[0].set_index("model")
    assert headline.loc["ensemble", SHIPPED_COLUMN] > 0  # the ensemble row: its own figure, the rest blank
