"""fer-serve's catalogue: the models a request may name, and what GET /models says of each
(its test-time view and val accuracy, from the shipped records)."""


def served_models() -> list[str]:
    """What a client may ask for: the shipped models, and the ensemble once one is shipped."""
    from ..inference.registry import ensemble_members, shipped_names

    names = shipped_names()
    return names + (["ensemble"] if ensemble_members() else [])


def model_info(name: str) -> dict:
    from ..inference.registry import ensemble_members, model_record

    record = model_record(name) or {}
    val = record.get("val", {})
    view = val.get("tta", "none")
    metrics = val.get("metrics", {})
    info = {
        "name": name,
        "tta": view,
        "val_accuracy": metrics.get(view, {}).get("accuracy"),
        "val_accuracy_by_tta": {k: v.get("accuracy") for k, v in metrics.items()},
        "val_faces": val.get("faces"),
    }
    if name == "ensemble":
        info["members"] = ensemble_members()
        if "weights" in record:  # the calibrated, weighted ensemble: each member in its own view
            chosen = next(o for o in record["calibration"]["options"] if o["option"] == record["calibration"]["chosen"])
            info |= {
                "tta": "auto",
                "views": record["views"],
                "weights": record["weights"],
                "val_accuracy": record["calibration"]["in_sample"]["accuracy"],
                "val_accuracy_out_of_fold": chosen["calibrated_out_of_fold"]["accuracy"],
            }
    else:
        info["architecture"] = record.get("architecture")
    return info
