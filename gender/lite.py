"""The fast path: run an exported .tflite model with the LiteRT interpreter, without TensorFlow.

`import tensorflow` alone takes seconds; `ai_edge_litert` loads a small model in a fraction of a
second, and its XNNPACK kernels are faster than Keras predict on a few CPU cores. Nothing here
(nor in the modules it imports) may import TensorFlow or Keras: a test checks it.
"""

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gender import UserError
from gender.config import read_info_file, read_run_info
from gender.console import command, filtered_stderr
from gender.runs import model_info_name

if TYPE_CHECKING:
    from gender.config import RunRecord

THREADS = min(4, os.cpu_count() or 1)
# Images per interpreter call, whatever batch the caller asks for: small batches keep XNNPACK's
# working set in cache. MobileNetV2 128x128, 2 threads on 2 cores: 559 images/s at 8 per call,
# 462 at 64, 423 at 128.
INVOKE_BATCH = 8
# The int8 backend answers again with the float32 export where int8's P(woman) lies this close to
# the decision threshold. Bundled models, int8 against float32 on their held-out images: median
# difference 0.001-0.004, 99th percentile 0.05-0.19, largest 0.45; int8 alone changed 1-2% of the
# answers (24 of 2,400 BFW faces, 35 of 1,929 pedestrians), with this re-check none, for 1.1-5.7%
# of the faces and 18% of the pedestrians run twice.
RECHECK_MARGIN = 0.3


def available() -> bool:
    """True when the LiteRT interpreter can be imported."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def lite_files(weights: str | Path, int8: bool = False) -> tuple[Path, Path] | None:
    """The (.tflite, .export.json) pair exported beside `weights` (same stem), or None.

    face.keras -> face.tflite + face.export.json; a run folder -> its best.tflite. int8: the
    full-integer export instead (face.int8.tflite), with the same JSON.
    """
    path = Path(weights)
    if path.is_dir():
        path = path / "best.keras"
    if path.suffix == ".tflite":
        stem = path.with_suffix("")
        stem = stem.with_name(stem.name.removesuffix(".int8"))
    else:
        stem = path.with_name(path.name.removesuffix(".weights.h5").removesuffix(".keras"))
    suffix = ".int8.tflite" if int8 or path.name.endswith(".int8.tflite") else ".tflite"
    tflite, meta = stem.with_name(stem.name + suffix), stem.with_name(stem.name + ".export.json")
    if tflite.is_file() and meta.is_file():
        return tflite, meta
    return None


class LiteModel:
    """A .tflite gender model: `predict(images)` like Keras, (N, H, W, 3) 0..255 -> (N, 1).

    Args:
        path: the .tflite file.
        info: its export JSON (model name, image_size, class_names).
        threads: CPU threads for the interpreter (XNNPACK).
    """

    def __init__(self, path: str | Path, info: "RunRecord", threads: int = THREADS) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.info = info
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        except (ValueError, RuntimeError) as err:
            raise UserError(f"{path}: not a loadable TFLite model ({err})") from None
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0]["shape"]) != 4:
            raise UserError(
                f"{path}: {len(inputs)} inputs, {len(outputs)} outputs; expected one image "
                "in (B, H, W, 3) and one P(woman) out"
            )
        (self._input,), (self._output,) = inputs, outputs
        self.input_shape = (None, *self._input["shape"][1:])
        self._batch = 0

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            shape = [batch, *self.input_shape[1:]]
            self.interpreter.resize_tensor_input(self._input["index"], shape)
            if self._batch == 0:  # LiteRT's banner comes with the first allocation only
                with without_delegate_banner():
                    self.interpreter.allocate_tensors()
            else:
                self.interpreter.allocate_tensors()
            self._batch = batch

    def predict(self, images: np.ndarray, batch_size: int = 64, verbose: int = 0) -> np.ndarray:
        """P(woman) as (N, 1) float32 for (N, H, W, 3) images (uint8 or float, 0..255)."""
        images = np.asarray(images)
        outputs = []
        batch_size = min(batch_size, INVOKE_BATCH)
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].astype(np.float32)
            self._resize(len(batch))
            self.interpreter.set_tensor(self._input["index"], batch)
            self.interpreter.invoke()
            outputs.append(self.interpreter.get_tensor(self._output["index"]).copy())
        return np.concatenate(outputs) if outputs else np.zeros((0, 1), np.float32)


def load_lite(
    weights: str | Path, threads: int = THREADS, int8: bool = False
) -> tuple["LiteModel", dict]:
    """Load the .tflite export of `weights` (or a .tflite file) with its JSON.

    Args:
        int8: the full-integer export (.int8.tflite) instead of the float32 one.

    Returns:
        (model, info) as `gender.predictor.load_trained` returns them, model being a LiteModel.

    Raises:
        UserError: no export beside the weights, or a bad export.
    """
    found = lite_files(weights, int8)
    if found is None:
        kind = ".int8.tflite" if int8 else ".tflite"
        raise UserError(
            f"{weights}: no {kind} and .export.json beside it; create them with "
            f"{command('train')} export WEIGHTS"
            + (" (int8 needs images to calibrate on: --calibration DATA)" if int8 else "")
        )
    tflite, meta = found

    info = read_info_file(meta)  # every field checked, one line naming the file and field
    if info.task is None:
        # exports written before the JSON carried the task: the run's own info file knows it,
        # and without it a pedestrian model would be taken for a face model (faces searched for)
        info.task = export_task(meta)
    model = LiteModel(tflite, info, threads)
    if list(model.input_shape[1:3]) != list(info.image_size):
        raise UserError(
            f"{tflite}: input is {model.input_shape[1:3]} but {meta.name} says {info.image_size}"
        )
    return model, info


def export_task(meta: Path) -> str:
    """The task of an export whose JSON does not name it: from the info file of the weights it
    was exported from (`<stem>.json` in weights/pretrained/, else the run folder's run.json);
    'face' when neither says."""
    weights = meta.with_name(meta.name.removesuffix(".export.json") + ".keras")
    return read_run_info(meta.parent, model_info_name(weights)).task_name


def without_delegate_banner() -> contextlib.AbstractContextManager:
    """Drop LiteRT's "INFO: Created ... XNNPACK delegate" line, which C++ writes to fd 2;
    anything else written meanwhile (a real warning or error) is passed on to stderr."""
    return filtered_stderr(lambda line: "XNNPACK delegate" in line)
