"""The paper report as plain data: tables and plotly figures made from runs, model records and
per-face rows, and one self-contained HTML file of them.

No Streamlit here, so the Report page, its download and the tests read the same numbers; the
Faces & errors page draws its confusion heatmaps and calibration tables with the same functions.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from dashboard.paper_tables import Section, headline_note, headline_table, paper_tables
from dashboard.robustness_figures import ablation_section, robustness_section
from fer_core.classes import CLASSES
from fer_core.evaluation.robustness import ABLATION_DIR, STORED_DIR, load_results
from fer_core.inference import calibration
from fer_core.inference.registry import ENSEMBLE, model_record
from fer_core.runs.predictions import probabilities
from fer_core.runs.runstore import RunStore

COLOURS = px.colors.qualitative.Plotly


# -- per-face rows ----------------------------------------------------------------------------


def card_views(rows: pd.DataFrame) -> dict[str, str]:
    """Shipped model -> the view of its rows to show: its card's, or any while that one is missing."""
    views = {}
    for name, of_model in rows.groupby("model"):
        have = sorted(set(of_model.tta))
        card = (model_record(name) or {}).get("val", {}).get("tta", "none")
        views[name] = card if card in have else have[0]
    return views


def confusion_counts(rows: pd.DataFrame) -> np.ndarray:
    """7x7 face counts, true class down, predicted class across."""
    cells = rows.label.to_numpy(int) * len(CLASSES) + rows.pred.to_numpy(int)
    return np.bincount(cells, minlength=len(CLASSES) ** 2).reshape(len(CLASSES), len(CLASSES))


def confusion_heatmap(counts: np.ndarray) -> go.Heatmap:
    """Counts in the cells, coloured by the share of the true class (so rare classes show too)."""
    share = counts / counts.sum(1, keepdims=True).clip(1)
    return go.Heatmap(
        z=share,
        x=list(CLASSES),
        y=list(CLASSES),
        text=counts,
        texttemplate="%{text}",
        customdata=np.round(share * 100, 1),
        hovertemplate="true %{y}, predicted %{x}: %{text} faces (%{customdata} % of %{y})<extra></extra>",
        colorscale="Purples",
        zmin=0,
        zmax=1,
        showscale=False,
    )


def confusion_figure(counts: np.ndarray, title: str = "", height: int = 420) -> go.Figure:
    """One confusion matrix: true class down, predicted across."""
    fig = go.Figure(confusion_heatmap(counts))
    fig.update_yaxes(autorange="reversed", title_text="true")
    fig.update_xaxes(title_text="predicted")
    fig.update_layout(title=title, height=height, margin={"t": 40 if title else 10, "b": 10})
    return fig


def confusion_figures(matrices: dict[str, np.ndarray], height: int = 430) -> go.Figure:
    """Several confusion matrices side by side in one figure: the class names once down the left
    and under each matrix (tilted, so they fit), the "predicted" titles apart."""
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1, cols=len(matrices), subplot_titles=list(matrices), shared_yaxes=True, horizontal_spacing=0.04
    )
    for i, counts in enumerate(matrices.values(), 1):
        fig.add_trace(confusion_heatmap(counts), 1, i)
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(title_text="true", row=1, col=1)
    fig.update_xaxes(title_text="predicted", tickangle=-45, tickfont={"size": 11})
    fig.update_traces(textfont={"size": 10})
    fig.update_layout(height=height, margin={"t": 40, "b": 10, "l": 10, "r": 10})
    return fig


def calibration_row(labels: np.ndarray, probs: np.ndarray, stored: dict | None = None) -> dict:
    """ECE and NLL, the temperature fitted on these faces, the ECE and NLL with it scored out of
    fold, and whether it is applied (only where it lowers both): `stored` when a record holds
    them (scripts/calibrate_models.py), else computed here the same way."""
    choice = stored or calibration.temperature_choice(labels, probs)
    return {
        "ECE": choice["ece"],
        "NLL": choice["nll"],
        "temperature": choice["temperature"],
        "ECE with T, out of fold": choice["ece_out_of_fold"],
        "NLL with T, out of fold": choice["nll_out_of_fold"],
        "applied": "yes" if choice["applied"] else "no",
        "from": "record" if stored else "computed here",
    }


def calibration_table(rows: pd.DataFrame, name: str = "model") -> pd.DataFrame:
    """calibration_row per model (or run) and view, with the faces and the accuracy."""
    out = []
    for (who, view), r in rows.groupby([name, "tta"]):
        labels, probs = r.label.to_numpy(int), probabilities(r)
        stored = (((model_record(str(who)) or {}).get("calibration") or {}).get("views") or {}).get(view)
        accuracy = float((r.pred.to_numpy() == labels).mean())  # as predicted (float16 can tie)
        out.append(
            {name: who, "view": view, "faces": len(r), "accuracy": accuracy, **calibration_row(labels, probs, stored)}
        )
    return pd.DataFrame(out)


def member_probs(rows: pd.DataFrame, views: dict[str, str]) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """Labels and each member's probabilities in its view, face by face; None if any are missing."""
    members = []
    for name, view in views.items():
        r = rows[(rows.model == name) & (rows.tta == view)].sort_values("index")
        if r.empty:
            return None
        members.append(r)
    if any(not np.array_equal(m["index"].to_numpy(), members[0]["index"].to_numpy()) for m in members):
        return None
    return members[0].label.to_numpy(int), [probabilities(m) for m in members]


def ensemble_views(record: dict | None) -> dict[str, str]:
    """The members' views: the record's own choice per member, else its one view for all."""
    record = record or {}
    members = record.get("members") or list(ENSEMBLE)
    chosen = record.get("views") or {}
    return {m: chosen.get(m) or record.get("val", {}).get("tta", "none") for m in members}


def ensemble_table(rows: pd.DataFrame, record: dict | None) -> pd.DataFrame | None:
    """The plain mean of the members against the calibrated weighted blend (the record's fit
    when it has one, else fitted here), both in-sample on val, and the blend cross-validated
    on val (5 folds), which is the honest estimate of what the weights buy."""
    views = ensemble_views(record)
    found = member_probs(rows, views)
    if found is None:
        return None
    labels, probs = found
    record = record or {}
    if "weights" in record:
        pick = lambda v: [v[m] for m in views] if isinstance(v, dict) else list(v)  # noqa: E731
        fitted = {
            "weights": pick(record["weights"]),
            "temperatures": pick(record["temperatures"]),
            "temperature": float(record["temperature"]),
        }
        source = "the record's"
    else:
        fitted, source = calibration.fit_ensemble(labels, probs), "fitted here"
    described = ", ".join(f"{m} {w:.1f}" for m, w in zip(views, fitted["weights"], strict=True))

    def row(kind: str, p: np.ndarray, how: str) -> dict:
        return {
            "ensemble": kind,
            "how": how,
            "accuracy": float((p.argmax(1) == labels).mean()),
            "ECE": calibration.expected_calibration_error(labels, p),
        }

    member_views = ", ".join(f"{m} {v}" for m, v in views.items())
    return pd.DataFrame(
        [
            row("plain mean", np.mean(probs, 0), f"views: {member_views}"),
            row(f"weighted, temperature-scaled ({source})", calibration.combine(probs, **fitted), described),
            row(
                "weighted, cross-validated",
                calibration.cross_validate_ensemble(labels, probs),
                "5 folds: each fifth of val predicted by a blend fitted on the rest",
            ),
        ]
    )


# -- runs -------------------------------------------------------------------------------------


def source_chain(record: dict) -> list[tuple[str, int]]:
    """The runs a shipped model's weights came through, oldest first, each with the epoch taken
    from it (warm restarts start from their parent's checkpoint of that epoch)."""
    source = record["source"]
    parents = [(s["run_id"], s["epoch"]) for s in reversed(source.get("started_from") or [])]
    return [*parents, (source["run_id"], source["epoch"])]


def learning_curves_figure(store: RunStore, record: dict, title: str = "") -> go.Figure:
    """Train and val accuracy over the epochs of every run in the chain, joined end to end; a
    star at the epoch shipped."""
    chain = source_chain(record)
    metrics = store.metrics([run_id for run_id, _ in chain if store.exists(run_id)])
    if metrics.empty:  # the source runs are not in this run store (another FER_RUNS_DIR): no curves
        metrics = pd.DataFrame(columns=["run_id", "epoch", "split", "tta", "accuracy"])
    fig = go.Figure()
    offset = 0
    for k, (run_id, epoch) in enumerate(chain):
        last = k == len(chain) - 1
        of_run = metrics[(metrics.run_id == run_id) & (metrics.tta == "none")] if not metrics.empty else metrics
        if not last:
            of_run = of_run[of_run.epoch <= epoch]
        name = (store.get(run_id) or {}).get("name", run_id)
        colour = COLOURS[k % len(COLOURS)]
        for split, dash in (("val", "solid"), ("train", "dot")):
            curve = of_run[of_run.split == split].sort_values("epoch")
            fig.add_scatter(
                x=curve.epoch + offset,
                y=curve.accuracy,
                mode="lines",
                name=name,
                legendgroup=name,
                showlegend=split == "val",
                line={"dash": dash, "color": colour},
                hovertemplate=f"{name} {split}, epoch %{{customdata}}: %{{y:.4f}}<extra></extra>",
                customdata=curve.epoch,
            )
        if last:
            shipped = of_run[(of_run.split == "val") & (of_run.epoch == epoch)]
            fig.add_scatter(
                x=shipped.epoch + offset,
                y=shipped.accuracy,
                mode="markers",
                marker={"symbol": "star", "size": 14, "color": "black"},
                name=f"shipped (epoch {epoch})",
            )
        offset += epoch
    fig.update_layout(
        title=title,
        height=420,
        xaxis_title="epoch (restarts joined)",
        yaxis_title="accuracy (val solid, train dotted)",
        margin={"t": 40, "b": 10},
        legend={"orientation": "h", "y": -0.25, "font": {"size": 10}},
    )
    return fig


def paper_report(store: RunStore, rows: pd.DataFrame) -> list[Section]:
    """Everything the Report page shows and its HTML file holds, in order."""
    sections = [
        Section("Headline accuracies", headline_note(), headline_table(store)),
        *paper_tables(store),
    ]
    curves = [
        learning_curves_figure(store, record, f"{arch}: accuracy per epoch")
        for arch in ENSEMBLE
        if (record := model_record(arch))
    ]
    sections.append(
        Section(
            "Learning curves",
            "Each shipped model's runs (warm restarts joined end to end); val is FER2013 PublicTest, one view.",
            curves,
        )
    )
    if not rows.empty:
        views = card_views(rows)
        matrices = {
            f"{arch} ({view})": confusion_counts(rows[(rows.model == arch) & (rows.tta == view)])
            for arch in ENSEMBLE
            if (view := views.get(arch))
        }
        confusions = [confusion_figures(matrices)]
        sections.append(
            Section(
                "Confusion matrices",
                "The shipped models on FER2013 PublicTest in their cards' views; cells count faces, colour is "
                "the share of the true class.",
                confusions,
            )
        )
        cards = rows[rows.tta == rows.model.map(views)]
        items = [calibration_table(cards)]
        ensemble = ensemble_table(rows, model_record("ensemble"))
        if ensemble is not None:
            items.append(ensemble)
        sections.append(
            Section(
                "Calibration",
                "Expected calibration error (15 bins) and NLL on val in each card's view, and with a temperature "
                "fitted on val, scored out of fold (5 folds); the temperature is applied only where it lowers both. "
                "The paper reports none.",
                items,
            )
        )
    stored = load_results(STORED_DIR)  # the committed results, not those measured on demand
    if stored:
        sections.append(robustness_section(stored))
    if ablation := load_results(ABLATION_DIR):
        sections.append(ablation_section(ablation))
    return sections


# -- one HTML file --------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 14px; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3eef8; }
p.note { color: #555; }
"""


def number(value) -> str:
    """A float cell: up to 4 significant digits, never in scientific notation."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def report_html(sections: list[Section], title: str = "facial-expression lab: the paper and ours") -> str:
    """One HTML file that works offline: tables as HTML, plotly.js inlined once before the first
    figure, no links to other hosts."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    plotly_js = True
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.note:
            body.append(f'<p class="note">{html.escape(section.note)}</p>')
        for item in section.items:
            if isinstance(item, pd.DataFrame):
                body.append(item.to_html(index=False, na_rep="-", float_format=number, border=0))
            else:
                body.append(item.to_html(full_html=False, include_plotlyjs=plotly_js, config={"displaylogo": False}))
                plotly_js = False
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
