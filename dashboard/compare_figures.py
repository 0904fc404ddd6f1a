"""The Compare runs page's plotly figures: learning curves, confusion heatmaps and per-class
recall (no Streamlit here). Each is drawn from the frame compare.py shapes, the same frame the
page offers as CSV beside it."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from dashboard import compare
from fer_core.classes import CLASSES

COLOURS = qualitative.Plotly


def curves_figure(plotted: pd.DataFrame, x: str, metric: str, grouped: bool) -> go.Figure:
    """One line per run and split (train dotted), or per group and split with a +-1 std band."""
    traces = []
    series = "group" if grouped else "run"
    colours = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(plotted[series].unique())}
    for (name, split), line in plotted.groupby([series, "split"], sort=False):
        colour = colours[name]
        y = line["mean"] if grouped else line[metric]
        if grouped and line["runs"].max() > 1:
            traces.append(
                go.Scatter(
                    x=pd.concat([line[x], line[x][::-1]]),
                    y=pd.concat([line["upper"], line["lower"][::-1]]),
                    fill="toself",
                    fillcolor=colour,
                    opacity=0.2,
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=f"{name} {split}",
                    name=f"{name} {split} +-1 std",
                )
            )
        traces.append(
            go.Scatter(
                x=line[x],
                y=y,
                mode="lines+markers",
                name=f"{name} {split}",
                legendgroup=f"{name} {split}",
                line={"dash": "dot" if split == "train" else "solid", "color": colour},
            )
        )
    fig = go.Figure(traces)
    fig.update_xaxes(dtick=1 if x == "epoch" and plotted.epoch.max() <= 20 else None)  # whole epochs
    x_title = next(label for label, column in compare.X_AXES.items() if column == x)
    fig.update_layout(
        xaxis_title=x_title, yaxis_title=metric, height=420, margin={"t": 30}, legend={"orientation": "h", "y": -0.2}
    )
    return fig


def confusion_figure(matrices: dict[str, pd.DataFrame], counts: bool) -> go.Figure:
    """One heatmap per run (name -> confusion matrix), side by side on one colour scale: the
    counts, or (counts False) each true class's row as shares."""
    fig = make_subplots(
        rows=1, cols=len(matrices), subplot_titles=list(matrices), shared_yaxes=True, horizontal_spacing=0.03
    )
    for i, matrix in enumerate(matrices.values(), 1):
        values = matrix if counts else compare.row_shares(matrix)
        fig.add_trace(
            go.Heatmap(
                z=values.values,
                x=list(CLASSES),
                y=list(CLASSES),
                coloraxis="coloraxis",
                text=values.values.round(0 if counts else 2),
                texttemplate="%{text}",
                hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
            ),
            1,
            i,
        )
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(title_text="true", row=1, col=1)  # shared: the labels and title once, on the left
    fig.update_xaxes(title_text="predicted")
    scale_title = "faces" if counts else "share of<br>true class"
    fig.update_layout(
        height=400,
        coloraxis={"colorscale": "Purples", "colorbar": {"title": {"text": scale_title}}},
        margin={"t": 40},
    )
    return fig


def recall_figure(recall: pd.DataFrame) -> go.Figure:
    """Per-class recall (compare.recalls), a group of bars per class, one bar per run."""
    bars = go.Figure(
        [go.Bar(x=group["class"], y=group.recall, name=run) for run, group in recall.groupby("run", sort=False)]
    )
    bars.update_layout(
        barmode="group",
        height=320,
        title="Per-class recall (val, best epoch)",
        yaxis_title="recall",
        legend_title="run",
    )
    return bars
