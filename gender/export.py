"""Load a trained model for prediction or evaluation, with the run.json that describes it."""

import zipfile
from pathlib import Path

from gender import CLASS_NAMES, UserError
from gender.runs import model_info_name, read_run_info

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "weights" / "pretrained"


def resolve_weights(weights) -> Path:
    """A weights argument as a file: a run folder means its best.keras."""
    path = Path(weights)
    if path.is_dir():
        for name in ("best.keras", "last.keras"):
            if (path / name).is_file():
                return path / name
        raise UserError(f"{path}: folder holds no best.keras or last.keras")
    if not path.exists():
        raise UserError(f"{path}: weights file not found")
    return path


def load_trained(weights):
    """Load a model saved by the trainer.

    Accepts a .keras file, a run folder, or a .weights.h5 file with run.json beside it.

    Returns:
        (model, info): info is the run.json dict, with at least 'model' and 'image_size'.
    """
    import keras

    import models.layers  # noqa: F401  registers the custom layers before loading

    path = resolve_weights(weights)
    info = read_run_info(path.parent, model_info_name(path))
    try:
        if path.name.endswith(".weights.h5"):
            model = _build_and_load_weights(path, info)
        elif path.suffix == ".keras":
            if not zipfile.is_zipfile(path):  # Keras would say "file not found" here
                raise UserError(f"{path}: not a Keras model file (a .keras file is a zip archive)")
            model = keras.saving.load_model(path, compile=False)
        else:
            raise UserError(f"{path}: expected a .keras model (or .weights.h5 with run.json)")
    except UserError:
        raise
    except Exception as err:  # Keras raises many types for a bad file; all mean the same here
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: not a loadable Keras model ({reason})") from None
    if tuple(model.output_shape) != (None, 1):
        raise UserError(
            f"{path}: not a gender model (output shape {model.output_shape}, "
            "expected one P(woman) unit)"
        )
    input_size = tuple(model.input_shape[1:3])
    if info.get("image_size") and tuple(info["image_size"]) != input_size:
        raise UserError(
            f"{path}: model input is {input_size} but run.json says {tuple(info['image_size'])}"
        )
    info.setdefault("image_size", list(input_size))
    info.setdefault("model", model.name)
    info.setdefault("class_names", list(CLASS_NAMES))
    return model, info


def _build_and_load_weights(path: Path, info: dict):
    from models import create_model

    if not info.get("model"):
        raise UserError(f"{path}: a .weights.h5 file needs the run.json of its run beside it")
    model = create_model(info["model"], image_size=info["image_size"])
    try:
        model.load_weights(path)
    except Exception as err:
        reason = str(err).strip().splitlines()[0][:120]
        raise UserError(
            f"{path}: weights do not fit model {info['model']} at {info['image_size']} ({reason})"
        ) from None
    return model


def check_image_size(info: dict, requested) -> tuple[int, int]:
    """The model's input size; a different --image-size is an error, not a silent resize."""
    size = tuple(info["image_size"])
    if requested is not None and tuple(requested) != size:
        raise UserError(
            f"--image-size {requested[0]}x{requested[1]}: this model was trained at "
            f"{size[0]}x{size[1]}; leave --image-size out to use it"
        )
    return size
