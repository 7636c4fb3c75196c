"""One way to use a trained model: `Predictor.load(weights)`, then methods that return values.

A Predictor owns three things that used to be picked in several places:
- the backend: the .keras model under Keras, or its .tflite export under LiteRT (`gender.lite`;
  float32, or int8 with float32 answering again near the threshold, `Predictor.classify`),
  both behind `Backend.predict(images, batch_size=...)` -> (N, 1) P(woman);
- the run info (run.json or `<stem>.json` beside the weights, or the export's JSON): input size,
  model name and task;
- the face detector: the LiteRT networks when the backend is LiteRT, the `mtcnn` package when
  the model runs under Keras anyway (`gender.faces` falls back to the package when LiteRT or the
  detector files are missing).

Nothing here prints or writes files (except `gender.console`'s warnings and progress count on
stderr): the CLIs and `gender.output` turn the dataclasses into text, CSV and pictures.
Importing this module does not import TensorFlow: with a .tflite export beside the weights, a
prediction never pays TensorFlow's start-up time.
"""

import json
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlparse

import numpy as np

from gender import CLASS_NAMES, UserError, lite
from gender.config import RunRecord, read_run_info
from gender.console import Progress, command
from gender.data import Samples, decode_images
from gender.explain import explain_image
from gender.faces import CropSummary, Face, face_crops, largest_faces, whole_image_views
from gender.images import read_image, resize
from gender.metrics import THRESHOLD
from gender.models import create_model
from gender.models.ensemble import members as ensemble_members
from gender.runs import model_info_name

if TYPE_CHECKING:
    import keras

# The bundled models are package data, found through importlib.resources so that an installed copy
# (a wheel in site-packages) finds them where a checkout does; weights/pretrained links here.
PRETRAINED_DIR = Path(str(resources.files("gender").joinpath("pretrained")))
BACKEND_NAMES = {"int8": "int8", "lite": "float32", "keras": "keras"}  # as the user reads them
CHUNK = 512  # images decoded at a time: bounded memory on folders of any size
FIRST_CHUNK = 64


class Backend(Protocol):
    """What a Predictor runs: a Keras model or a `gender.lite.LiteModel`."""

    def predict(self, images: np.ndarray, batch_size: int = 64, verbose: int = 0) -> np.ndarray:
        """(N, H, W, 3) RGB 0..255 -> (N, 1) P(woman)."""
        ...


def predicted_class(p_woman: float, threshold: float = THRESHOLD) -> tuple[str, float]:
    """The predicted class (woman when P(woman) >= `threshold`) and that class's probability."""
    is_woman = p_woman >= threshold
    return CLASS_NAMES[int(is_woman)], p_woman if is_woman else 1 - p_woman


@dataclass(frozen=True)
class FaceResult:
    """One face found in a photo (or the whole image, undetected) and its P(woman)."""

    face: Face
    p_woman: float
    threshold: float = THRESHOLD  # the model's decision threshold (Predictor.threshold)

    @property
    def label(self) -> str:
        return predicted_class(self.p_woman, self.threshold)[0]

    @property
    def probability(self) -> float:
        """The probability of `label`."""
        return predicted_class(self.p_woman, self.threshold)[1]


@dataclass
class PhotoResult:
    """Every face of one photo, largest first; no faces when none was found."""

    path: str
    rgb: np.ndarray | None  # the decoded photo, for pictures drawn over it (None once dropped)
    faces: list[FaceResult]


@dataclass
class FolderResult:
    """P(woman) for the readable images of a set, in order; the unreadable ones are left out."""

    samples: Samples  # the images kept, with their labels (zeros when unknown)
    p_woman: np.ndarray  # (N,) float
    skipped: int  # unreadable images (each reported as a warning)
    has_face: np.ndarray | None = None  # (N,) bool with detection, else None
    crops: CropSummary | None = None  # detection counts with detection, else None
    threshold: float = THRESHOLD  # the model's decision threshold (Predictor.threshold)


def default_weights(task: str) -> Path:
    """The bundled model for `task` (weights/pretrained/<task>.keras)."""
    path = PRETRAINED_DIR / f"{task}.keras"
    # an installed copy carries each bundled model as its int8 LiteRT export alone
    if not path.is_file() and not lite.lite_files(path, int8=True):
        raise UserError(
            f"no weights given and no bundled model at {path}; pass a WEIGHTS file "
            f"(a run folder or its best.keras from {command('train')})"
        )
    return path


def is_bundled_name(name: str) -> bool:
    """Whether `name` is a bundled model's name: a bare stem with a record in weights/pretrained/
    (its .keras or, in an installed copy, only its int8 export beside the record)."""
    if not name or Path(name).name != name or Path(name).suffix:
        return False
    return (PRETRAINED_DIR / f"{name}.json").is_file()


def resolve_weights(weights: str | Path) -> Path:
    """A weights argument as a file: a run folder means its best.keras; a bundled model's name
    (`face`, `face-fast`, `pedestrian`: a file stem in weights/pretrained/) means that model."""
    path = Path(weights)
    if not path.exists() and is_bundled_name(str(weights)):
        path = PRETRAINED_DIR / f"{weights}.keras"
    if path.is_dir():
        for name in ("best.keras", "last.keras"):
            if (path / name).is_file():
                return path / name
        raise UserError(f"{path}: folder holds no best.keras or last.keras")
    if not path.exists() and not (lite.lite_files(path, int8=True) or lite.lite_files(path)):
        # (a model whose .keras is absent but its LiteRT export is there, as the installed
        # package carries the bundled models, still resolves: load_backend decides)
        raise UserError(f"{path}: weights file not found")
    return path


def lite_only_message(path: Path, backend: str = "keras") -> str:
    """The one line for a model whose .keras file is absent but its int8 LiteRT export is here
    (an installed bundled model), with steps the user can take."""
    if backend == "lite":  # the float32 export did not fit in the wheel either
        return (
            f"{path.with_suffix('.tflite')}: not installed (an installed copy carries this model "
            "as its int8 LiteRT file only): leave --backend out, or give --backend int8"
        )
    clone = clone_copy(path)
    where = (
        f"pass --weights {clone}"
        if clone
        else f"pass --weights with weights/pretrained/{path.name} from a clone of the source "
        "repository (the bundled .keras files are in the clone, not in the package)"
    )
    return (
        f"{path}: not installed (an installed copy carries this model as its int8 LiteRT file "
        f"only); --backend keras, --explain, adapt and fine-tuning need the Keras model: {where}"
    )


def clone_copy(path: Path) -> Path | None:
    """The same bundled file in the checkout this package was installed from, when pip recorded
    one (`pip install .` writes its folder in direct_url.json) and the file is still there."""
    from importlib import metadata  # loads the email package: ~10 ms every prediction would pay

    try:
        text = metadata.distribution("gender-classifier").read_text("direct_url.json")
        url = urlparse(json.loads(text or "{}").get("url", ""))
    except (metadata.PackageNotFoundError, ValueError, AttributeError):
        return None
    if url.scheme != "file":
        return None
    candidate = Path(unquote(url.path)) / "weights" / "pretrained" / path.name
    return candidate if candidate.is_file() else None


def load_trained(weights: str | Path) -> tuple["keras.Model", RunRecord]:
    """Load a model saved by the trainer with Keras.

    Accepts a .keras file, a run folder, or a .weights.h5 file with run.json beside it.

    Returns:
        (model, info): info is the run's record (run.json), with at least its model and
        image size (from the model itself when no JSON is beside it).
    """
    path = resolve_weights(weights)
    if not path.exists():  # resolved through its LiteRT export alone
        raise UserError(lite_only_message(path))
    info = read_run_info(path.parent, model_info_name(path))
    if path.name.endswith(".weights.h5"):
        model = _build_and_load_weights(path, info)
    elif path.suffix == ".keras":
        model = open_keras(path, compile=False)
    else:
        raise UserError(f"{path}: expected a .keras model (or .weights.h5 with run.json)")
    check_gender_model(path, model)
    input_size = tuple(model.input_shape[1:3])
    if info.image_size and tuple(info.image_size) != input_size:
        raise UserError(
            f"{path}: model input is {input_size} but run.json says {tuple(info.image_size)}"
        )
    info.image_size = info.image_size or list(input_size)
    info.model = info.model or model.name
    info.class_names = info.class_names or list(CLASS_NAMES)
    return model, info


def open_keras(path: str | Path, compile: bool = True) -> "keras.Model":
    """keras.saving.load_model(path) with every failure as one UserError line.

    A truncated file (an interrupted copy or save) is called corrupt, where Keras would say
    "File not found"; a Lambda layer (code inside the file) gets a complete one-line refusal.

    Args:
        compile: also restore the optimizer state (resuming a run); False for prediction.
    """
    import keras

    import gender.models.layers  # noqa: F401  registers the custom layers before loading

    if not zipfile.is_zipfile(path):
        raise UserError(
            f"{path}: corrupt or not a Keras model file (a .keras file is a zip archive; "
            "truncated by an interrupted save or copy?)"
        )
    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as err:  # Keras raises many types for a bad file; all mean the same here
        text = " ".join(str(err).split())
        if "Lambda" in text or "safe_mode" in text:
            raise UserError(
                f"{path}: refused: it holds a Lambda layer, i.e. Python code that would run on "
                "loading (Keras safe_mode); only models built by this toolkit load"
            ) from None
        reason = text.split(". ")[0] if text else type(err).__name__
        raise UserError(f"{path}: not a loadable Keras model ({reason})") from None


def check_gender_model(path: str | Path, model: "keras.Model") -> None:
    """Refuse a model that is not one image in, one sigmoid P(woman) out (UserError)."""
    import keras

    if len(model.inputs) != 1:
        raise UserError(f"{path}: the model has {len(model.inputs)} inputs; expected one image")
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[3] != 3:
        raise UserError(f"{path}: model input {shape[1:]} is not an RGB image (H, W, 3)")
    if shape[1] is None or shape[2] is None:
        raise UserError(f"{path}: model input size is not fixed ({shape[1:]}); expected H, W, 3")
    if len(model.outputs) != 1 or tuple(model.output_shape) != (None, 1):
        raise UserError(
            f"{path}: not a gender model (output shape {model.output_shape}, "
            "expected one P(woman) unit)"
        )
    for network in ensemble_members(model):  # an average: each network's output
        last = network.layers[-1]
        while isinstance(last, keras.Model) and last.layers:  # a nested model ending the chain
            last = last.layers[-1]
        if getattr(last, "activation", None) is not keras.activations.sigmoid:
            name = getattr(getattr(last, "activation", None), "__name__", type(last).__name__)
            raise UserError(
                f"{path}: the output is not a probability (last layer {last.name!r} ends with "
                f"{name}, expected sigmoid)"
            )


def _build_and_load_weights(path: Path, info: RunRecord):
    if not info.model:
        raise UserError(f"{path}: a .weights.h5 file needs the run.json of its run beside it")
    model = create_model(info.model, image_size=info.image_size)
    try:
        model.load_weights(path)
    except Exception as err:
        reason = str(err).strip().splitlines()[0][:120]
        raise UserError(
            f"{path}: weights do not fit model {info.model} at {info.image_size} ({reason})"
        ) from None
    return model


def check_image_size(info: RunRecord, requested: Sequence[int] | None) -> tuple[int, int]:
    """The model's input size; a different --image-size is an error, not a silent resize."""
    size = tuple(info.image_size)
    if requested is not None and tuple(requested) != size:
        raise UserError(
            f"--image-size {requested[0]}x{requested[1]}: this model was trained at "
            f"{size[0]}x{size[1]}; leave --image-size out to use it"
        )
    return size


def load_backend(
    weights: str | Path, backend: str = "auto", threads: int | None = None
) -> tuple[Backend, RunRecord, str]:
    """(model, info, backend name) for prediction.

    Args:
        backend: "lite" runs the .tflite export beside the weights (face.keras -> face.tflite)
            with LiteRT; "int8" its int8 export (face.int8.tflite: ~2x faster), and the float32
            export again on the images int8 puts within `lite.RECHECK_MARGIN` of the threshold
            (`Predictor.classify`), so the answers are float32's; "keras" loads the .keras file
            with TensorFlow; "auto" takes int8 when both exports are there and ai_edge_litert
            is installed, else the float32 export, else Keras.
        threads: LiteRT interpreter threads (default `lite.THREADS`); a process sharing the
            machine with others (one Ray actor per CPU) asks for its own CPUs only.
    """
    path = resolve_weights(weights)
    threads = threads or lite.THREADS
    int8_export, float32_export = lite.lite_files(path, int8=True), lite.lite_files(path)
    # Without the .keras file (an installed bundled model: the wheel's size limit) int8 runs
    # alone, without the float32 re-check; with it, a missing float32 export is a mistake.
    keras_file = path.is_file()
    if backend == "auto" and int8_export and (float32_export or not keras_file):
        backend = "int8" if lite.available() else backend
    if backend in ("keras", "auto") and not keras_file and not float32_export:
        raise UserError(lite_only_message(path))
    if backend == "int8":
        if not lite.available():
            raise UserError("--backend int8 needs the ai-edge-litert package (pip install it)")
        if int8_export and not float32_export and keras_file:
            raise UserError(
                f"{path}: no float32 .tflite beside it; the int8 backend re-checks answers near "
                f"the threshold with it ({command('train')} export {path})"
            )
        model, info = lite.load_lite(path, threads, int8=True)  # no int8 export: its own error
        return model, info, "int8"
    if backend != "keras" and float32_export:
        if lite.available():
            model, info = lite.load_lite(path, threads)
            return model, info, "lite"
        if backend == "lite":
            raise UserError("--backend lite needs the ai-edge-litert package (pip install it)")
    elif backend == "lite":
        if not keras_file:  # nothing to export from: the installed int8-only model
            raise UserError(lite_only_message(path, "lite"))
        raise UserError(
            f"{path}: no .tflite export beside it; run {command('train')} export {path}"
        )
    model, info = load_trained(path)
    return model, info, "keras"


class Predictor:
    """A trained gender model ready to classify crops, photos and folders.

    Build one with `Predictor.load`; the attributes say what was loaded: `model` (the backend),
    `info` (its run info), `backend` ("keras", "lite" or "int8"), `weights` (the file), `size`
    (input height, width), `task` ("face" or "pedestrian"), `min_face` (the smallest face side
    the detector looks for, pixels; None: a tenth of the photo's shorter side, at least 20).
    """

    def __init__(
        self,
        model: Backend,
        info: RunRecord,
        backend: str,
        weights: str | Path,
        size: Sequence[int] | None = None,
        min_face: float | None = None,
        threads: int | None = None,
    ) -> None:
        self.model, self.info, self.backend, self.weights = model, info, backend, Path(weights)
        # smallest face side sought, in pixels; None: a tenth of each photo's shorter side
        self.min_face = min_face
        self.size = check_image_size(info, size)
        self.task = info.task_name
        # P(woman) at or above which the answer is woman: 0.5 unless the bundle chose one on its
        # validation split (gender_train.py bundle --threshold val: equal error rates there).
        self.threshold = info.decision_threshold
        # said beside the threshold wherever it is shown: a stored 0.447 must not read as a bug
        stored = info.threshold is not None
        self.threshold_source = "stored with the model" if stored else "default"
        # Photos are searched with the LiteRT detector when the model runs under LiteRT (no
        # TensorFlow at all); under Keras TensorFlow is loaded anyway and the package runs.
        self.fast_detector = backend in ("lite", "int8")
        self._float32 = None  # the int8 backend's float32 export, loaded at its first re-check
        self.threads = threads or lite.THREADS  # LiteRT threads, for that export too
        self.recheck = backend == "int8" and lite.lite_files(weights) is not None

    @classmethod
    def load(
        cls,
        weights: str | Path | None = None,
        task: str | None = None,
        backend: str = "auto",
        image_size: Sequence[int] | None = None,
        min_face: float | None = None,
        threads: int | None = None,
    ) -> "Predictor":
        """From a .keras file, a run folder, or (weights None) the bundled model for `task`.

        Args:
            task: "face" or "pedestrian": the bundled model to load without weights (default
                face); with weights, a model of the other task is an error.
            backend: "auto", "lite", "int8" or "keras" (see `load_backend`).
            image_size: (height, width) the caller expects; a different model size is an error.
            min_face: the smallest face side to look for in photos, in pixels (group photos
                with small faces); None: a tenth of each photo's shorter side, at least 20.
            threads: LiteRT interpreter threads (default `lite.THREADS`).
        """
        path = resolve_weights(weights or default_weights(task or "face"))
        model, info, name = load_backend(path, backend, threads)
        if task and info.task_name != task:
            raise UserError(
                f"--task {task}: {path} is a {info.task_name} model (its "
                f"{'run info' if name == 'keras' else 'export JSON'} says so); leave --task out "
                f"or give a {task} model"
            )
        predictor = cls(model, info, name, path, image_size, min_face, threads)
        predictor.check_finite()
        return predictor

    def check_finite(self) -> None:
        """Refuse a model whose answers are nan or infinite (weights ruined by a training that
        diverged): it would print 'man (probability nan)' for every image."""
        rng = np.random.default_rng(0)
        probe = np.stack(  # a mid-grey image and a noisy one, 0..255 like real input
            [np.full((*self.size, 3), 128.0), rng.uniform(0, 255, (*self.size, 3))]
        ).astype(np.float32)
        outputs = np.asarray(self.model.predict(probe, batch_size=2, verbose=0), dtype=float)
        if not np.all(np.isfinite(outputs)):
            raise UserError(
                f"{self.weights}: the model answers nan or infinity (its weights are broken, "
                "e.g. by a training whose loss became nan); use another checkpoint"
            )

    def set_threshold(self, threshold: float, source: str = "--threshold") -> None:
        """Decide at `threshold` instead of the model's own (before predicting: the int8
        backend re-checks the answers near it)."""
        self.threshold, self.threshold_source = float(threshold), source

    @property
    def model_name(self) -> str:
        """The model in a few words: 'bundled face model' ('bundled face-fast model' for another
        bundled name than the task's), or the weights file as given."""
        if self.weights.parent.resolve() == PRETRAINED_DIR.resolve():
            name = self.weights.name.split(".")[0]
            return f"bundled {self.task if name == self.task else name} model"
        return str(self.weights)

    @property
    def backend_name(self) -> str:
        """What computes the answers: int8 (LiteRT, float32 again near the threshold when that
        export is there), float32 (LiteRT) or keras (TensorFlow)."""
        return BACKEND_NAMES[self.backend]

    def describe(self) -> str:
        """Model, threshold and backend in one phrase, for every answer line and report."""
        return (
            f"{self.model_name}, threshold {self.threshold:.3f} ({self.threshold_source}), "
            f"backend {self.backend_name}"
        )

    def classify(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """P(woman) (N,) float for (N, H, W, 3) RGB images of the model's size."""
        if len(images) == 0:
            return np.zeros(0)
        p_woman = self.model.predict(images, batch_size=batch_size, verbose=0).ravel()
        p_woman = p_woman.astype(float)
        if self.recheck:
            # int8 is ~2x faster and close: where it is near the threshold, where its error
            # could change the answer, float32 answers instead (a few % of the images)
            near = np.flatnonzero(np.abs(p_woman - self.threshold) < lite.RECHECK_MARGIN)
            if len(near):
                if self._float32 is None:
                    self._float32 = lite.load_lite(self.weights, self.threads)[0]
                p_woman[near] = self._float32.predict(images[near], batch_size).ravel()
        return p_woman

    def classify_views(self, views: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """P(woman) (N,) for N images' views, each (V, H, W, 3) with its own V (a face has
        four, an image without one two): the mean over each image's views."""
        counts = np.array([len(image_views) for image_views in views])
        p_woman = self.classify(np.concatenate(views), batch_size)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return np.add.reduceat(p_woman, starts) / counts

    def faces(self, rgb: np.ndarray, batch_size: int = 64) -> list[FaceResult]:
        """Every face in a photo with its P(woman) (over `face_views`), largest first; [] when
        there is none."""
        crops = face_crops(
            rgb, self.size, fast=self.fast_detector, min_face=self.min_face, views=True
        )
        if not crops:
            return []
        p_woman = self.classify_views([views for _, views in crops], batch_size)
        return [FaceResult(face, float(p), self.threshold) for (face, _), p in zip(crops, p_woman)]

    def photo(self, path: str | Path, batch_size: int = 64) -> PhotoResult:
        """Read one photo and classify its faces (a BadImageError if it cannot be read)."""
        rgb = read_image(path)
        return PhotoResult(str(path), rgb, self.faces(rgb, batch_size))

    def require_face_model(self) -> None:
        """--detect-faces is for face models: a pedestrian model sees whole bodies."""
        if self.task != "face":
            raise UserError("--detect-faces: this is a pedestrian model (see its run.json)")

    def wants_detection(self, inputs: Sequence, detect_faces: bool, no_detect: bool) -> bool:
        """Whether inputs are searched for faces: photos of a face model by default; folders
        are usually crops, so only on request; never for a pedestrian model."""
        if no_detect:
            return False
        if detect_faces:
            self.require_face_model()
        if self.task != "face":
            return False
        return detect_faces or not any(Path(item).is_dir() for item in inputs)

    def folder(
        self,
        samples: Samples,
        batch_size: int = 64,
        skip_bad: bool = True,
        detect: bool = False,
        progress: bool = True,
    ) -> FolderResult:
        """P(woman) for every readable image of `samples`.

        Args:
            skip_bad: a bad image is reported and skipped; False makes it an error.
            detect: classify each image's largest face (an image without one: the whole
                image), with `has_face` and `crops` filled in.
            progress: a set of several chunks (more than CHUNK images) says on stderr how far
                it is (`gender.console.Progress`); False keeps stderr quiet.
        """
        if detect:
            self.require_face_model()
            return self._classify_faces(samples, batch_size)
        p_woman, kept = self._classify_chunks(samples, batch_size, skip_bad, progress)
        return FolderResult(kept, p_woman, len(samples) - len(kept), threshold=self.threshold)

    def _classify_faces(self, samples: Samples, batch_size: int) -> FolderResult:
        """The largest face of each image (else the whole image), classified over its views a
        batch at a time while worker threads decode and detect the next images
        (`largest_faces`)."""
        summary = CropSummary()
        kept, has_face, p_woman, batch = [], [], [], []
        faces = largest_faces(samples.paths, self.size, summary, min_face=self.min_face, views=True)
        for i, rgb, views in faces:
            batch.append(views if views is not None else whole_image_views(resize(rgb, self.size)))
            kept.append(i)
            has_face.append(views is not None)
            if len(batch) == batch_size:
                p_woman.append(self.classify_views(batch, batch_size))
                batch = []
        if batch:
            p_woman.append(self.classify_views(batch, batch_size))
        if not kept:
            raise UserError("no readable images")
        return FolderResult(
            samples.subset(kept),
            np.concatenate(p_woman),
            len(samples) - len(kept),
            np.array(has_face, bool),
            summary,
            self.threshold,
        )

    def _classify_chunks(
        self, samples: Samples, batch_size: int, skip_bad: bool, progress: bool
    ) -> tuple[np.ndarray, Samples]:
        probabilities, kept_paths, kept_labels = [], [], []
        # A small first chunk: the model starts after 64 images are decoded, not 512.
        starts = [s for s in (0, *range(FIRST_CHUNK, len(samples), CHUNK)) if s < len(samples)]
        bounds = [*starts[1:], len(samples)]
        # one chunk is a few seconds at most; longer runs say how far they are (stderr)
        several = progress and len(samples) > CHUNK
        counter = Progress(len(samples), "predicting") if several else None

        def decode(k):
            chunk = samples.subset(range(starts[k], bounds[k]))
            return decode_images(chunk, self.size, skip_bad=skip_bad)

        # Decode chunk k+1 while the model runs on chunk k: OpenCV and the model release the GIL.
        with ThreadPoolExecutor(1) as ahead:
            pending = ahead.submit(decode, 0) if starts else None
            for k in range(len(starts)):
                try:
                    images, chunk = pending.result()
                except UserError:
                    if not skip_bad:
                        raise
                    images = None  # every image of this chunk was bad (each already reported)
                pending = ahead.submit(decode, k + 1) if k + 1 < len(starts) else None
                if images is None:
                    continue
                probabilities.append(self.classify(images, batch_size))
                kept_paths += chunk.paths
                kept_labels.append(chunk.labels)
                if counter:
                    counter.update(bounds[k])
        if counter:
            counter.done()
        if not kept_paths:
            raise UserError("none of the images could be read")
        kept = Samples(kept_paths, np.concatenate(kept_labels))
        return np.concatenate(probabilities).astype(float), kept

    def explain(self, rgb: np.ndarray, faces: list[Face] | None = None) -> np.ndarray:
        """A Grad-CAM heatmap of the predicted class drawn over the photo (Keras backend only).

        Args:
            faces: compute it on each face crop and draw it back over the face; None: on the
                whole image.
        """
        if self.backend != "keras":
            raise UserError("--explain needs the Keras model (--backend keras)")

        return explain_image(self.model, rgb, self.size, faces)
