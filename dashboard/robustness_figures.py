"""Robustness results as tables, plotly figures and example faces, for the Robustness page and
the paper report (no Streamlit here, and no PyTorch: the examples are rebuilt from the stored
faces and thetas with fer_core.data.perturb)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from dashboard.paper_tables import Section, in_parts, percent
from fer_core.data.perturb import PERTURBATIONS, affine_warp, perturb
from fer_core.evaluation import robustness

COLUMNS = 4
ST_RESPONSE = (
    "what the transformer does: how much its theta varies from face to face (the largest standard deviation "
    "of its six entries over the clean faces; 0 is one fixed warp for every face) and the share of each "
    "geometric perturbation it takes back (1: its output is what it made of the clean face; 0: it does "
    "nothing about it; below 0: it adds to it)"
)
PROTOCOL = (
    "Every model is run the same way: PyTorch in fp32, one view (no test-time augmentation), on the same "
    "stratified subset of FER2013 PublicTest (our val; never the test set) with the same seeded perturbations."
)


def colours(results: list[dict]) -> dict[str, tuple[str, str]]:
    """Model label -> (colour, dash): an ST-bypassed model dashed in its twin's colour."""
    palette = qualitative.Plotly
    bases = list(dict.fromkeys(r["key"].removesuffix(robustness.NO_ST) for r in results))
    return {
        robustness.label(r): (
            palette[bases.index(r["key"].removesuffix(robustness.NO_ST)) % len(palette)],
            "dash" if r.get("bypass_transformer") else "solid",
        )
        for r in results
    }


def curves_figure(results: list[dict]) -> go.Figure:
    """One small chart per perturbation: accuracy against severity per model, the clean accuracy
    as the large marker at the left."""
    points = robustness.curves(results)
    names = [n for n in PERTURBATIONS if n in set(points.perturbation)]
    rows = -(-len(names) // COLUMNS)
    fig = make_subplots(
        rows=rows,
        cols=COLUMNS,
        subplot_titles=[PERTURBATIONS[n].label for n in names],
        shared_yaxes=True,
        vertical_spacing=0.5 / rows,
        horizontal_spacing=0.03,
    )
    style = colours(results)
    for i, name in enumerate(names):
        row, col = divmod(i, COLUMNS)
        of_name = points[points.perturbation == name]
        for model, line in of_name.groupby("model", sort=False):
            colour, dash = style[model]
            fig.add_scatter(
                x=line.level,
                y=line.accuracy,
                mode="lines+markers",
                name=model,
                legendgroup=model,
                showlegend=i == 0,
                line={"color": colour, "dash": dash},
                marker={"size": [11] + [6] * (len(line) - 1), "symbol": ["diamond"] + ["circle"] * (len(line) - 1)},
                customdata=line.severity.astype(str),
                hovertemplate=f"{model}<br>{name} %{{customdata}}: %{{y:.3f}}<extra></extra>",
                row=row + 1,
                col=col + 1,
            )
        severities = PERTURBATIONS[name].severities
        fig.update_xaxes(
            tickvals=list(range(len(severities) + 1)),
            ticktext=["clean", *map(str, severities)],
            title_text=PERTURBATIONS[name].unit,
            title_font_size=10,
            row=row + 1,
            col=col + 1,
        )
    low, high = points.accuracy.min(), points.accuracy.max()
    fig.update_yaxes(range=[max(0.0, low - 0.03), min(1.0, high + 0.03)])  # one scale for every chart
    fig.update_yaxes(title_text="accuracy", col=1)
    fig.update_layout(height=260 * rows + 80, margin={"t": 40, "b": 10}, legend={"orientation": "h", "y": -0.06})
    return fig


def middle_table(results: list[dict]) -> pd.DataFrame:
    """Model x perturbation at the middle severity, in percent."""
    table = robustness.middle_table(results)
    for column in table.columns[2:]:
        table[column] = table[column].map(percent)
    return table


def st_gap_table(results: list[dict]) -> pd.DataFrame | None:
    """For each ST-CNN measured with and without its transformer: accuracy with it minus without
    it, in points, per perturbation and severity (clean first). None without such a pair."""
    by_key = {r["key"]: r for r in results}
    rows = []
    for r in results:
        twin = by_key.get(r["key"] + robustness.NO_ST)
        if r.get("bypass_transformer") or not twin:
            continue
        clean = percent(r["clean"]["accuracy"] - twin["clean"]["accuracy"])
        for name, p in r["perturbations"].items():
            gaps = np.subtract(p["accuracy"], twin["perturbations"][name]["accuracy"])
            rows.append(
                {"model": r["key"], "perturbation": name, "clean": clean}
                | {f"severity {i + 1}": percent(g) for i, g in enumerate(gaps)}
                | {"severities": ", ".join(map(str, p["severities"])), "unit": p["unit"]}
            )
    return pd.DataFrame(rows) if rows else None


def st_response_table(results: list[dict]) -> pd.DataFrame | None:
    """Per ST-CNN: how much its theta varies from face to face, and the share of each geometric
    perturbation its transformer takes back at each severity (1 all, 0 none). None without one."""
    rows = []
    for r in results:
        st = r.get("st")
        if not st:
            continue
        row = {"model": r["key"], "theta spread": max(st["theta_std"])}
        for name, shares in st["takes_back"].items():
            severities = PERTURBATIONS[name].severities
            row |= {f"{name} {v}": share for v, share in zip(severities, shares, strict=True)}
        rows.append(row)
    return pd.DataFrame(rows) if rows else None


def example_strip(results: list[dict], name: str, example: int) -> dict:
    """One example face under one perturbation at every level: the faces, each model's answer, and
    for each ST model what its transformer made of them (rebuilt from the stored thetas). Only the
    results with the first one's example faces and seed (the same val subset) are shown."""
    first = results[0]
    results = [r for r in results if (r["examples"]["ids"], r["seed"]) == (first["examples"]["ids"], first["seed"])]
    ids, labels, faces = robustness.example_faces(first)
    levels = range(len(PERTURBATIONS[name].severities) + 1)
    one, seed = slice(example, example + 1), first["seed"]
    shown = [perturb(faces[one], name, level, seed, ids[one])[0] for level in levels]
    keys = [robustness.condition_key(None if level == 0 else name, level) for level in levels]
    answers = {
        robustness.label(r): [(r["answers"][k][example], r["confidence"][k][example]) for k in keys]
        for r in results
        if name in r["perturbations"]
    }
    warped = {}
    for r in results:
        if "thetas" in r and not r.get("bypass_transformer") and name in r["perturbations"]:
            thetas = np.array([r["thetas"][k][example] for k in keys]).reshape(-1, 2, 3)
            out = affine_warp(np.stack(shown).astype(np.float64), thetas)
            warped[robustness.label(r)] = list(np.clip(out, 0, 255).astype(np.uint8))
    return {"label": int(labels[example]), "faces": shown, "answers": answers, "warped": warped}


def robustness_section(results: list[dict]) -> Section:
    """The paper report's section: the middle-severity table, the ST's part, the curves."""
    items = in_parts(middle_table(results), ["model", "faces"])
    if (gaps := st_gap_table(results)) is not None:
        items.append(gaps)
    if (response := st_response_table(results)) is not None:
        items += in_parts(response, ["model"], most=8)
    items.append(curves_figure(results))
    faces = results[0]["data"]["faces"]
    return Section(
        "Robustness",
        f"Accuracy on {faces} val faces, clean and under each perturbation at three severities (the first table: "
        "the middle one). Then the spatial transformer's part: the ST-CNN with its transformer minus the same "
        f"weights with it bypassed, in points; and {ST_RESPONSE}. {PROTOCOL}",
        items,
    )


ABLATION = (
    "The paper's own recipe (Adam 1e-4, no augmentation, 5 epochs on all of FER2013 Training, best epoch "
    "on val): the ST-CNN at batch 128, the same weights with its transformer bypassed, and the matched "
    "plain CNN (the same recipe and seed without the localisation network), measured like the models above."
)


def ablation_section(results: list[dict]) -> Section:
    """The paper report's section for the paper-recipe ablation: its middle-severity table and curves."""
    return Section(
        "Robustness of the paper's recipe, with and without the transformer",
        f"{ABLATION} Accuracy at the middle severity, then against severity. {PROTOCOL}",
        [*in_parts(middle_table(results), ["model", "faces"]), curves_figure(results)],
    )
