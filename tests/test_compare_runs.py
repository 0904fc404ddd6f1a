"""The Compare runs page's controls, through Streamlit's AppTest on the session's copy of the
committed results/runs: the x axis of the learning curves, grouping with a band, the settings diff, the
CSV downloads (checked against what is drawn), the paper's rows beside ours, the runs table."""

from __future__ import annotations

import base64
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from dashboard import compare
from fer_core.evaluation.paper import TABLE1_STCNN_BATCH, TABLE2_VIT
from fer_core.evaluation.paper_compare import TABLE2_KEYS, table1_rows
from fer_core.runs.runstore import RunStore
from tests.conftest import PROJECT

APP = str(PROJECT / "dashboard" / "app.py")


@pytest.fixture
def shipped(on_committed_runs) -> RunStore:
    """The session's copy of results/runs, which the dashboard reads (and no test may change)."""
    return on_committed_runs


@pytest.fixture
def downloads(monkeypatch) -> dict[str, str]:
    """File name -> the CSV text each download button of the last run offers."""
    offered: dict[str, str] = {}
    add = MediaFileManager.add

    def spy(self, data, mimetype, coordinates, file_name=None, **kwargs):
        if file_name:
            offered[file_name] = data.decode() if isinstance(data, bytes) else data
        return add(self, data, mimetype, coordinates, file_name=file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add", spy)
    return offered


def page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def select(at: AppTest, names: list[str]) -> None:
    runs = at.dataframe[0].value
    rows = [int(i) for i in np.flatnonzero(runs.name.isin(names))]
    assert len(rows) >= len(names)  # names can repeat
    at.session_state["runs_table"] = {"selection": {"rows": rows, "columns": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def figures(at: AppTest) -> list[dict]:
    """The plotly figures on the page, in order (learning curves, confusion, recall)."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def values(array) -> np.ndarray:
    """A trace's x or y as numbers (plotly sends numeric arrays base64-encoded)."""
    if isinstance(array, dict):
        shape = [int(n) for n in str(array.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).reshape(shape)
    return np.asarray(array)


def frame(at: AppTest, first_columns: list[str]) -> pd.DataFrame:
    [found] = [df.value for df in at.dataframe if list(df.value.columns[: len(first_columns)]) == first_columns]
    return found


def metric_rows(store: RunStore, name: str) -> pd.DataFrame:
    """A run's per-epoch rows, read with plain pandas (not the page's code)."""
    [run] = [r for r in store.list_runs() if r["name"] == name]
    files = sorted((store.run_dir(run["run_id"]) / "metrics").glob("epoch_*.parquet"))
    return pd.concat(map(pd.read_parquet, files)).sort_values(["epoch", "split"])


def test_the_x_axis_choices_give_epochs_hours_and_images_seen(shipped):
    at = page()
    select(at, ["ref-stcnn-kd2"])
    rows = metric_rows(shipped, "ref-stcnn-kd2")
    train, val = rows[rows.split == "train"], rows[rows.split == "val"]
    expected = {
        "epoch": val.epoch.to_numpy(),
        "wall-clock hours": rows.groupby("epoch").epoch_seconds.sum().cumsum().to_numpy() / 3600,
        "images seen": train.n.cumsum().to_numpy(),  # 28,709 training faces per epoch
    }
    assert expected["images seen"].tolist() == [28709, 57418, 86127]
    for choice, x in expected.items():
        at.selectbox(key="x_axis").set_value(choice).run()
        [curves, *_] = figures(at)
        [val_line] = [t for t in curves["data"] if t["name"] == "ref-stcnn-kd2 val"]
        np.testing.assert_allclose(values(val_line["x"]), x)
        np.testing.assert_allclose(values(val_line["y"]), val.accuracy)
        assert curves["layout"]["xaxis"]["title"]["text"] == choice


def test_a_seed_set_is_drawn_as_its_mean_with_a_one_std_band(shipped, downloads):
    at = page()
    seeds = ["ref-resnet50-ema2", "ref-resnet50-ema3"]  # the same configuration, seeds 2 and 3
    select(at, seeds)
    at.selectbox(key="group_by").set_value("seed set").run()
    [curves, *_] = figures(at)
    [band] = [t for t in curves["data"] if t.get("fill") == "toself" and t["name"].endswith("val +-1 std")]
    [mean] = [t for t in curves["data"] if t["name"] == "seeds of ref-resnet50-ema2 (2) val"]

    val = pd.concat([metric_rows(shipped, n) for n in seeds]).query("split == 'val'")
    by_epoch = val.groupby("epoch").accuracy
    np.testing.assert_allclose(values(mean["y"]), by_epoch.mean())
    lower_upper = values(band["y"])  # the band's outline: upper edge forward, lower edge back
    np.testing.assert_allclose(lower_upper[:12], by_epoch.mean() + by_epoch.std())
    np.testing.assert_allclose(lower_upper[12:][::-1], by_epoch.mean() - by_epoch.std())
    assert by_epoch.std().max() > 0.001  # a band with a width

    plotted = pd.read_csv(io.StringIO(downloads["learning_curves.csv"]))
    assert set(plotted.columns) >= {"group", "split", "epoch", "mean", "std", "lower", "upper", "runs"}
    np.testing.assert_allclose(plotted.query("split == 'val'")["mean"], values(mean["y"]))
    assert set(plotted.runs) == {2}

    at.selectbox(key="group_by").set_value("none").run()  # back to one line per run, no band
    assert not [t for t in figures(at)[0]["data"] if t.get("fill")]


def test_grouping_by_sweep_and_tag(shipped):
    at = page()
    trials = [f"paper-table2-20261124-172907-1b2a-t0{i}" for i in range(1, 5)]
    select(at, trials)
    for by, group in (("sweep", "sweep paper-table2-20261124-172907-1b2a"), ("tag", "tag paper-table2")):
        at.selectbox(key="group_by").set_value(by).run()
        names = [t["name"] for t in figures(at)[0]["data"]]
        assert names.count(f"{group} val") == 1 and f"{group} val +-1 std" in names
        assert not any(t in name for t in trials for name in names)  # no single-run lines left


def test_runs_that_share_a_name_keep_their_own_lines(shipped):
    at = page()
    select(at, ["ref-stcnn-long"])  # two runs of that name: a cancelled 100-epoch one and its 50-epoch redo
    names = sorted(t["name"] for t in figures(at)[0]["data"])
    starts = ("20261126-124939", "20261127-211508")
    assert names == [f"ref-stcnn-long ({start}) {split}" for start in starts for split in ("train", "val")]


def test_the_diff_switch_hides_the_settings_all_selected_runs_share(shipped):
    at = page()
    select(at, ["ref-resnet50-ema2", "ref-resnet50-ema3"])
    settings = frame(at, ["setting"]).set_index("setting")  # a row per setting, a column per run
    assert list(settings.index) == ["seed"] and settings.loc["seed"].tolist() == ["3", "2"]
    at.toggle(key="settings_diff").set_value(False).run()
    settings = frame(at, ["setting"]).set_index("setting")
    assert {"seed", "lr", "batch_size", "model_config.stem", "augment.flip"} <= set(settings.index)
    assert settings.loc["lr"].nunique() == 1


def test_every_chart_and_table_offers_the_data_it_shows_as_csv(shipped, downloads):
    at = page()
    select(at, ["ref-stcnn-long100", "ref-vit-kd"])
    at.radio(key="confusion_mode").set_value("counts").run()
    assert {
        "learning_curves.csv",
        "confusion_matrices.csv",
        "per_class_recall.csv",
        "paper_table1.csv",
        "paper_table2.csv",
        "paper_headline.csv",
    } <= set(downloads)
    curves, confusion, recall = figures(at)
    csv = {name: pd.read_csv(io.StringIO(text)) for name, text in downloads.items() if name.endswith(".csv")}

    lines = csv["learning_curves.csv"]
    for trace in curves["data"]:
        run, split = trace["name"].rsplit(" ", 1)
        rows = lines[(lines.run == run) & (lines.split == split)]
        np.testing.assert_allclose(rows.epoch, values(trace["x"]))
        np.testing.assert_allclose(rows.accuracy, values(trace["y"]))
    assert len(lines) == sum(len(values(t["x"])) for t in curves["data"])

    cells = csv["confusion_matrices.csv"]
    for heatmap, title in zip(confusion["data"], confusion["layout"]["annotations"], strict=True):
        counts = cells[cells.run == title["text"]].pivot(index="true", columns="pred", values="count")
        counts = counts.loc[list(heatmap["y"]), list(heatmap["x"])]
        np.testing.assert_allclose(counts.to_numpy(), values(heatmap["z"]))
    assert cells.groupby("run")["count"].sum().tolist() == [3589, 3589]  # every PublicTest face once

    bars = csv["per_class_recall.csv"]
    for bar in recall["data"]:
        np.testing.assert_allclose(bars[bars.run == bar["name"]].recall, values(bar["y"]))

    table1 = csv["paper_table1.csv"]
    assert table1.batch_size.tolist() == [16, 32, 64, 128]
    np.testing.assert_allclose(table1.our_accuracy, frame(at, ["batch_size"]).our_accuracy)


def test_the_paper_rows_line_up_with_ours(shipped):
    at = page()
    runs = {r["name"]: r for r in shipped.list_runs()}
    table1 = frame(at, ["batch_size"])
    assert list(table1.columns[:4]) == ["batch_size", "paper_accuracy", "our_accuracy", "accuracy_gap"]
    assert table1.batch_size.tolist() == [row["batch_size"] for row in TABLE1_STCNN_BATCH]
    assert table1.paper_accuracy.tolist() == [row["accuracy"] for row in TABLE1_STCNN_BATCH]
    for row in table1.itertuples():  # our best run of the paper's recipe at that batch size (quick or full data)
        ours = runs[row.our_run]
        assert ours["config"]["batch_size"] == row.batch_size and ours["preset"] == f"paper-stcnn-b{row.batch_size}"
        assert row.our_accuracy == ours["best_val"]["accuracy"] and row.our_epochs == ours["epochs_completed"]

    table2 = frame(at, TABLE2_KEYS)
    assert list(table2.columns[6:9]) == ["paper_accuracy", "our_accuracy", "accuracy_gap"]
    assert table2[TABLE2_KEYS].to_dict("records") == [{k: row[k] for k in TABLE2_KEYS} for row in TABLE2_VIT]
    for row in table2.to_dict("records"):
        model_config = runs[row["our_run"]]["config"]["model_config"]
        assert {k: model_config[k] for k in TABLE2_KEYS} == {k: row[k] for k in TABLE2_KEYS}

    headline = frame(at, ["model"])
    assert headline.set_index("model").our_run.to_dict() == {
        "stcnn": "ref-stcnn-long100",
        "resnet50": "ref-resnet50-kd",
        "vit": "ref-vit-kd",
    }


def test_toy_failed_and_sample_runs_never_stand_for_ours(shipped):
    real = next(r for r in shipped.list_runs() if r.get("preset") == "paper-stcnn-b64")

    def better(**changes) -> dict:
        return {**real, "run_id": f"x{len(changes)}", "best_val": {**real["best_val"], "accuracy": 0.99}, **changes}

    fakes = [
        better(status="failed"),
        better(epochs_completed=2),
        better(config={**real["config"], "data": "data/fer2013_sample.csv.gz"}),
        better(dataset={"sizes": {"train": 140, "val": 140}}),
        better(config={**real["config"], "lr": 1e-3}),  # not the paper's recipe
    ]
    [row] = table1_rows([real, *fakes]).query("batch_size == 64").to_dict("records")
    assert row["our_run_id"] == real["run_id"]
    [row] = table1_rows([real, better(status="cancelled")]).query("batch_size == 64").to_dict("records")
    assert row["our_accuracy"] == 0.99  # a cancelled run keeps its best epoch
    assert table1_rows([]).our_run.isna().all()


def test_the_runs_table_hides_test_accuracy_until_a_run_has_one(committed_runs, tmp_path, monkeypatch):
    shutil.copytree(committed_runs, tmp_path / "runs")  # this test changes a run: its own copy
    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FER_JOBS_DIR", str(tmp_path / "jobs"))
    shipped = RunStore(tmp_path / "runs")
    at = page()
    table = at.dataframe[0]
    assert "test_accuracy" not in table.proto.column_order  # no committed run has a test split
    assert table.proto.HasField("placeholder") and table.proto.placeholder == ""  # blank, not "None"
    widths = {k: v.get("width") for k, v in json.loads(table.proto.columns).items()}
    assert widths["progress"] >= 7 * len("9/9 (was 15 until 4)")  # "epochs" in full
    assert widths["started_from"] >= 7 * len("ref-vit-convstem-restart2")

    run = next(r for r in shipped.list_runs() if r["name"] == "ref-stcnn-long100")
    shipped.update(run["run_id"], final={**run["final"], "test_accuracy": 0.7012})
    at = page()
    table = at.dataframe[0]
    assert "test_accuracy" in table.proto.column_order
    shown = table.value.set_index("name").test_accuracy
    assert shown["ref-stcnn-long100"] == 0.7012 and shown.drop("ref-stcnn-long100").isna().all()


def test_fit_width_covers_the_longest_value():
    assert compare.fit_width(pd.Series(["3/3", None]), "epochs") == 73  # the label decides
    assert compare.fit_width(pd.Series(["x" * 30]), "epochs") == 253
    assert compare.fit_width(pd.Series(["x" * 300]), "epochs") == 420
