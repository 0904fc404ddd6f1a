"""Robustness curves: the perturbations, the ST bypass, fer-eval --perturb, the stored results,
the Robustness page and the report's section - on real FER2013 faces and the shipped models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from streamlit.testing.v1 import AppTest

from fer_core.data.augment import to_model_input
from fer_core.data.fer2013 import load_dataset
from fer_core.data.perturb import (
    GEOMETRIC,
    PERTURBATIONS,
    affine_warp,
    perturb,
    perturbation_names,
    similarity_theta,
    warp_theta,
)
from fer_core.evaluation import robustness
from fer_core.inference.explain import spatial_transform
from fer_core.inference.registry import ENSEMBLE, resolve_model_path
from fer_core.runs.checkpoint import load_model
from tests.conftest import PROJECT

APP = str(PROJECT / "dashboard" / "app.py")
FER_EVAL = str(Path(sys.executable).parent / "fer-eval")
ABLATION_MODELS = ["paper-cnn-b128", "paper-stcnn-b128", "paper-stcnn-b128 (ST bypassed)"]


@pytest.fixture(scope="module")
def val(fer2013):
    return load_dataset(fer2013).splits["val"]


@pytest.fixture(scope="module")
def stcnn():
    return load_model(resolve_model_path("stcnn"))


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_perturbations_are_deterministic_and_keep_shape_and_dtype(val, name):
    faces, ids = val.images[:40], np.arange(100, 140)
    for level in range(len(PERTURBATIONS[name].severities) + 1):
        out = perturb(faces, name, level, seed=0, ids=ids)
        assert out.dtype == np.uint8 and out.shape == faces.shape
        assert np.array_equal(out, perturb(faces.copy(), name, level, seed=0, ids=ids))
        # a face's perturbation is its own, wherever it sits in the batch
        assert np.array_equal(out[7:8], perturb(faces[7:8], name, level, seed=0, ids=ids[7:8]))
        if level == 0:
            assert np.array_equal(out, faces)
        else:
            assert not np.array_equal(out, faces), f"{name} at severity {level} changed nothing"
    assert np.array_equal(faces, val.images[:40])  # the input is left as it was


def test_stronger_severities_change_the_faces_more(val):
    faces = val.images[:200]
    for name in PERTURBATIONS:
        change = [np.abs(perturb(faces, name, level).astype(int) - faces).mean() for level in (1, 2, 3)]
        assert change[0] < change[1] < change[2], (name, change)


def test_random_draws_follow_the_seed(val):
    faces = val.images[:20]
    assert not np.array_equal(perturb(faces, "noise", 1, seed=0), perturb(faces, "noise", 1, seed=1))
    with pytest.raises(ValueError, match="uint8"):
        perturb(faces.astype(np.float32), "noise", 1)
    with pytest.raises(ValueError, match="severities 1 to 3"):
        perturb(faces, "blur", 4)
    assert perturbation_names("all") == list(PERTURBATIONS)
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturbation_names("rotation,swirl")


def test_the_warp_is_the_spatial_transformers_sampler(val):
    """affine_warp computes what affine_grid + grid_sample (bilinear, align_corners=False) do."""
    faces = val.images[:16].astype(np.float64)
    theta = similarity_theta(np.linspace(-45, 45, 16), np.linspace(0.7, 1.3, 16), np.linspace(-0.4, 0.4, 16), 0.1)
    grid = F.affine_grid(torch.from_numpy(theta), [16, 1, 48, 48], align_corners=False)
    expected = F.grid_sample(torch.from_numpy(faces)[:, None], grid, align_corners=False)[:, 0].numpy()
    assert np.abs(affine_warp(faces, theta, fill=0.0) - expected).max() < 1e-6


def test_bypassing_the_transformer_gives_the_identity_warp(stcnn, val):
    off = robustness.bypassed(stcnn)
    x = to_model_input(torch.from_numpy(val.images[:32].copy()))
    with torch.inference_mode():
        assert torch.equal(off.theta(x), torch.eye(2, 3).expand(32, 2, 3))
        assert torch.allclose(off.transform(x).float(), x, atol=1e-5)
        assert torch.allclose(off(x), off.classifier(x), atol=1e-4)
        # the shipped transformer does move the faces, and the original model is left as it was
        assert not stcnn.identity_warp
        assert (stcnn.theta(x) - torch.eye(2, 3)).abs().max() > 1e-3
    assert all(torch.equal(a, b) for a, b in zip(off.state_dict().values(), stcnn.state_dict().values(), strict=True))
    with pytest.raises(ValueError, match="no spatial transformer"):
        robustness.bypassed(load_model(resolve_model_path("vit")))


def test_the_transformers_output_is_rebuilt_from_its_theta(stcnn, val):
    """What the page draws (the stored theta applied to the perturbed face) is the ST's output."""
    face = perturb(val.images[5:6], "rotation", 3, ids=[5])
    x = to_model_input(torch.from_numpy(face.copy()))
    with torch.inference_mode():
        theta = stcnn.theta(x).numpy()
    rebuilt = np.clip(affine_warp(face.astype(np.float64), theta), 0, 255).astype(np.uint8)[0]
    assert np.abs(rebuilt.astype(int) - spatial_transform(stcnn, face[0])).max() <= 1


class ScriptedTransformer:
    """Answers each theta() call with the next of the given thetas: a transformer whose answer is
    known, to check st_response's arithmetic (1: undoes all, 0: nothing, -1: doubles it)."""

    def __init__(self, thetas: list[np.ndarray]):
        self.queue = list(thetas)

    def theta(self, x):
        return torch.from_numpy(self.queue.pop(0)[:, :2]).float()


@pytest.mark.parametrize("name", GEOMETRIC)
def test_st_response_measures_what_the_transformer_takes_back(val, name):
    ids = np.arange(300, 340)
    base = robustness._square(similarity_theta(10.0, np.full(40, 1.1), 0.05, -0.02))  # its view of clean faces
    moves = [robustness._square(warp_theta(name, level, ids)) for level in (1, 2, 3)]
    for answer, expected in (
        (lambda m: np.linalg.inv(m) @ base, 1.0),  # undoes the perturbation: sees the clean view
        (lambda m: base, 0.0),  # does nothing about it
        (lambda m: m @ base, -1.0),  # moves the same way again
    ):
        model = ScriptedTransformer([base] + [answer(m) for m in moves])
        response = robustness.st_response(model, val.images[ids], ids, [name])
        assert response["takes_back"][name] == pytest.approx([expected] * 3, abs=0.02)
        assert response["theta_std"] == pytest.approx([0.0] * 6, abs=1e-6)


@pytest.fixture(scope="module")
def small_result(fer2013):
    return robustness.evaluate("stcnn", fer2013, "val", limit=28, names=["rotation", "blur"])


def test_a_result_holds_every_condition_and_the_examples(small_result, val):
    r = small_result
    assert r["data"]["faces"] == 28 and r["precision"] == "fp32" and r["tta"] == "none"
    assert list(r["perturbations"]) == ["rotation", "blur"]
    assert r["perturbations"]["rotation"]["severities"] == [15, 30, 45]
    assert all(len(p["accuracy"]) == 3 for p in r["perturbations"].values())
    assert set(r["answers"]) == {"clean", "rotation/1", "rotation/2", "rotation/3", "blur/1", "blur/2", "blur/3"}
    ids, labels, faces = robustness.example_faces(r)
    assert sorted(labels.tolist()) == list(range(7))  # one face per class
    assert np.array_equal(faces, val.images[ids]) and np.array_equal(labels, val.labels[ids])
    assert all(len(t) == 7 and len(t[0]) == 6 for t in r["thetas"].values())


def test_the_bypassed_result_scores_the_classifier_on_the_faces_as_they_are(fer2013, val, stcnn):
    r = robustness.evaluate("stcnn", fer2013, "val", limit=28, bypass=True, names=["blur"])
    assert r["key"] == "stcnn-no-st" and r["bypass_transformer"]
    from fer_core.data.fer2013 import stratified_indices

    ids = stratified_indices(val.labels, 28, seed=0)
    with torch.inference_mode():
        preds = stcnn.classifier(to_model_input(torch.from_numpy(val.images[ids].copy()))).argmax(1).numpy()
    assert r["clean"]["accuracy"] == pytest.approx((preds == val.labels[ids]).mean(), abs=1e-4)
    assert all(np.allclose(t, [1, 0, 0, 0, 1, 0]) for ts in r["thetas"].values() for t in ts)


def test_fer_eval_perturb_writes_one_json_per_model(fer2013, tmp_path, small_result):
    out = tmp_path / "stcnn.json"
    run = subprocess.run(
        [FER_EVAL, "--model", "stcnn", "--data", str(fer2013), "--split", "val", "--limit", "28"]
        + ["--perturb", "rotation,blur", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    written = json.loads(out.read_text())
    # the same faces and perturbations as the library call: the same numbers
    assert written["perturbations"] == small_result["perturbations"] and written["clean"] == small_result["clean"]
    assert "rotation" in run.stdout and "45:" in run.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "vit", "--bypass-transformer", "--perturb", "blur"], "no spatial transformer"),
        (["--model", "ensemble", "--perturb", "blur"], "one model at a time"),
        (["--model", "stcnn", "--perturb", "swirl"], "unknown perturbation"),
    ],
)
def test_fer_eval_perturb_refuses_what_it_cannot_do(args, message, fer2013, capsys):
    """fer-eval's own entry point, in process: exit status 1 and one line saying why."""
    from trainers.cli import eval_main

    assert eval_main(["--data", str(fer2013), "--limit", "14", *args]) == 1
    assert message in capsys.readouterr().err


# -- the stored results, the page and the report ---------------------------------------------


@pytest.fixture(scope="module")
def stored() -> list[dict]:
    results = robustness.load_results(robustness.STORED_DIR)
    assert results, f"no stored results in {robustness.STORED_DIR}: run scripts/robustness.py"
    return results


def test_the_shipped_models_results_are_stored(stored):
    keys = [r["key"] for r in stored]
    assert keys[:4] == ["stcnn", "stcnn-no-st", "resnet50", "vit"]
    assert {r["data"]["faces"] for r in stored} == {1000}
    for r in stored:
        assert list(r["perturbations"]) == list(PERTURBATIONS)
        assert r["data"]["split"] == "val" and r["precision"] == "fp32"
        assert r["examples"] == stored[0]["examples"]  # the same faces for every model
        assert ("st" in r) == (r["architecture"] == "stcnn" and not r["bypass_transformer"])
    assert set(ENSEMBLE) <= {r["model"] for r in stored}


def test_the_page_renders_from_the_stored_results(stored, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("views/robustness.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Robustness"
    middle = at.dataframe[0].value
    assert middle.model.tolist()[:4] == ["stcnn", "stcnn (ST bypassed)", "resnet50", "vit"]
    assert middle.set_index("model").loc["vit", "rotation 30"] == pytest.approx(
        100 * stored[3]["perturbations"]["rotation"]["accuracy"][1]
    )
    with_st = [robustness.label(r) for r in stored if "st" in r]  # the shipped stcnn, then stored ST runs
    assert with_st[0] == "stcnn"
    gaps = at.dataframe[1].value
    assert gaps.model.unique().tolist() == with_st
    assert all(set(g.perturbation) == set(PERTURBATIONS) for _, g in gaps.groupby("model"))
    response = at.dataframe[2].value
    assert response.model.tolist() == with_st
    assert response["theta spread"][0] == max(stored[0]["st"]["theta_std"])
    assert response["rotation 30"][0] == stored[0]["st"]["takes_back"]["rotation"][1]
    chart, ablation_chart = at.get("plotly_chart")
    assert len(json.loads(chart.proto.spec)["data"]) == len(stored) * len(PERTURBATIONS)
    # the paper's recipe with and without the transformer, apart from the shipped models
    ablation = robustness.load_results(robustness.ABLATION_DIR)
    assert "The paper's recipe, with and without the transformer" in [h.value for h in at.subheader]
    assert at.dataframe[3].value.model.tolist() == ABLATION_MODELS == [robustness.label(r) for r in ablation]
    assert at.dataframe[3].value.set_index("model").loc["paper-cnn-b128", "shift 0.1"] == pytest.approx(
        100 * ablation[0]["perturbations"]["shift"]["accuracy"][1]
    )
    assert len(json.loads(ablation_chart.proto.spec)["data"]) == len(ablation) * len(PERTURBATIONS)
    images = at.get("image")
    assert len(images) == 4 + 4 * len(with_st)  # the face at each level, and each transformer's output of each
    assert [i.proto.imgs[0].caption for i in images[:4]] == ["clean", "15 (degrees)", "30 (degrees)", "45 (degrees)"]
    at.selectbox(key="rob_perturbation").set_value("zoom_out").run()
    at.selectbox(key="rob_example").set_value(3).run()
    assert not at.exception
    assert [i.proto.imgs[0].caption for i in at.get("image")[:4]] == [
        "clean",
        "0.9 (scale)",
        "0.8 (scale)",
        "0.7 (scale)",
    ]
    answers = [m.value for m in at.markdown if m.value.startswith("**stcnn**")]
    assert len(answers) == 4 and all(line.count("**") == 2 * len(stored) for line in answers)


def test_the_report_has_a_robustness_section(stored):
    from dashboard.report_html import paper_report, report_html
    from fer_core.runs.predictions import shipped_predictions
    from fer_core.runs.runstore import RunStore

    sections = paper_report(RunStore(PROJECT / "results" / "runs"), shipped_predictions())
    [section] = [s for s in sections if s.title == "Robustness"]
    middle = section.items[0]
    assert middle.model.tolist()[:2] == ["stcnn", "stcnn (ST bypassed)"]
    assert "fp32" in section.note and "PublicTest" in section.note
    assert "Robustness" in report_html(sections)
    [ablation] = [s for s in sections if s.title.startswith("Robustness of the paper's recipe")]
    assert ablation.items[0].model.tolist() == ABLATION_MODELS


def test_the_paper_recipe_ablation_is_stored():
    """The full-data Table 1 trials at batch 128, measured like the shipped models (issue 57)."""
    results = robustness.load_results(robustness.ABLATION_DIR)
    assert [robustness.label(r) for r in results] == ABLATION_MODELS
    assert {r["data"]["faces"] for r in results} == {1000} and {r["precision"] for r in results} == {"fp32"}
    assert all(list(r["perturbations"]) == list(PERTURBATIONS) for r in results)
    cnn, stcnn, bypassed = results
    assert (cnn["architecture"], stcnn["architecture"]) == ("cnn", "stcnn") and bypassed["bypass_transformer"]


@pytest.mark.slow
def test_the_page_measures_a_run_on_demand(runs_copy, stored, tmp_path, monkeypatch):
    """A real run (tiny ST-CNN, 2 epochs): measured from the page, with and without its transformer,
    into the cache folder; the page then shows it beside the stored results."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))  # not the session's: other pages read it
    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    at.switch_page("views/robustness.py").run()
    at.selectbox(key="rob_run").set_value(next(o for o in at.selectbox(key="rob_run").options if o.startswith("b16")))
    at.number_input(key="rob_faces").set_value(50)
    at.button(key="rob_measure").click().run()
    assert not at.exception, [e.value for e in at.exception]
    measured = json.loads((robustness.on_demand_dir() / "b16.json").read_text())
    assert measured["data"]["faces"] == 50 and measured["source"]["run_id"]
    assert (robustness.on_demand_dir() / "b16-no-st.json").is_file()
    middle = at.dataframe[0].value
    assert {"b16", "b16 (ST bypassed)"} <= set(middle.model) and "stcnn" in set(middle.model)
    with_st = [robustness.label(r) for r in stored if "st" in r]
    assert set(at.dataframe[1].value.model) == {*with_st, "b16"}  # the ST's part of each


def test_the_page_needs_no_pytorch():
    """What the Robustness page imports to draw the stored results leaves PyTorch unloaded (its
    import alone takes seconds here), so the page opens fast on a fresh server."""
    code = (
        "import sys; import dashboard.common, dashboard.robustness_figures; "
        "import fer_core.evaluation.robustness, fer_core.data.perturb; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=PROJECT, timeout=120).returncode == 0
