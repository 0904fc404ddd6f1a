"""The dashboard through Streamlit's AppTest: every page renders with real runs; the train
form, the run selection, tags and deletion work. (Live needs a browser: see test_browser.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fer_core.inference.registry import model_names
from fer_core.runs.checkpoint import read_checkpoint_metadata
from fer_core.runs.runstore import RunStore
from tests.conftest import PROJECT, SAMPLE_CSV, TINY_STCNN, job_ended, run_fer_train
from trainers.jobs import JobQueue

APP = str(PROJECT / "dashboard" / "app.py")
PAGES = {
    "views/runs.py": "Compare runs",
    "views/sweeps.py": "Sweeps",
    "views/train.py": "Train",
    "views/predict.py": "Predict",
    "views/data.py": "Data",
}


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(runs_copy, page):
    at = app(page)
    assert at.title[0].value == PAGES[page]
    assert not at.error, [e.value for e in at.error]


def test_every_page_renders_with_the_shipped_runs(on_committed_runs):
    """What `make run` shows: results/runs (the session's copy, which no test may change); each
    page says what it is about."""
    runs = on_committed_runs.list_runs()
    assert runs
    for page, title in PAGES.items():
        at = app(page)
        assert at.title[0].value == title and not at.error, [e.value for e in at.error]
        check_page_on_the_shipped_runs[page](at, runs)


def runs_page(at: AppTest, runs: list[dict]) -> None:
    """Table 2 beside our patch-embedded ViTs; the conv-stem one is our best ViT."""
    [table2] = [df.value for df in at.dataframe if "kernel_init" in df.value.columns]
    assert len(table2) == 4 and table2.our_run.str.startswith("paper-table2-").all()
    [headline] = [df.value for df in at.dataframe if list(df.value.columns[:2]) == ["model", "paper_accuracy"]]
    assert headline.set_index("model").our_run["vit"] == "ref-vit-kd"
    table = at.dataframe[0].value  # the shipped vit is a warm restart of the 30-epoch conv-stem run
    assert len(table) == len(runs)
    assert table.set_index("name").started_from["ref-vit-convstem-restart"] == "ref-vit-convstem"
    assert table.set_index("name").distilled_from["ref-vit-kd"] == "ref-stcnn-long"  # its teacher, by name


def sweeps_page(at: AppTest, runs: list[dict]) -> None:
    sweeps = {r["sweep"] for r in runs if r.get("sweep")}
    options = at.selectbox(key="sweep").options
    assert len(options) == len(sweeps) and at.selectbox(key="sweep").value.startswith("paper-table1-")
    assert at.get("plotly_chart")  # the parallel coordinates of its trials


def train_page(at: AppTest, runs: list[dict]) -> None:
    assert at.radio(key="train_source").value.startswith("Bundled sample")
    assert any(b.label == "Start training" for b in at.button)
    stopped = [r for r in runs if r["status"] in ("failed", "cancelled")]  # the committed cancelled runs
    assert len(at.selectbox(key="resume_run").options) == len(stopped) > 0


def predict_page(at: AppTest, runs: list[dict]) -> None:
    from fer_core.inference.registry import default_model, model_names

    assert at.multiselect(key="predict_models").value == [f"{n} (shipped)" for n in model_names(default_model())]
    assert at.file_uploader(key="uploads")  # and the drop zone waits


def data_page(at: AppTest, runs: list[dict]) -> None:
    from fer_core.data.fer2013 import load_dataset

    sample = load_dataset(SAMPLE_CSV)
    shown = {m.label: m.value for m in at.metric}
    assert shown == {f"{name} images": f"{len(split):,}" for name, split in sample.splits.items()}


check_page_on_the_shipped_runs = {
    "views/runs.py": runs_page,
    "views/sweeps.py": sweeps_page,
    "views/train.py": train_page,
    "views/predict.py": predict_page,
    "views/data.py": data_page,
}


def test_runs_page_shows_runs_curves_and_tables(runs_copy):
    moved = RunStore(runs_copy).list_runs()[0]["run_id"]  # as `fer-train --resume RUN --epochs 2` records it
    RunStore(runs_copy).update(moved, epochs_changed=[{"after_epoch": 1, "from": 4, "to": 2}])
    at = app()
    assert "2 runs; showing 2" in at.caption[0].value
    frames = {len(df.value) for df in at.dataframe}
    assert 2 in frames  # the runs table
    progress = at.dataframe[0].value.set_index("run_id").progress
    assert progress[moved] == "2/2 (was 4 until 1)" and sorted(progress) == ["2/2", "2/2 (was 4 until 1)"]
    assert 4 in frames  # the paper's Table 1 (four batch sizes)
    table1s = [df.value for df in at.dataframe if {"batch_size", "our_run"} <= set(df.value.columns)]
    [table1] = [t for t in table1s if "budget" not in t.columns]  # not the per-trial budget view
    assert table1.batch_size.tolist() == [16, 32, 64, 128] and table1.our_run.isna().all()  # 2-epoch sample runs
    at.selectbox(key="metric").set_value("loss").run()
    at.radio(key="confusion_mode").set_value("counts").run()
    assert not at.exception


def test_runs_page_beside_a_run_still_in_its_first_epoch(runs_copy):
    """A run that has started but finished no epoch yet is the newest, so it is selected
    next to runs that have curves and confusion matrices."""
    first = RunStore(runs_copy).list_runs()[0]
    RunStore(runs_copy).create(first["config"], name="just-started")
    at = app()
    assert "3 runs; showing 3" in at.caption[0].value
    assert at.get("plotly_chart")  # the other runs' curves and matrices


def test_sweeps_page_groups_trials_and_plots_parallel_coordinates(runs_copy):
    store = RunStore(runs_copy)
    for run in store.list_runs():  # the two batch-size runs as the trials of one sweep
        store.update(run["run_id"], sweep="batch-sweep-1")
    at = app("views/sweeps.py")
    assert at.selectbox(key="sweep").options == ["batch-sweep-1 (2 trials)"]
    [trials] = [df.value for df in at.dataframe]
    assert len(trials) == 2 and sorted(trials["batch size"]) == [16, 32]  # varied settings under readable names
    assert "varied: preset, batch size." in at.caption[0].value  # categorical and numeric axes
    assert at.get("plotly_chart")  # the parallel-coordinates view
    at.selectbox(key="sweep_metric").set_value("val_macro_f1").run()
    assert not at.exception

    at = app()
    at.multiselect(key="filter_sweep").set_value(["batch-sweep-1"]).run()
    assert "2 runs; showing 2" in at.caption[0].value


def test_select_tag_and_delete_a_run(runs_copy):
    store = RunStore(runs_copy)
    at = app()
    table = at.dataframe[0].value
    at.session_state["runs_table"] = {"selection": {"rows": [1], "columns": []}}
    at.run()
    chosen = table.run_id[1]
    assert "showing 1: selected" in at.caption[0].value
    assert at.selectbox(key="edit_run").options == [chosen]

    at.text_input(key=f"tags_{chosen}").set_value("baseline, b16")
    at.text_area(key=f"notes_{chosen}").set_value("first try")
    next(b for b in at.button if b.label == "Save tags and notes").click().run()
    assert store.read_run(chosen)["tags"] == ["baseline", "b16"] and store.read_run(chosen)["notes"] == "first try"

    delete = next(b for b in at.button if b.label == "Delete run")
    assert delete.disabled  # not before the confirmation
    at.checkbox(key=f"confirm_{chosen}").check().run()
    next(b for b in at.button if b.label == "Delete run").click().run()
    assert not at.exception
    assert [r["run_id"] for r in store.list_runs()] == [table.run_id[0]]
    assert (runs_copy / table.run_id[0] / "run.json").exists()


def test_train_form_refuses_bad_input_then_queues_one_job(runs_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_DATA_ROOTS", str(tmp_path))  # the dashboard reads datasets only under its data roots
    at = app("views/train.py")
    at.radio(key="train_source").set_value("A path on this machine").run()  # the path is greyed out till then
    at.text_input(key="train_path").set_value(str(tmp_path / "nowhere.csv"))
    at.button[0].click().run()
    assert any("no such file or folder" in e.value for e in at.error)

    (tmp_path / "not-data.csv").write_text("a,b\n1,2\n")
    at.text_input(key="train_path").set_value(str(tmp_path / "not-data.csv"))
    at.button[0].click().run()
    assert any("Not a usable FER2013 dataset" in e.value for e in at.error)
    assert JobQueue().jobs() == []

    at.selectbox(key="train_model").set_value("cnn").run()
    at.radio(key="train_source").set_value(at.radio(key="train_source").options[0])  # the bundled sample
    at.number_input(key="ep_cnn").set_value(1)
    at.number_input(key="train_limit").set_value(70)
    at.text_input(key="train_name").set_value("from-the-form")
    at.button[0].click().run()
    assert any("Queued" in s.value for s in at.success), [e.value for e in [*at.error, *at.warning, *at.exception]]
    at.button[0].click().run()  # a double click: the same job, not a second one
    assert any("already" in w.value for w in at.warning)

    jobs = JobQueue().jobs()
    assert len(jobs) == 1 and jobs[0]["name"] == "from-the-form"
    assert jobs[0]["args"][:2] == ["--preset", "cnn"] and "--limit" in jobs[0]["args"]
    assert job_ended(JobQueue(), jobs[0]["job_id"])["status"] == "finished"
    run = RunStore(runs_copy).read_run(jobs[0]["run_id"])
    assert run["status"] == "finished" and run["name"] == "from-the-form" and run["epochs_completed"] == 1
    at.run()
    assert "from-the-form" in at.markdown[0].value or any("from-the-form" in m.value for m in at.markdown)


def test_train_form_starts_from_a_trained_model(runs_copy):
    at = app("views/train.py")
    at.radio(key="train_source").set_value(at.radio(key="train_source").options[0])  # the bundled sample
    at.selectbox(key="train_model").set_value("vit").run()
    at.selectbox(key="train_preset").set_value("paper-vit-1").run()
    assert at.selectbox(key="init_paper-vit-1").options == ["scratch (random weights)", "vit (shipped)"]
    at.selectbox(key="init_paper-vit-1").set_value("vit (shipped)")
    at.button[0].click().run()  # the paper's 16x16-patch ViT has other layers than ours
    assert any("Cannot start paper-vit-1 from vit (shipped): its layers do not fit" in e.value for e in at.error), [
        e.value for e in at.error
    ]
    assert JobQueue().jobs() == []

    at.selectbox(key="train_model").set_value("stcnn").run()
    starts = at.selectbox(key="init_stcnn").options
    assert starts[:2] == ["scratch (random weights)", "stcnn (shipped)"] and len(starts) == 4  # + 2 stcnn runs
    at.selectbox(key="init_stcnn").set_value("stcnn (shipped)")
    at.number_input(key="ep_stcnn").set_value(1)
    at.number_input(key="train_limit").set_value(70)
    at.number_input(key="ema_stcnn").set_value(0.99)
    at.number_input(key="cutmix_stcnn").set_value(1.0)
    assert at.selectbox(key="teacher_stcnn").options[:3] == ["none", "resnet50 (shipped)", "stcnn (shipped)"]
    assert at.selectbox(key="teacher_stcnn").options[-1] == "ensemble (shipped)"
    at.selectbox(key="teacher_stcnn").set_value("ensemble (shipped)")
    at.text_input(key="train_name").set_value("warm-restart")
    at.button[0].click().run()
    assert any("Queued" in s.value for s in at.success), [e.value for e in at.error]
    [job] = JobQueue().jobs()
    assert job["args"][job["args"].index("--init-from") + 1] == "stcnn"
    job_ended(JobQueue(), job["job_id"])
    run = RunStore(runs_copy).read_run(job["run_id"])
    assert run["status"] == "finished", JobQueue().log_tail(job["job_id"], 20)
    assert run["config"]["ema_decay"] == 0.99
    assert run["config"]["cutmix_alpha"] == 1.0 and run["config"]["mixup_alpha"] == 0.0
    assert run["init_from"]["checkpoint"].endswith("results/models/stcnn.safetensors")
    shipped_from = read_checkpoint_metadata(PROJECT / "results" / "models" / "stcnn.safetensors")["info"]["run_id"]
    assert run["init_from"]["run_id"] == shipped_from
    assert [Path(t["checkpoint"]).stem for t in run["distill_from"]] == model_names("ensemble")  # those it runs
    table = app().dataframe[0].value  # Compare runs says where it started: the shipped model's run
    assert table[table.name == "warm-restart"].started_from.iloc[0] == shipped_from  # (not in this store)
    assert table[table.name == "warm-restart"].ema_decay.iloc[0] == 0.99
    teacher_runs = [
        read_checkpoint_metadata(PROJECT / "results" / "models" / f"{n}.safetensors")["info"]["run_id"]
        for n in model_names("ensemble")
    ]
    assert table[table.name == "warm-restart"].distilled_from.iloc[0] == ", ".join(teacher_runs)
    assert table[table.name == "warm-restart"].cutmix_alpha.iloc[0] == 1.0


def test_a_failed_run_shows_its_reason_and_resumes_from_the_train_page(runs_copy):
    args = ["--model", "stcnn", *TINY_STCNN, "--epochs", 2, "--limit", 140, "--name", "oom-run"]
    failed = run_fer_train(*args, runs_dir=runs_copy, env={"FER_INJECT_FAULT": "oom@2"})
    assert failed.returncode == 1
    [run] = [r for r in RunStore(runs_copy).list_runs() if r.get("name") == "oom-run"]

    at = app()
    assert any("oom-run" in e.value and "out of memory" in e.value for e in at.error), [e.value for e in at.error]

    at = app("views/train.py")
    assert at.selectbox(key="resume_run").options[0].startswith("oom-run (failed, 1/2 epochs)")
    end = at.number_input(key=f"resume_epochs_{run['run_id']}")
    assert end.value == 2 and end.min == 2
    end.set_value(3)  # and one epoch longer than it was meant to be
    next(b for b in at.button if b.label == "Resume from its last finished epoch").click().run()
    assert any("Queued" in s.value for s in at.success)
    [job] = JobQueue().jobs()
    assert job["args"] == ["--resume", run["run_id"], "--epochs", "3"] and job["run_id"] == run["run_id"]
    job_ended(JobQueue(), job["job_id"])
    run = RunStore(runs_copy).read_run(run["run_id"])
    assert run["status"] == "finished" and run["epochs_completed"] == 3 and run["config"]["epochs"] == 3
