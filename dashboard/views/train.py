"""Train: a sidebar form that queues `fer-train` jobs, and a live jobs panel."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.common import SAMPLE_DATA, data_path_hint, epochs_progress, model_choices, queue, store
from fer_core.checkpoint import check_fits
from fer_core.data import FerDataError, load_dataset
from fer_core.inference import ensemble_members, resolve_model_path
from fer_core.models import MODELS
from fer_core.presets import DEFAULT_PRESET, PRESETS, preset_config

st.title("Train")

# -- the form ------------------------------------------------------------------------------
with st.sidebar:
    st.header("New training")
    model = st.selectbox("Architecture", list(MODELS), key="train_model")
    presets = [p for p, cfg in PRESETS.items() if cfg["model"] == model]
    preset = st.selectbox("Preset", presets, index=presets.index(DEFAULT_PRESET[model]), key="train_preset",
                          help="paper-* reproduce the paper's setups; the others are our recipes")
    base = preset_config(preset)
    with st.form("train_form", border=False):
        epochs = st.number_input("Epochs", min_value=1, max_value=500, value=base.epochs, key=f"ep_{preset}")
        batch_size = st.number_input("Batch size", min_value=2, max_value=1024, value=base.batch_size,
                                     key=f"bs_{preset}")
        lr = st.number_input("Learning rate", min_value=1e-6, max_value=1.0, value=base.lr, format="%.6f",
                             key=f"lr_{preset}")
        weight_decay = st.number_input("Weight decay", min_value=0.0, max_value=1.0, value=base.weight_decay,
                                       format="%.5f", key=f"wd_{preset}")
        ema_decay = st.number_input("Weight average: EMA decay (0 = off)", min_value=0.0, max_value=0.99999,
                                    value=float(base.ema_decay or 0.0), format="%.5f", key=f"ema_{preset}",
                                    help="evaluate and keep a moving average of the weights instead of the "
                                         "weights themselves; 0.999 averages about the last 1000 steps")
        augment = st.checkbox("Augmentation (crops, flips, small rotations)",
                              value=any(v for k, v in base.augment.items() if k != "erasing"), key=f"aug_{preset}")
        mix_left, mix_right = st.columns(2)
        mixup_alpha = mix_left.number_input("MixUp alpha (0 = off)", min_value=0.0, max_value=10.0,
                                            value=float(base.mixup_alpha), key=f"mixup_{preset}",
                                            help="train on blends of two faces with blended labels")
        cutmix_alpha = mix_right.number_input("CutMix alpha (0 = off)", min_value=0.0, max_value=10.0,
                                              value=float(base.cutmix_alpha), key=f"cutmix_{preset}",
                                              help="paste a patch of another face; with both on, each batch "
                                                   "gets one of the two")
        device = st.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key="train_device")
        source = st.radio("Dataset", ["Bundled sample (980 faces)", "A path on this machine"], key="train_source")
        path = st.text_input("FER2013 CSV or image folder", placeholder=data_path_hint(), key="train_path")
        limit = st.number_input("Use at most N images per split (0 = all)", min_value=0, value=0, step=100,
                                key="train_limit")
        starts = {"scratch (random weights)": None, **model_choices(model)}
        start = st.selectbox("Start from", list(starts), key=f"init_{preset}",
                             help="a trained model's weights with a fresh optimizer and schedule: "
                                  "a warm restart (lower the learning rate) or fine-tuning")
        teachers = {"none": None, **model_choices(), **({"ensemble (shipped)": "ensemble"} if ensemble_members() else {})}
        teacher = st.selectbox("Distil from (teacher)", list(teachers), key=f"teacher_{preset}",
                               help="train towards a trained model's soft predictions as well as the labels "
                                    "(knowledge distillation; any architecture)")
        name = st.text_input("Run name (optional)", key="train_name")
        submitted = st.form_submit_button("Start training", type="primary")
    st.caption("The bundled sample is for trying things out. For real training point the path at the full "
               f"FER2013: the Kaggle `fer2013.csv` or image folders such as `{data_path_hint()}`.")


def validate_dataset(data: str) -> str | None:
    """A message if the dataset cannot be used, None if it can (loading also warms the cache)."""
    if not data:
        return "Enter a dataset path, or choose the bundled sample."
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
    data = str(SAMPLE_DATA) if source.startswith("Bundled") else path.strip()
    problem = validate_dataset(data) or validate_start(starts[start])
    if problem:
        st.sidebar.error(problem)
    else:
        args = ["--preset", preset, "--data", str(Path(data).expanduser().resolve()), "--epochs", str(int(epochs)),
                "--batch-size", str(int(batch_size)), "--lr", repr(float(lr)),
                "--weight-decay", repr(float(weight_decay)), "--device", device]
        if ema_decay:
            args += ["--ema-decay", repr(float(ema_decay))]
        for flag, alpha in (("--mixup-alpha", mixup_alpha), ("--cutmix-alpha", cutmix_alpha)):
            if alpha:
                args += [flag, repr(float(alpha))]
        if not augment:
            args.append("--no-augment")
        if limit:
            args += ["--limit", str(int(limit))]
        if starts[start]:
            args += ["--init-from", starts[start]]
        if teachers[teacher]:
            args += ["--distill-from", teachers[teacher]]
        if name.strip():
            args += ["--name", name.strip()]
        job, created = queue().submit(args, name=name.strip() or None, model=model)
        if created:
            st.sidebar.success(f"Queued {job['job_id']}.")
        else:
            st.sidebar.warning(f"The same training is already {job['status']}: {job['job_id']}.")

# -- the jobs panel ------------------------------------------------------------------------------
st.subheader("Jobs")
c1, c2 = st.columns([1, 3])
cap = c1.number_input("Run at most this many at once", min_value=1, max_value=8, value=queue().max_running,
                      key="max_running", help="1 is best on a CPU: two jobs would share its cores")
if cap != queue().max_running:
    queue().max_running = cap
live = c2.toggle("Live update", value=True, key="jobs_live")


def eta_text(seconds) -> str:
    if not seconds:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}h {minutes:02d}m" if hours else f"ETA {minutes}m {secs:02d}s"


@st.fragment(run_every=2 if live else None)
def jobs_panel() -> None:
    q = queue()
    q.tick()  # start queued jobs when a slot is free
    jobs = sorted(q.jobs(), key=lambda j: j["created"], reverse=True)
    if not jobs:
        st.info("No jobs yet: fill in the form in the sidebar and press **Start training**.")
        return
    for job in jobs:
        run = store().read_run(job["run_id"]) if store().exists(job["run_id"]) else {}
        status = run.get("status", job["status"]) if job["status"] == "running" else job["status"]
        progress = run.get("progress") or {}
        with st.container(border=True):
            c1, c2, c3 = st.columns([4, 1, 1])
            c1.markdown(f"**{job['name']}** · {job['model']} · `{status}`")
            fraction = float(progress.get("fraction") or (1.0 if status == "finished" else 0.0))
            if status == "running":
                label = (f"epoch {progress.get('epoch', 0)}/{progress.get('epochs', '?')} "
                         f"batch {progress.get('batch', 0)}/{progress.get('batches', '?')}  "
                         f"{eta_text(progress.get('eta_seconds'))}")
            else:
                label = f"{run.get('epochs_completed', 0)}/{progress.get('epochs', '?')} epochs done"
            c1.progress(min(max(fraction, 0.0), 1.0), text=label)
            if job["status"] in ("queued", "running"):
                if c2.button("Cancel", key=f"cancel_{job['job_id']}"):
                    q.cancel(job["job_id"])
                    st.rerun(scope="fragment")
            else:
                if status in ("failed", "cancelled") and run and c2.button(
                        "Resume", key=f"resume_{job['job_id']}", help="continue from the last finished epoch"):
                    q.resume(job["run_id"])
                    st.rerun(scope="fragment")
                if c3.button("Remove", key=f"forget_{job['job_id']}", help="from this list; the run stays"):
                    q.forget(job["job_id"])
                    st.rerun(scope="fragment")
            if job.get("error") or run.get("error"):
                st.error(run.get("error") or job.get("error"))
            with st.expander("Log"):
                st.code(q.log_tail(job["job_id"], 15) or "(no output yet)", language=None)


jobs_panel()


# -- resume any stopped run (also those started from the command line) ---------------------------
stopped = {f"{r.get('name') or r['run_id']} ({r['status']}, {epochs_progress(r)} epochs)": r
           for r in store().list_runs() if r["status"] in ("failed", "cancelled")}
if stopped:
    with st.expander(f"Resume a stopped run ({len(stopped)})"):
        choice = st.selectbox("Run", list(stopped), key="resume_run")
        run = stopped[choice]
        done, total = run.get("epochs_completed") or 0, run["config"]["epochs"]
        end = st.number_input("Train to epoch", min_value=min(done + 1, total), value=total,
                              step=1, key=f"resume_epochs_{run['run_id']}",
                              help="The run's own end, or another: a cosine schedule then anneals to the new end "
                                   "(fer-train --resume RUN_ID --epochs N)")
        if st.button("Resume from its last finished epoch", key="resume_button"):
            job, created = queue().resume(run["run_id"], epochs=int(end))
            (st.success if created else st.warning)(
                f"{'Queued' if created else 'Already queued'}: {job['name']}")
