"""Export a trained model as TFLite and SavedModel; bundle a run as a default model.

Exports (`python gender_train.py export WEIGHTS`) sit beside the weights with the same stem:
best.keras -> best.tflite, best_saved_model/, best.export.json (class names, input size, model),
and best.int8.tflite (full-integer quantized, calibrated on ~1,000 training-like images) when
there are images to calibrate on.
Models are loaded with `gender.predictor.load_trained`; TensorFlow is imported only when a
function here runs.
"""

import contextlib
import csv
import gc
import io
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gender import CLASS_NAMES, UserError, interrupt
from gender.atomic import atomic_path, check_space, file_set, write_text
from gender.config import RunRecord, read_run_info
from gender.console import filtered_stderr, tensorflow_logs_shown
from gender.data import decode_images, load_samples, read_truth_table
from gender.evaluation import evaluate
from gender.lite_faces import DETECTOR_DIR, NETWORKS
from gender.metrics import coverage_table, equal_error_threshold, person_weights
from gender.models.ensemble import average_models
from gender.predictor import PRETRAINED_DIR, Predictor, load_trained, resolve_weights
from gender.runs import RUN_FILE
from gender.tables import json_text

if TYPE_CHECKING:
    import keras
    import numpy as np

    from gender.config import RunRecord

# Quantization error (RMS, in int8 steps) above which a layer of the int8 export stays float32.
INT8_FLOAT_ERROR = 0.5
# Images an int8 export measures activation ranges on. With the previous face model, 200 cost
# 0.54 points on UTK adults against float32; 400, 600 and 1,000 stayed within 0.25 points on
# UTK adults, BFW val and faces_web val (CHANGELOG.md, the int8 export).
CALIBRATION_IMAGES = 1000


def export_paths(weights: str | Path) -> dict[str, Path]:
    """Where the exports of a .keras file go: {'tflite', 'int8', 'saved_model', 'json'}."""
    path = Path(weights)
    stem = path.name.removesuffix(".weights.h5").removesuffix(".keras")
    return {
        "tflite": path.with_name(f"{stem}.tflite"),
        "int8": path.with_name(f"{stem}.int8.tflite"),
        "saved_model": path.with_name(f"{stem}_saved_model"),
        "json": path.with_name(f"{stem}.export.json"),
    }


def export_info(model: "keras.Model", info: "RunRecord") -> dict:
    """What a runtime needs to use an export without Keras: labels, input size and range, and
    the task (a pedestrian model must not look for faces when it runs without its run.json)."""
    return {
        "model": info.model or model.name,
        "task": info.task_name,
        "class_names": list(info.class_names or CLASS_NAMES),
        "image_size": list(model.input_shape[1:3]),
        "input": "RGB, (B, H, W, 3) float32 holding 0..255 pixel values (the model scales them)",
        "input_dtype": "float32",
        "input_range": [0, 255],
        "output": f"(B, 1) sigmoid P({CLASS_NAMES[1]})",
        "resize": "OpenCV INTER_AREA when shrinking, INTER_LINEAR when enlarging, no aspect kept",
        # the decision threshold on P(woman), when the bundle chose one (else 0.5)
        **({"threshold": info.threshold} if info.threshold is not None else {}),
        # the --uncertain band it suggests (--uncertain model), chosen with the threshold
        **({"uncertain_band": info.uncertain_band} if info.uncertain_band is not None else {}),
    }


def export_saved_model(model: "keras.Model", folder: str | Path) -> Path:
    """Write `model` as a TensorFlow SavedModel (endpoint `serve`), atomically.

    The whole folder is written under a temporary name and renamed, so a reader never sees half
    of it; an existing export is replaced.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        _write_saved_model(model, tmp / "model")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp / "model", folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp / "model", folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _write_saved_model(model, folder: Path, shape=None, endpoint=None) -> None:
    """A SavedModel with one endpoint `serve` taking float32 images of `shape`.

    Defaults: a free batch size over the model's input (uint8 callers cast: LiteRT needs one
    dtype), and the model called in inference mode.
    """
    import keras
    import tensorflow as tf

    shape = shape or (None, *model.input_shape[1:])
    spec = tf.TensorSpec(shape, tf.float32, name="image")
    archive = keras.export.ExportArchive()
    archive.track(model)
    endpoint = endpoint or (lambda x: model(x, training=False))
    archive.add_endpoint("serve", endpoint, input_signature=[spec])
    archive.write_out(str(folder), verbose=False)


def export_tflite(model: "keras.Model", path: str | Path) -> Path:
    """Write `model` as a TFLite flat buffer for the LiteRT interpreter, atomically."""
    return _write_tflite(lambda folder: _write_saved_model(model, folder), path)


def export_int8(
    model: "keras.Model",
    path: str | Path,
    images: "np.ndarray",
    float_error: float | None = INT8_FLOAT_ERROR,
) -> tuple[Path, int]:
    """Write `model` as an int8 TFLite model, calibrated on `images`, atomically.

    Weights and activations are int8 (XNNPACK's int8 kernels); input and output stay float32
    (0..255 pixels in, P(woman) out), so `gender.lite.LiteModel` runs it like the float32 one.
    A layer whose int8 output is off by more than `float_error` quantization steps (RMS, over
    64 of the calibration images spread over them; TFLite's quantization debugger measures it)
    stays float32: in the bundled MobileNetV2 three to five depthwise convolutions (and in the
    current face bundle the last 1x1 convolution too), without which int8 lost 2.5 points of
    accuracy. float_error None: every layer int8 (full-integer).

    Args:
        images: (N, H, W, 3) uint8 training-like images at the model's size
            (CALIBRATION_IMAGES of them, say): each activation's range is measured on them.

    Returns:
        (path, the number of layers kept float32)
    """
    import tensorflow as tf

    def representative(count=None):
        # `count` images spread over all of them: calibration images come source by source
        step = max(1, len(images) // count) if count else 1
        for image in images[::step][:count]:
            yield [image[None].astype("float32")]

    kept_float = []

    def convert(converter):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if float_error is None:
            return converter.convert()
        # The debugger runs tf.lite.Interpreter, whose deprecation warning (LiteRT replaces it)
        # says nothing about this export.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _selective_int8(converter, lambda: representative(64), float_error, kept_float)

    _write_tflite(lambda folder: _write_saved_model(model, folder), path, convert)
    return Path(path), len(kept_float)


def _selective_int8(converter, sample, float_error: float, kept_float: list) -> bytes:
    """The int8 model with each layer whose RMS error exceeds `float_error` steps left float32
    (their names appended to `kept_float`); `sample()` yields the images the error is taken on."""
    import tensorflow as tf

    debug = tf.lite.experimental.QuantizationDebugger
    debugger = debug(converter=converter, debug_dataset=sample)
    debugger.run()
    table = io.StringIO()
    debugger.layer_statistics_dump(table)
    table.seek(0)
    for row in csv.DictReader(table):
        scale = float(row["scale"])
        if scale and float(row["mean_squared_error"]) ** 0.5 / scale > float_error:
            kept_float.append(row["tensor_name"])
    if kept_float:
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=kept_float)
        debugger = debug(converter=converter, debug_dataset=sample, debug_options=options)
    flat = debugger.get_nondebug_quantized_model()
    del debugger
    gc.collect()  # its interpreters warn as they are deleted: inside the caller's filter
    return flat


def calibration_images(
    sources: Sequence[str | Path], size: Sequence[int], count: int = CALIBRATION_IMAGES
) -> "np.ndarray":
    """`count` images spread evenly over data folders (their train/ part when they have one) or
    ground-truth tables, both classes, an equal share from each; decoded and resized to `size`:
    (N, H, W, 3) uint8, for `export_int8`."""
    share = -(-count // len(sources))
    images = []
    for source in sources:
        splits = load_samples(source)
        samples = splits.get("train", splits.get("all"))
        if samples is None or len(samples) == 0:
            raise UserError(f"{source}: no images to calibrate the int8 export on")
        pick = np.unique(np.linspace(0, len(samples) - 1, min(share, len(samples))).round())
        picked = samples.subset(pick.astype(int))
        images.append(np.asarray(decode_images(picked, size, report_skipped=False)[0]))
    return np.concatenate(images)


def _write_tflite(write_saved_model, path, convert=None) -> Path:
    """Convert the SavedModel that `write_saved_model(folder)` writes to TFLite at `path`.

    Only TFLite built-in ops are allowed (no Flex/Select TF ops, which would need TensorFlow at
    run time again), so a model that cannot run under plain LiteRT fails here, not in predict.
    `convert(converter)`, when given, sets more options (quantization) and returns the bytes.
    """
    import tensorflow as tf

    path = Path(path)
    # the converter's C++ lines ("fully_quantize: 0, inference_type: 6, ...") are for its
    # developers; --verbose shows them
    quiet = contextlib.nullcontext() if tensorflow_logs_shown() else filtered_stderr()
    with tempfile.TemporaryDirectory() as tmp, quiet:
        write_saved_model(Path(tmp) / "model")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(tmp) / "model"))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        flat = convert(converter) if convert else converter.convert()
    with atomic_path(path) as tmp_file:
        tmp_file.write_bytes(flat)
    return path


def export_detector(out_dir: str | Path | None = None) -> dict[str, Path]:
    """Convert the `mtcnn` package's three networks to TFLite for `gender.lite_faces`.

    The bundled files in weights/detector/ were made with mtcnn 1.0.0 by

        python -c "from gender.export import export_detector; export_detector()"

    PNet is fully convolutional, so it keeps a free height and width (the interpreter is resized
    for each pyramid level); RNet and ONet take 24x24 and 48x48 patches. Input as the package
    feeds them: (N, H, W, 3) RGB float32, (pixel - 127.5) / 128, not transposed.

    Returns:
        {'pnet': path, 'rnet': path, 'onet': path}
    """
    from mtcnn import MTCNN

    out_dir = Path(out_dir or DETECTOR_DIR)
    shapes = {"pnet": (1, None, None, 3), "rnet": (None, 24, 24, 3), "onet": (None, 48, 48, 3)}
    written = {}
    for name, stage in zip(NETWORKS, MTCNN().stages):
        network = stage._model  # the package keeps each Keras network on its stage
        written[name] = _write_tflite(
            lambda folder, network=network, shape=shapes[name]: _write_saved_model(
                network, folder, shape, network.call
            ),
            out_dir / f"mtcnn_{name}.tflite",
        )
    return written


def export_all(
    weights: str | Path,
    out: str | Path | None = None,
    calibration: str | Path | None = None,
    saved_model: bool = True,
) -> dict[str, Path]:
    """Export a trained model (a .keras file or run folder) as TFLite, SavedModel and JSON,
    and as int8 TFLite when there are images to calibrate on.

    Args:
        out: a folder for the exports (default: beside the weights).
        calibration: a data folder or ground-truth table for the int8 export; default the
            run's training folders, else its val.txt beside the weights
            (`_default_calibration`). Without any the int8 export is skipped.
        saved_model: also the SavedModel folder (for TF Serving); the end of training leaves
            it out: prediction needs only the LiteRT files.

    Returns:
        {'tflite': path, 'saved_model': folder, 'json': path} and 'int8': path when written.
    """
    model, info = load_trained(weights)
    source = resolve_weights(weights)
    paths = export_paths(Path(out) / source.name if out else source)
    calibration = [calibration] if calibration else _default_calibration(source, info)
    check_space(paths["json"].parent, 4 * _model_bytes(model))
    with file_set(lock=paths["json"].parent) as files:  # the exports of one model, together
        skip = ("int8", "saved_model") if not saved_model else ("int8",)
        tmp = {kind: files.add(path) for kind, path in paths.items() if kind not in skip}
        if calibration:
            tmp["int8"] = files.add(paths["int8"])
        else:
            files.drop(paths["int8"])
        _write_lite_export(model, info, source.name, tmp, calibration)
        if saved_model:
            export_saved_model(model, tmp["saved_model"])
    return {
        kind: path
        for kind, path in paths.items()
        if (kind != "int8" or calibration) and (kind != "saved_model" or saved_model)
    }


def _default_calibration(weights: Path, info: "RunRecord") -> list[str] | None:
    """What an int8 export calibrates on by default: the training folders the run recorded
    (their train/ parts) when they are all here, else the run's val.txt beside the weights.

    Training images, not validation ones (those are for measuring): with the bundled face
    model, 1,000 validation images cost 0.58 points on BFW val against float32, 1,000 training
    images 0.08-0.41 depending on the debugger's sample.
    """
    folders = info.flags.get("data") or []
    if folders and all(Path(folder).is_dir() for folder in folders):
        return [str(folder) for folder in folders]
    table = weights.parent / "val.txt"
    return [str(table)] if table.is_file() else None


def _write_lite_export(
    model, info: "RunRecord", source_name: str, paths: dict, calibration: list[str] | None = None
) -> None:
    """The .tflite and its .export.json (what the fast path reads) at `export_paths` `paths`,
    and the .int8.tflite calibrated on images of `calibration` when given."""
    export_tflite(model, paths["tflite"])
    if calibration:
        size = model.input_shape[1:3]
        _, kept_float = export_int8(model, paths["int8"], calibration_images(calibration, size))
    meta = {**export_info(model, info), "source": source_name}
    if calibration:
        meta["int8"] = {
            "file": export_paths(source_name)["int8"].name,  # paths may be temporaries
            "calibrated_on": [str(source) for source in calibration],
            "layers_kept_float32": kept_float,
        }
    write_text(paths["json"], json_text(meta))


def bundle(
    run_dir: str | Path,
    out_dir: str | Path = PRETRAINED_DIR,
    average_epochs: Sequence[int] | None = None,
    threshold: str | float | None = None,
    threshold_by_person: str | None = None,
    average_with: str | Path | None = None,
) -> dict[str, Path]:
    """Make a run's best model a bundled default: `<task>.keras`, `<task>.json`, `<task>.tflite`
    (and `<task>.int8.tflite`, calibrated on the run's training images, `_default_calibration`).

    The model is re-saved without its optimizer state (a third of a checkpoint's size), and the
    run's run.json is copied as `<task>.json` with the run folder it came from. With
    `average_epochs`, the bundled model is the mean of those epochs' checkpoints instead of
    best.keras (see `average_checkpoints`), and the JSON lists them. `threshold` stores a
    decision threshold on P(woman) with the model: a number, or "val" for the one that equalises
    the two classes' error rates on the run's validation split (val.txt; `equal_error_threshold`),
    with every person weighing the same when `threshold_by_person` (a person-id regex) is given.
    `average_with` (another trained model of the same task) makes the bundled model the mean of
    the two models' P(woman) (`gender.models.ensemble`), the threshold chosen on that mean.

    Returns:
        {'keras', 'json', 'tflite', 'export_json'} (and 'int8'): the files written.
    """
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        raise UserError(f"{run_dir}: not a run folder (no {RUN_FILE})")
    info = read_run_info(run_dir)
    if not info.task:
        raise UserError(f"{run_dir / RUN_FILE}: no 'task' (train with --task face|pedestrian)")
    task = info.config().task
    source = {"bundled_from": str(run_dir)}
    if average_epochs:
        model = average_checkpoints(run_dir, info, average_epochs)
        source["averaged_epochs"] = sorted(set(average_epochs))
    else:
        model, _ = load_trained(run_dir)
    if average_with:
        model, source["averaged_with"] = _average_with(model, info, average_with)
        source["image_size"] = list(model.input_shape[1:3])
        info = RunRecord.from_dict({**info.to_dict(), **source}, run_dir / RUN_FILE)
    if threshold == "val":
        source.update(validation_threshold(model, info, run_dir, threshold_by_person))
    elif threshold is not None:
        source["threshold"] = float(threshold)
    info = RunRecord.from_dict({**info.to_dict(), **source}, run_dir / RUN_FILE)
    out_dir = Path(out_dir)
    paths = {"keras": out_dir / f"{task}.keras", "json": out_dir / f"{task}.json"}
    exports = export_paths(paths["keras"])
    calibration = _default_calibration(run_dir / "best.keras", info)
    check_space(out_dir, 4 * _model_bytes(model))  # .keras, .tflite, .int8 and temporaries
    interrupt.keep(f"{out_dir} keeps its previous {task}.* files whole (nothing was replaced)")
    # One set: a model and the exports beside it from different runs would answer differently
    # for the same image depending on the backend.
    with file_set(lock=out_dir) as files:
        tmp = {kind: files.add(path) for kind, path in paths.items()}
        model.save(tmp["keras"])  # loaded with compile=False: no optimizer state to carry
        Path(tmp["json"]).write_text(json_text(info.to_dict()), encoding="utf-8")
        tmp_exports = {kind: files.add(exports[kind]) for kind in ("tflite", "json")}
        if calibration:
            tmp_exports["int8"] = files.add(exports["int8"])
        else:
            files.drop(exports["int8"])
        _write_lite_export(model, info, paths["keras"].name, tmp_exports, calibration)
    written = {**paths, "tflite": exports["tflite"], "export_json": exports["json"]}
    return {**written, "int8": exports["int8"]} if calibration else written


def _average_with(model: "keras.Model", info: "RunRecord", other: str | Path) -> tuple:
    """(the mean of `model` and the model at `other`, what the record says of `other`)."""
    other_path = resolve_weights(other)
    other_model, other_info = load_trained(other_path)
    if other_info.task_name != info.task_name:
        raise UserError(
            f"{other_path}: a {other_info.task_name} model; it cannot be averaged with a "
            f"{info.task_name} model"
        )
    if other_model.name == model.name:
        raise UserError(f"{other_path}: the same network ({model.name}) as the run; average two")
    record = {"weights": str(other), "model": other_info.model}  # as given: a name stays one
    record["image_size"] = other_info.image_size
    if "bundled_from" in other_info.extra:
        record["bundled_from"] = other_info.extra["bundled_from"]
    if other_info.threshold is not None:
        record["threshold"] = other_info.threshold
    return average_models([model, other_model]), record


def _model_bytes(model: "keras.Model") -> int:
    """About the size of one saved copy of `model` (float32 weights)."""
    return 4 * model.count_params()


def validation_threshold(
    model: "keras.Model", info: "RunRecord", run_dir: Path, person_pattern: str | None = None
) -> dict:
    """{'threshold', 'threshold_source'}: equal error rates on the run's val.txt, per image or,
    with `person_pattern`, with every person weighing the same (a validation split cut from
    video can hold a few people in hundreds of frames: they would choose the threshold)."""
    table = run_dir / "val.txt"
    if not table.is_file():
        raise UserError(f"{table}: no validation table to choose --threshold val on")
    predictor = Predictor(model, info, "keras", run_dir / "best.keras")
    result = evaluate(predictor, read_truth_table(table), persons=person_pattern, dataset=table)
    labels, p_woman = result.samples.labels, result.p_woman
    weights, how = None, f"{len(result.samples)} images"
    if person_pattern:
        weights = person_weights(result.persons)
        how += f", {len(set(result.persons))} persons weighing the same ({person_pattern})"
    threshold = round(equal_error_threshold(labels, p_woman, weights), 4)
    # the band that leaves the least sure 10% of the validation images unanswered: a suggestion
    # for --uncertain model (the answers stay "always" unless a user asks)
    share = 0.9
    (row,) = coverage_table(labels, p_woman, threshold, [share])
    band = [round(row["band"][0], 4), round(row["band"][1], 4)] if row["band"] else None
    return {
        "threshold": threshold,
        "threshold_source": f"equal error rates on {table} ({how})",
        **(
            {
                "uncertain_band": band,
                "uncertain_band_source": f"the least sure {100 - 100 * share:.0f}% of {table} "
                f"left unanswered (accuracy on the rest {100 * row['accuracy']:.2f}%)",
            }
            if band
            else {}
        ),
    }


def average_checkpoints(
    run_dir: str | Path, info: "RunRecord", epochs: Sequence[int]
) -> "keras.Model":
    """One model whose weights are the mean of a run's epoch_NNN.keras checkpoints.

    Checkpoints of one phase of one run start from the same weights and stay in one basin, so
    their mean is a model too (a "model soup"); it is usually a little better than any one of
    them. Measured on the face model: the mean of epochs 10, 11, 13 and 14 scored 95.48% on
    held-out UTKFace adults against 94.58% for the best epoch alone (CHANGELOG.md, 2026-11-23).
    Epochs of different phases (head only, then fine-tuning) are refused.
    """
    epochs = sorted(set(epochs))
    checkpoints = [Path(run_dir) / f"epoch_{epoch:03d}.keras" for epoch in epochs]
    for path in checkpoints:
        if not path.is_file():
            raise UserError(f"{path}: no such checkpoint (was the run trained with --keep?)")
    # run.json's phases are in order, each ending at its last_epoch
    phase_of = {
        e: next((p["name"] for p in info.phases or [] if e <= p["last_epoch"]), "no phase")
        for e in epochs
    }
    if len(set(phase_of.values())) > 1:
        named = ", ".join(f"{e} ({phase})" for e, phase in phase_of.items())
        raise UserError(f"{run_dir}: epochs {named} are not all from one training phase")
    averaged, _ = load_trained(checkpoints[0])
    total = [w.astype("float64") for w in averaged.get_weights()]
    for path in checkpoints[1:]:
        model, _ = load_trained(path)
        weights = model.get_weights()
        if [w.shape for w in weights] != [w.shape for w in total]:
            raise UserError(f"{path}: not the same network as {checkpoints[0].name}")
        total = [t + w for t, w in zip(total, weights)]
    averaged.set_weights([(t / len(checkpoints)).astype("float32") for t in total])
    return averaged
