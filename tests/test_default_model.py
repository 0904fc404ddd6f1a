"""The default model earns its cost: the cheapest model whose val accuracy is not significantly
below the best (McNemar's exact test over the val faces), an ensemble only when significantly
better than its best member, members at weight 0 not run; fer-eval's figures in fp32 by default
and its JSON naming the runtime and precision that ran."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_core.inference.calibration import cross_validate_ensemble
from fer_core.inference.model_choice import ALPHA, choose_default, mcnemar
from fer_core.inference.registry import (
    ENSEMBLE,
    SHIPPED_MODELS_DIR,
    default_model,
    int8_path,
    model_names,
    model_record,
    shipped_tta,
)
from fer_core.runs.predictions import probabilities, shipped_predictions

BIN = Path(sys.executable).parent


def exact_two_sided(k: int, n: int) -> float:
    """The two-sided binomial test at 1/2, written out: twice the smaller tail, at most 1."""
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def answers(right: list[bool]) -> np.ndarray:
    return np.array(right, dtype=bool)


def test_mcnemar_counts_the_faces_only_one_gets_right():
    best = answers([True] * 30 + [False] * 10 + [True] * 50 + [False] * 10)
    other = answers([False] * 30 + [True] * 10 + [True] * 50 + [False] * 10)
    test = mcnemar(best, other)
    assert (test["only_best_right"], test["only_candidate_right"]) == (30, 10)
    assert test["p"] == pytest.approx(exact_two_sided(30, 40))
    assert mcnemar(best, best) == {"only_best_right": 0, "only_candidate_right": 0, "p": 1.0}


def candidate(name: str, gflop: float, right: np.ndarray) -> dict:
    return {"name": name, "gflop_per_face": gflop, "right": right}


def test_the_cheapest_model_within_noise_of_the_best_is_the_default():
    rng = np.random.default_rng(0)
    strong = rng.random(3000) < 0.70
    near = strong.copy()  # 30 faces lost and 18 won: 12 fewer, noise (p about 0.11)
    near[np.flatnonzero(strong)[:30]] = False
    near[np.flatnonzero(~strong)[:18]] = True
    weak = rng.random(3000) < 0.60  # 10 points fewer: not noise
    choice = choose_default(
        [candidate("weak", 1.0, weak), candidate("near", 5.0, near), candidate("ensemble", 20.0, strong)]
    )
    assert choice["best"] == "ensemble" and choice["default"] == "near"
    rows = {c["name"]: c for c in choice["candidates"]}
    assert rows["weak"]["significantly_below_best"] and rows["weak"]["p"] < ALPHA
    assert not rows["near"]["significantly_below_best"] and rows["near"]["p"] >= ALPHA
    assert [c["name"] for c in choice["candidates"]] == ["weak", "near", "ensemble"]  # by cost

    far = strong.copy()
    far[np.flatnonzero(strong)[:150]] = False  # its best member 150 faces behind: the ensemble earns its cost
    choice = choose_default([candidate("member", 5.0, far), candidate("ensemble", 20.0, strong)])
    assert choice["default"] == "ensemble"


def val_rows(rows, name: str, view: str):
    frame = rows[(rows.model == name) & (rows.tta == view)].sort_values("index")
    return frame.label.to_numpy(np.int64), probabilities(frame)


def test_the_records_default_follows_the_rule_on_the_shipped_val_rows():
    """Recomputed from the committed per-face rows: each candidate's accuracy and McNemar test
    against the best, and the default they imply, are the ensemble record's; it is registry's."""
    record = model_record("ensemble")
    choice = record["default_choice"]
    rows = shipped_predictions(list(ENSEMBLE))
    rights = {}
    for name in ENSEMBLE:
        labels, probs = val_rows(rows, name, shipped_tta(name))
        rights[name] = probs.argmax(1) == labels
    members = [val_rows(rows, n, record["views"][n])[1] for n in ENSEMBLE]
    rights["ensemble"] = cross_validate_ensemble(labels, members).argmax(1) == labels
    gflop = {c["name"]: c["gflop_per_face"] for c in choice["candidates"]}
    again = choose_default([candidate(n, gflop[n], r) for n, r in rights.items()])
    for mine, stored in zip(again["candidates"], choice["candidates"], strict=True):
        assert mine["name"] == stored["name"] and mine["accuracy"] == stored["accuracy"]
        assert mine["p"] == pytest.approx(stored["p"], rel=1e-6)
    assert again["default"] == choice["default"] == record["default_model"] == default_model()
    cost = {c["name"]: c["gflop_per_face"] for c in choice["candidates"]}
    running = [n for n, w in record["weights"].items() if w > 0]
    assert cost["ensemble"] > max(cost[n] for n in running)  # dearer than each member it runs
    if default_model() != "ensemble":  # then it did not beat its best member significantly
        best_member = max(running, key=lambda n: rights[n].mean())
        assert mcnemar(rights["ensemble"], rights[best_member])["p"] >= ALPHA


def test_the_card_states_the_test_and_its_p_value():
    card = (SHIPPED_MODELS_DIR / "ensemble.md").read_text()
    choice = model_record("ensemble")["default_choice"]
    default = next(c for c in choice["candidates"] if c["name"] == choice["default"])
    assert "McNemar's exact test" in card and f"**`{choice['default']}`**" in card
    assert f"McNemar p = {default['p']:.3f}" in card or choice["default"] == choice["best"]


def test_members_at_weight_zero_are_not_run():
    from fer_core.faces.recognizer import Recognizer
    from fer_core.inference.loading import load_models

    weights = model_record("ensemble")["weights"]
    running = [n for n in ENSEMBLE if weights[n] > 0]
    assert model_names("ensemble") == running and len(load_models("ensemble", backend="torch")) == len(running)
    assert list(Recognizer("ensemble").models) == running


def fer_eval(*args: str) -> dict:
    out = subprocess.run(
        [str(BIN / "fer-eval"), *args, "--json"], capture_output=True, text=True, timeout=900, check=True
    )
    return json.loads(out.stdout)


def test_fer_eval_is_fp32_by_default_and_names_what_ran(fer2013, tmp_path, monkeypatch):
    """Without a prepared cache `auto` runs PyTorch (no export), fp32; --precision bf16 says so."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    common = ["--model", "stcnn", "--data", str(fer2013), "--split", "val", "--limit", "14", "--tta", "none"]
    fp32 = fer_eval(*common)
    assert (fp32["precision"], fp32["runtime"]) == ("fp32", "torch")
    assert fp32["members"] == {"stcnn": {"runtime": "torch", "precision": "fp32"}}
    assert not (tmp_path / "cache" / "onnx").exists()
    bf16 = fer_eval(*common, "--precision", "bf16")
    assert (bf16["precision"], bf16["runtime"]) == ("bf16", "torch")
    int8 = fer_eval(*common, "--int8")
    assert (int8["precision"], int8["runtime"]) == ("int8", "onnx")
    mixed = fer_eval(*common[:1], "ensemble", *common[2:], "--int8")  # int8 where shipped, fp32 elsewhere
    expected = {
        n: {"runtime": "onnx", "precision": "int8"}
        if int8_path(n).is_file()
        else {"runtime": "torch", "precision": "fp32"}
        for n in model_names("ensemble")
    }
    assert mixed["members"] == expected and "mixed" in mixed["runtime"] + mixed["precision"]
    refused = subprocess.run(
        [str(BIN / "fer-eval"), *common, "--int8", "--precision", "bf16"], capture_output=True, text=True
    )
    assert refused.returncode == 1 and "bf16 runs on PyTorch" in refused.stderr
