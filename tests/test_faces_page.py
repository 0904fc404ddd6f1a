"""The Faces & errors page through Streamlit's AppTest on the committed results: the shipped
models' per-face rows (results/models/predictions/), the real FER2013 faces, and runs. Every
number the page shows is computed again here from the Parquet files."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from fer_core.classes import CLASSES
from fer_core.inference import calibration
from fer_core.inference.registry import ENSEMBLE, model_record
from fer_core.runs.predictions import SHIPPED_PREDICTIONS_DIR, probabilities
from tests.conftest import PROJECT, app_page

APP = str(PROJECT / "dashboard" / "app.py")


def rows(model: str, view: str | None = None) -> pd.DataFrame:
    """A shipped model's val rows straight from its file (in its card's view by default)."""
    view = view or model_record(model)["val"]["tta"]
    return pd.read_parquet(SHIPPED_PREDICTIONS_DIR / f"{model}-val-{view}.parquet").sort_values("index")


@pytest.fixture
def committed_runs(on_committed_runs):
    """The session's copy of results/runs (the page only reads it; the copy is checked for changes)."""
    return on_committed_runs


def faces_page(fer2013) -> AppTest:
    return app_page("faces")


def shown(at: AppTest, tab: int) -> list[int]:
    """The face numbers of the gallery in one tab, sorted (each caption starts "#<index> ")."""
    return sorted(int(c.value[1:].split()[0]) for c in at.tabs[tab].caption if c.value.startswith("#"))


def heatmap_counts(at: AppTest, key: str) -> np.ndarray:
    [chart] = [c for c in at.get("plotly_chart") if c.proto.id.endswith(key) or key in c.proto.id]
    text = json.loads(chart.proto.spec)["data"][0]["text"]
    if isinstance(text, dict):  # plotly 6 sends numeric arrays as base64 typed arrays
        return np.frombuffer(base64.b64decode(text["bdata"]), text["dtype"]).reshape(eval(f"({text['shape']})"))
    return np.array(text)


def test_a_confusion_cell_shows_exactly_its_faces(committed_runs, fer2013):
    at = faces_page(fer2013)
    assert at.selectbox(key="faces_model").value == "stcnn (shipped)"
    stcnn = rows("stcnn")
    truth = pd.crosstab(stcnn.label, stcnn.pred).reindex(index=range(7), columns=range(7), fill_value=0)
    np.testing.assert_array_equal(heatmap_counts(at, "confusion_stcnn"), truth.values)
    for t, p in [("fear", "sad"), ("disgust", "angry"), ("happy", "happy")]:
        at.selectbox(key="faces_true").set_value(t)
        at.selectbox(key="faces_pred").set_value(p).run()
        cell = stcnn[(stcnn.label == CLASSES.index(t)) & (stcnn.pred == CLASSES.index(p))]["index"].tolist()
        assert len(cell) == truth.values[CLASSES.index(t), CLASSES.index(p)]
        text = next(m.value for m in at.tabs[0].markdown if "faces** of true class" in m.value)
        assert text.startswith(f"**{len(cell)} faces** of true class **{t}**") and f"as **{p}**" in text
        assert shown(at, 0) == cell[:32]  # page 1: the first 32 in the split
        assert len(at.tabs[0].get("image")) == min(32, len(cell))
    pages = at.tabs[0].number_input[0]  # happy/happy: many pages
    assert pages.label == f"Page (of {-(-len(cell) // 32)})"
    pages.set_value(2).run()
    assert shown(at, 0) == cell[32:64]


def test_captions_give_every_architectures_answer(committed_runs, fer2013):
    at = faces_page(fer2013)
    answers = {m: rows(m).set_index("index") for m in ENSEMBLE}
    captions = [c.value for c in at.tabs[0].caption if c.value.startswith("#")]
    assert captions
    for text in captions:
        i = int(text[1:].split()[0])
        assert f"true **{CLASSES[answers['stcnn'].label[i]]}**" in text
        for model, frame in answers.items():
            confidence = probabilities(frame.loc[[i]]).max()
            assert f"{model}: {CLASSES[frame.pred[i]]} {confidence:.2f}" in text, (model, text)


def test_disagreement_counts_add_up(committed_runs, fer2013):
    at = faces_page(fer2013)
    labels = pd.DataFrame({m: rows(m).set_index("index").pred for m in ENSEMBLE})
    differ = int((labels.nunique(axis=1) > 1).sum())
    assert 0 < differ < len(labels)
    text = " ".join(m.value for m in at.tabs[1].markdown)
    assert f"**{differ} of {len(labels)} faces** get different labels" in text
    combos = next(d.value for d in at.tabs[1].dataframe if "faces" in d.value.columns)
    assert combos.faces.sum() == differ and set(combos.columns) == {*ENSEMBLE, "faces"}
    assert (combos[list(ENSEMBLE)].nunique(axis=1) > 1).all()
    for pair in at.selectbox(key="faces_pair").options:
        at.selectbox(key="faces_pair").set_value(pair).run()
        a, b = pair.split(" vs ")
        apart = int((labels[a] != labels[b]).sum())
        assert f"{a} and {b} differ on **{apart} faces**" in " ".join(m.value for m in at.tabs[1].markdown)
        assert heatmap_counts(at, "faces_pair_heatmap").sum() == apart
    assert len(at.tabs[1].get("image")) == 32  # the first page of the disagreeing faces


def test_hardest_faces_are_the_highest_loss(committed_runs, fer2013):
    at = faces_page(fer2013)
    at.selectbox(key="faces_model").set_value("vit (shipped)").run()
    vit = rows("vit")
    probs = probabilities(vit)
    loss = -np.log(probs[np.arange(len(vit)), vit.label.to_numpy(int)])
    captions = [c.value for c in at.tabs[2].caption if c.value.startswith("#")]
    losses = [float(re.search(r"loss ([\d.]+)", c).group(1)) for c in captions]
    assert sorted(losses, reverse=True) == [float(f"{x:.1f}") for x in np.sort(loss)[::-1][:32]]


def test_calibration_numbers_are_the_rows(committed_runs, fer2013):
    at = faces_page(fer2013)
    table = next(d.value for d in at.tabs[3].dataframe if "applied" in d.value.columns)
    files = sorted(SHIPPED_PREDICTIONS_DIR.glob("*-val-*.parquet"))
    assert len(table) == len(files)
    for row in table.to_dict("records"):
        frame = rows(row["model"], row["view"])
        labels, probs = frame.label.to_numpy(int), probabilities(frame)
        assert row["ECE"] == pytest.approx(calibration.expected_calibration_error(labels, probs), abs=1e-4)
        stored = model_record(row["model"])["calibration"]["views"][row["view"]]  # the record's choice, shown
        assert row["temperature"] == stored["temperature"] and row["applied"] == ("yes" if stored["applied"] else "no")
        assert row["ECE with T, out of fold"] == stored["ece_out_of_fold"]
    ensemble = next(d.value for d in at.tabs[3].dataframe if "ensemble" in d.value.columns)
    record = model_record("ensemble")
    views = record.get("views") or dict.fromkeys(record["members"], record["val"]["tta"])
    members = [probabilities(rows(m, views[m])) for m in record["members"]]
    labels = rows("stcnn").label.to_numpy(int)
    mean = np.mean(members, 0)
    plain = ensemble.iloc[0]
    assert plain.accuracy == pytest.approx((mean.argmax(1) == labels).mean())
    assert plain.ECE == pytest.approx(calibration.expected_calibration_error(labels, mean))
    assert len(ensemble) == 3 and "cross-validated" in ensemble.ensemble.iloc[2]


def test_the_gallery_says_what_is_missing_without_the_faces(committed_runs, tmp_path, monkeypatch):
    import dashboard.common

    monkeypatch.setattr(dashboard.common, "FULL_DATA_HINT", tmp_path / "no-fer2013")
    at = faces_page(None)
    assert any(str(tmp_path / "no-fer2013") in w.value for w in at.warning)
    assert not at.get("image")
    assert any("faces** of true class" in m.value for m in at.markdown)  # the counts stay


def test_a_runs_own_rows_and_faces(runs_copy):
    """The tiny fer-train runs on the bundled sample keep per-face rows; their faces are the
    sample's, made again from the run's --limit and seed."""
    from fer_core.runs.runstore import RunStore

    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("views/faces.py").run()
    runs = {r["name"]: r["run_id"] for r in RunStore(runs_copy).list_runs()}
    at.selectbox(key="faces_model").set_value("b16 (run)").run()
    assert not at.exception, [e.value for e in at.exception]
    frame = RunStore(runs_copy).predictions([runs["b16"]])
    val = frame[(frame.split == "val") & (frame.tta == "none")]
    off = pd.crosstab(val.label, val.pred).reindex(index=range(7), columns=range(7), fill_value=0).values
    np.testing.assert_array_equal(heatmap_counts(at, f"confusion_{runs['b16']}"), off)
    t, p = np.unravel_index(off.argmax(), off.shape)  # the fullest cell
    at.selectbox(key="faces_true").set_value(CLASSES[t])
    at.selectbox(key="faces_pred").set_value(CLASSES[p]).run()
    captions = [c.value for c in at.tabs[0].caption if c.value.startswith("#")]
    assert len(captions) == min(32, off.max()) and not at.warning and all("this run: " in c for c in captions)
    assert len(at.tabs[0].get("image")) == len(captions)


def test_without_any_per_face_rows_the_page_says_how_to_make_them(tmp_path, monkeypatch):
    import fer_core.runs.predictions

    monkeypatch.setattr(fer_core.runs.predictions, "SHIPPED_PREDICTIONS_DIR", tmp_path / "none")
    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path / "runs"))
    at = faces_page(None)
    assert any("fer-eval --model stcnn" in i.value for i in at.info) and not at.tabs
