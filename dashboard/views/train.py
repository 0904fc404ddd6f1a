"""Train: a form that queues `fer-train` jobs, and a live jobs panel.

The form sits in the main area, four inputs to a row, so that Start and its message are in view
on a 1400x900 window (in the sidebar, under the page list, Start was far below the fold)."""

from __future__ import annotations

import math
from pathlib import Path

import streamlit as st

from dashboard.common import (
    SAMPLE_DATA,
    data_path_hint,
    dataset_refusal,
    epochs_progress,
    model_choices,
    queue,
    store,
)
from fer_core.data.fer2013 import FerDataError, load_dataset
from fer_core.inference.registry import ensemble_members, resolve_model_path
from fer_core.models import MODELS
from fer_core.runs.checkpoint import check_fits
from fer_core.runs.presets import DEFAULT_PRESET, PRESETS, options, preset_config, to_argv
from fer_core.runs.status import ACTIVE, RESUMABLE

st.title("Train")

# The TrainConfig fields the form shows, in this order, each with its widget key ("{preset}": back
# to the preset's value when the preset changes). Label, help, bounds and kind of input come from
# the field's metadata (fer_core/runs/presets.py), as fer-train's flags do; the inputs that are not
# fields (augmentation, dataset, start, teacher) sit between them as the layout below places them.
FORM_FIELDS = {
    "epochs": "ep_{preset}",
    "batch_size": "bs_{preset}",
    "lr": "lr_{preset}",
    "weight_decay": "wd_{preset}",
    "ema_decay": "ema_{preset}",
    "mixup_alpha": "mixup_{preset}",
    "cutmix_alpha": "cutmix_{preset}",
    "device": "train_device",
    "limit": "train_limit",
    "name": "train_name",
}
OPTIONS = options()


def field_input(name: str, base, where=st):
    """The input for one TrainConfig field, starting at the preset's value; returns the field's value."""
    opt, ui = OPTIONS[name], OPTIONS[name].ui
    label = ui.get("label") or opt.label[:1].upper() + opt.label[1:]
    value, kw = getattr(base, name), dict(key=FORM_FIELDS[name].format(preset=base.preset), help=opt.help)
    if opt.choices:
        return where.selectbox(label, opt.choices, index=opt.choices.index(value), **kw)
    if opt.kind is bool:
        return where.checkbox(label, value=value, **kw)
    if opt.kind is str:
        return where.text_input(label, value=value or "", **kw).strip() or None
    low, high, with_low, with_high = opt.interval()
    kind, none_as = opt.kind, ui.get("none_as")

    # the form's own bound if it has one (a widget cannot show an open or infinite one), else the option's
    def bound(key, b, closed):
        return kind(ui[key]) if key in ui else (kind(b) if closed and math.isfinite(b) else None)

    number = where.number_input(
        label,
        min_value=bound("min", low, with_low),
        max_value=bound("max", high, with_high),
        value=kind(none_as if value is None else value),
        step=kind(ui["step"]) if "step" in ui else None,
        format=ui.get("format"),
        **kw,
    )
    return None if none_as is not None and number == none_as else number


@st.cache_data
def sample_facts() -> tuple[int, str]:
    """The sample's size, counted rather than written down (the label once said 980 when the file
    had 700), and its fingerprint, which tells the runs that trained on it."""
    dataset = load_dataset(SAMPLE_DATA)
    return sum(len(split) for split in dataset.splits.values()), dataset.fingerprint


SAMPLE_FACES = sample_facts()[0]
ON_A_PATH = "A path on this machine"
FULL_DATA = (
    f"For real training choose *{ON_A_PATH}* and give the full FER2013: the Kaggle `fer2013.csv` "
    f"or image folders such as `{data_path_hint()}`."
)

# -- the form ------------------------------------------------------------------------------
with st.container(border=True):
    c1, c2, c3, c4 = st.columns(4)
    model = c1.selectbox("Architecture", list(MODELS), key="train_model")
    presets = [p for p, cfg in PRESETS.items() if cfg["model"] == model]
    preset = c2.selectbox(
        "Preset",
        presets,
        index=presets.index(DEFAULT_PRESET[model]),
        key="train_preset",
        help="paper-* reproduce the paper's setups; the others are our recipes",
    )
    sample = f"Bundled sample ({SAMPLE_FACES} faces)"
    # outside the form, so that choosing the sample greys out the path at once: a path typed
    # while the sample was chosen used to be dropped without a word
    source = c3.radio("Dataset", [sample, ON_A_PATH], key="train_source")
    path = c4.text_input(
        "FER2013 CSV or image folder",
        placeholder=data_path_hint(),
        key="train_path",
        disabled=source == sample,
        help=f"used when the dataset is *{ON_A_PATH}*",
    )
    base = preset_config(preset)
    with st.form("train_form", border=False):
        values = {}
        row = st.columns(4, vertical_alignment="bottom")
        for name, column in zip(("epochs", "batch_size", "lr", "weight_decay"), row, strict=True):
            values[name] = field_input(name, base, column)
        row = st.columns(4, vertical_alignment="bottom")
        for name, column in zip(("ema_decay", "mixup_alpha", "cutmix_alpha"), row[:3], strict=True):
            values[name] = field_input(name, base, column)
        augment = row[3].checkbox(
            "Augmentation",
            help="random crops, flips and small rotations of the training faces",
            value=any(v for k, v in base.augment.items() if k != "erasing"),
            key=f"aug_{preset}",
        )
        row = st.columns(4, vertical_alignment="bottom")
        values["device"] = field_input("device", base, row[0])
        values["limit"] = field_input("limit", base, row[1])
        starts = {"scratch (random weights)": None, **model_choices(model)}
        start = row[2].selectbox(
            "Start from",
            list(starts),
            key=f"init_{preset}",
            help="a trained model's weights with a fresh optimizer and schedule: "
            "a warm restart (lower the learning rate) or fine-tuning",
        )
        teachers = {
            "none": None,
            **model_choices(),
            **({"ensemble (shipped)": "ensemble"} if ensemble_members() else {}),
        }
        teacher = row[3].selectbox(
            "Distil from (teacher)",
            list(teachers),
            key=f"teacher_{preset}",
            help="train towards a trained model's soft predictions as well as the labels "
            "(knowledge distillation; any architecture)",
        )
        row = st.columns([1, 1, 2], vertical_alignment="bottom")
        values["name"] = field_input("name", base, row[0])
        submitted = row[1].form_submit_button("Start training", type="primary", width="stretch")
        feedback = row[2].empty()  # Start's message, beside it
        feedback.caption(f"The bundled sample is for trying things out. {FULL_DATA}")


def validate_dataset(data: str) -> str | None:
    """A message if the dataset cannot be used, None if it can (loading also warms the cache)."""
    if not data:
        return "Enter a dataset path, or choose the bundled sample."
    if dataset_refusal(data):
        return dataset_refusal(data)
    if not Path(data).expanduser().exists():
        return f"{data}: no such file or folder."
    try:
        with st.spinner("Checking the dataset..."):
            ds = load_dataset(data)
    except FerDataError as e:
        return f"Not a usable FER2013 dataset: {e}"
    if "train" not in ds.splits:
        return f"{data} has no training split (found: {', '.join(ds.splits)})."
    return None


def validate_start(spec: str | None) -> str | None:
    """A message if the chosen weights do not fit the preset's model, None if they do."""
    if spec is None:
        return None
    try:
        check_fits(resolve_model_path(spec, store().uri), base.model, base.model_config)
    except (FileNotFoundError, ValueError) as e:
        return f"Cannot start {preset} from {start}: {e}."
    return None


if submitted:
    data = str(SAMPLE_DATA) if source == sample else path.strip()
    problem = validate_dataset(data) or validate_start(starts[start])
    if problem:
        feedback.error(problem)
    else:
        args = to_argv(
            {
                "preset": preset,
                "data": str(Path(data).expanduser().resolve()),
                **values,
                "no_augment": not augment,
                "init_from": starts[start],
                "distill_from": teachers[teacher],
            }
        )
        job, created = queue().submit(args, name=values["name"], model=model)
        if created:
            feedback.success(f"Queued {job['job_id']}: it shows under Jobs below.")
        else:
            feedback.warning(f"The same training is already {job['status']}: {job['job_id']}.")

# -- the jobs panel ------------------------------------------------------------------------------
st.subheader("Jobs")
c1, c2 = st.columns([1, 3])
cap = c1.number_input(
    "Run at most this many at once",
    min_value=1,
    max_value=8,
    value=queue().max_running,
    key="max_running",
    help="1 is best on a CPU: two jobs would share its cores",
)
if cap != queue().max_running:
    queue().max_running = cap
live = c2.toggle("Live update", value=True, key="jobs_live")


def eta_text(seconds) -> str:
    if not seconds:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}h {minutes:02d}m" if hours else f"ETA {minutes}m {secs:02d}s"


def planned_epochs(job: dict, run: dict):
    """The epoch total before the trainer has reported one: the run's config, else the job's --epochs."""
    args = job["args"]
    from_args = args[args.index("--epochs") + 1] if "--epochs" in args[:-1] else None
    return (run.get("config") or {}).get("epochs") or from_args or "?"


def progress_text(progress: dict, epochs) -> str:
    """Where a running trainer is: in an epoch's batches, or in one of the steps between them
    (loading data, building the model, evaluating, saving, the final evaluation) that take
    seconds to minutes on a CPU."""
    phase, epoch = progress.get("phase"), progress.get("epoch") or 0
    if "batch" in progress:
        return (
            f"epoch {epoch}/{epochs} batch {progress['batch']}/{progress.get('batches', '?')}  "
            f"{eta_text(progress.get('eta_seconds'))}"
        )
    if phase in ("loading data", "building model"):
        return f"{phase} ({epoch}/{epochs} epochs done)"
    if phase:
        return f"epoch {epoch}/{epochs}: {phase}"
    return f"starting the trainer ({epoch}/{epochs} epochs done)"  # Python and torch loading


def on_the_sample(run: dict) -> bool:
    return (run.get("dataset") or {}).get("fingerprint") == sample_facts()[1]


def run_deleted(job: dict) -> bool:
    """An ended job that started a trainer and has no error of its own, whose run is gone."""
    return (
        job["status"] not in ACTIVE
        and bool(job.get("started"))
        and not job.get("error")
        and not store().exists(job["run_id"])
    )


@st.fragment(run_every=2 if live else None)
def jobs_panel() -> None:
    q = queue()
    q.tick()  # start queued jobs when a slot is free
    jobs = sorted(q.jobs(), key=lambda j: j["created"], reverse=True)
    gone = [j for j in jobs if run_deleted(j)]
    for job in gone:  # what the job made was deleted on Compare runs: nothing is left to show
        q.forget(job["job_id"])
    jobs = [j for j in jobs if j not in gone]
    if gone:
        st.caption(f"{len(gone)} job(s) left this list: their runs were deleted.")
    if not jobs:
        st.info("No jobs yet: fill in the form above and press **Start training**.")
        return
    for job in jobs:
        run = store().get(job["run_id"]) or {}
        # a resumed run's record tells of its last attempt until the new trainer writes to it
        current = run.get("started", "") >= job.get("started", "~")
        status = run.get("status", job["status"]) if job["status"] == "running" and current else job["status"]
        progress = (run.get("progress") if current else None) or {"epoch": run.get("epochs_completed") or 0}
        epochs = progress.get("epochs") or planned_epochs(job, run)
        with st.container(border=True):
            c1, c2, c3 = st.columns([4, 1, 1])
            c1.markdown(f"**{job['name']}** · {job['model']} · `{status}`")
            fraction = float(progress.get("fraction") or (1.0 if status == "finished" else 0.0))
            if status == "running":
                label = progress_text(progress, epochs)
            else:
                label = f"{run.get('epochs_completed', 0)}/{epochs} epochs done"
                if run.get("best_val_accuracy") is not None and run["best_val_accuracy"] >= 0:
                    label += f" · best val accuracy {run['best_val_accuracy']:.1%}"
            c1.progress(min(max(fraction, 0.0), 1.0), text=label)
            if job["status"] in ACTIVE:
                if c2.button("Cancel", key=f"cancel_{job['job_id']}"):
                    q.cancel(job["job_id"])
                    st.rerun(scope="fragment")
            else:
                if (
                    status in RESUMABLE
                    and run
                    and c2.button("Resume", key=f"resume_{job['job_id']}", help="continue from the last finished epoch")
                ):
                    q.resume(job["run_id"])
                    st.rerun(scope="fragment")
                if c3.button("Remove", key=f"forget_{job['job_id']}", help="from this list; the run stays"):
                    q.forget(job["job_id"])
                    st.rerun(scope="fragment")
            if job.get("error") or run.get("error"):
                st.error(run.get("error") or job.get("error"))
            if status == "finished" and on_the_sample(run):
                st.info(
                    f"Trained on the bundled sample: {SAMPLE_FACES} faces for a few epochs give near-chance "
                    "accuracy (1 in 7 classes, or the share of the commonest one), as expected. " + FULL_DATA
                )
            with st.expander("Log"):
                st.code(q.log_tail(job["job_id"], 15) or "(no output yet)", language=None)


jobs_panel()


# -- resume any stopped run (also those started from the command line) ---------------------------
stopped = {
    f"{r.get('name') or r['run_id']} ({r['status']}, {epochs_progress(r)} epochs)": r
    for r in store().list_runs()
    if r["status"] in ("failed", "cancelled")
}
if stopped:
    with st.expander(f"Resume a stopped run ({len(stopped)})"):
        choice = st.selectbox("Run", list(stopped), key="resume_run")
        run = stopped[choice]
        done, total = run.get("epochs_completed") or 0, run["config"]["epochs"]
        end = st.number_input(
            "Train to epoch",
            min_value=min(done + 1, total),
            value=total,
            step=1,
            key=f"resume_epochs_{run['run_id']}",
            help="The run's own end, or another: a cosine schedule then anneals to the new end "
            "(fer-train --resume RUN_ID --epochs N)",
        )
        if st.button("Resume from its last finished epoch", key="resume_button"):
            job, created = queue().resume(run["run_id"], epochs=int(end))
            (st.success if created else st.warning)(f"{'Queued' if created else 'Already queued'}: {job['name']}")
