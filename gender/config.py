"""Typed training settings and the typed run record: what gender_train.py's flags become, and
what run.json keeps.

`RunRecord` is run.json as a dataclass, and also a bundled model's <task>.json and an export's
.export.json (the same fields, fewer of them). It is read (`read_run_info`, `read_info_file`) and
written (`RunRecord.write`) here and nowhere else, and every field is checked when read
(`check_info`): a damaged or hand-edited file is one line naming the file and the field.
The JSON on disk keeps its format: a field the record has no value for is left out, and keys
it does not know (an export's "int8", a bundle's "bundled_from") are kept as read, in `extra`.

`TrainConfig` is saved as run.json's "flags" (the same names as the command-line flags, so runs
written before this class existed read back unchanged) and read back by resume, bundle and export.
Keys a run.json lacks take the defaults here; keys this class no longer knows are ignored.
"""

import dataclasses
import json
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gender import CLASS_NAMES, TASKS, THRESHOLD, UserError
from gender.atomic import write_text
from gender.augment import DEFAULT_AUGMENT
from gender.images import MAX_IMAGE_SIDE
from gender.models import list_models
from gender.runs import RUN_FILE, field_error, finite_number, whole_number
from gender.tables import json_text

DEFAULT_EPOCHS = 60


@dataclass
class TrainConfig:
    """Everything one training run needs besides the images themselves."""

    # data
    data: list[str] = field(default_factory=list)  # folders, pooled; each split on its own
    val_split: float = 0.2  # validation fraction for a folder without val/
    by_person: str | None = None  # person-id regex (group 1 on the file name), or no grouping
    detect_faces: bool = False  # train on each image's largest aligned face
    augment: str = DEFAULT_AUGMENT  # comma list of gender.augment names, or "none"
    # model
    model: str = "cnn7"
    task: str = "face"  # "face" or "pedestrian", see gender.TASKS
    image_size: str | None = None  # "N" or "HxW" as given; None: the model's own size
    backbone_weights: str = "imagenet"
    trainable_blocks: int | None = None  # None: the model's default
    head_epochs: int = 5
    fine_tune_lr: float = 1e-4
    cache: str = "auto"  # "auto" (frozen-prefix cache) or "off"
    cache_views: int = 2
    # training
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 32
    lr: float | None = None  # None: the model's own rate
    patience: int = 10
    no_class_weights: bool = False
    label_smoothing: float = 0.0  # targets 0/1 become s/2 and 1 - s/2
    balance_groups: str | None = None  # a --groups source: classes weigh equally in each group
    weigh_persons: str | None = None  # person-id regex: every person weighs the same in the loss
    seed: int = 1337
    # run folder
    out: str = "weights"
    keep: int = 3  # newest epoch checkpoints kept besides best and last, 0 = all

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """A config from run.json's "flags" (or any dict): unknown keys ignored, missing ones
        take the defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in values.items() if k in names and v is not None}
        if isinstance(known.get("data"), str):  # runs from before --data took several folders
            known["data"] = [known["data"]]
        # a None that means "the model's default" must stay None, not become the class default
        for name in ("by_person", "image_size", "trainable_blocks", "lr", "balance_groups",
                     "weigh_persons"):  # fmt: skip
            if name in values:
                known[name] = values[name]
        return cls(**known)

    def to_dict(self) -> dict:
        """The JSON-ready dict saved as run.json's "flags"."""
        return dataclasses.asdict(self)


@dataclass
class RunRecord:
    """run.json: what a run (or a bundled or exported model) says of itself.

    Every field may be missing from an older or smaller file (None, or empty): a .keras file
    with no JSON beside it has an empty record, which the loader completes from the model.
    """

    model: str | None = None  # the registered model name
    task: str | None = None  # "face" or "pedestrian"; None in runs older than tasks (face)
    image_size: list[int] | None = None  # [height, width]
    class_names: list[str] | None = None
    flags: dict = field(default_factory=dict)  # TrainConfig.to_dict() as trained (`config`)
    versions: dict | None = None  # {"keras": ..., "tensorflow": ...}
    data: dict | None = None  # images per split and class
    distribute: dict | None = None  # the strategy, replicas, workers
    phases: list[dict] | None = None  # [{name, trainable_blocks, learning_rate, last_epoch}]
    epochs_done: int | None = None  # the commit: the last epoch whose files are all written
    best_epoch: int | None = None
    best_metric: dict | None = None  # {monitored name: its best value}
    finished: bool = False  # training reached its end (all epochs, or early stopping)
    threshold: float | None = None  # P(woman) deciding woman; None: THRESHOLD
    threshold_source: str | None = None
    uncertain_band: list[float] | None = None  # [LOW, HIGH] for --uncertain model
    uncertain_band_source: str | None = None
    adapt: dict | None = None  # an adapt run's own settings (gender.adapt.AdaptConfig)
    adapted_from: dict | None = None  # {weights, task, threshold} of an adapt run's source
    threshold_out_of_fold: float | None = None  # an adapt run's cross-validated threshold
    averaged_models: int | None = None  # an adapt run's final fit and fold models, averaged
    adapt_seconds: float | None = None  # set when an adapt run is complete
    # a bundled average of two networks (gender.models.ensemble): the other one's
    # {weights, model, image_size, threshold}
    averaged_with: dict | None = None
    extra: dict = field(default_factory=dict)  # every other key, kept as read

    @classmethod
    def from_dict(cls, values: object, path: str | Path) -> "RunRecord":
        """The record of a JSON object read from `path`, checked (`check_info`)."""
        values = dict(check_info(values, path))
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        record = cls(**{k: values.pop(k) for k in list(values) if k in known})
        record.flags = dict(record.flags or {})
        record.finished = bool(record.finished)
        record.extra = values
        return record

    def to_dict(self) -> dict:
        """The JSON object: the fields that have a value (finished only when true), then
        `extra`."""
        values = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("extra", "finished", "flags")
        }
        out = {k: v for k, v in values.items() if v is not None}
        if self.flags:
            out["flags"] = self.flags
        if self.finished:
            out["finished"] = True
        return {**out, **self.extra}

    def write(self, run_dir: str | Path, name: str = RUN_FILE) -> None:
        """Write `run_dir/name` (run.json) atomically, keys sorted."""
        write_text(Path(run_dir) / name, json_text(self.to_dict(), sort_keys=True))

    @property
    def decision_threshold(self) -> float:
        """The stored threshold, else the default THRESHOLD (0.5)."""
        return THRESHOLD if self.threshold is None else float(self.threshold)

    @property
    def task_name(self) -> str:
        """'face' or 'pedestrian'; runs that do not say are face models."""
        return self.task or self.flags.get("task") or "face"

    def config(self) -> "TrainConfig":
        """The training config of the run (old runs included): `run_config`."""
        return run_config(self)


def read_run_info(run_dir: str | Path, name: str = RUN_FILE) -> RunRecord:
    """The record in run.json (or another info file `name`) of a run folder; an empty record
    when there is none.

    Every field the toolkit uses is checked here (`check_info`), so a hand-edited or damaged
    file is one line naming the file and the field, never a silent wrong answer downstream.
    """
    path = Path(run_dir) / name
    if not path.is_file():
        return RunRecord()
    return read_info_file(path)


def read_info_file(path: str | Path) -> RunRecord:
    """A model's JSON (run.json, a bundled model's <name>.json, an .export.json), checked."""
    path = Path(path)
    try:
        # NaN and Infinity (not JSON, but Python's reader takes them) reach check_info, which
        # names the field that holds one
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror})") from None
    return RunRecord.from_dict(info, path)


def check_info(info: object, path: str | Path) -> dict:
    """`info` when every field the toolkit reads is of the right type and range.

    The same rules the flags apply: a threshold strictly between 0 and 1, an uncertain band
    LOW < HIGH within 0..1, an image size of two sides from 32 to 1024, a registered model name,
    a known task; training flags of the types and ranges gender_train.py accepts.

    Raises:
        UserError: one line naming the file and the field.
    """

    def bad(field: str, problem: str, value: object) -> UserError:
        return field_error(path, field, problem, value)

    if not isinstance(info, dict):
        raise UserError(f"{path}: expected a JSON object {{...}}, got {type(info).__name__}")
    if "class_names" in info and (
        not isinstance(info["class_names"], list) or tuple(info["class_names"]) != CLASS_NAMES
    ):
        raise bad("class_names", f"must be {json.dumps(list(CLASS_NAMES))}", info["class_names"])
    if "model" in info:
        if info["model"] not in list_models():
            raise bad("model", f"is not a model of this toolkit ({', '.join(list_models())})",
                      info["model"])  # fmt: skip
    if "task" in info and info["task"] not in TASKS:
        raise bad("task", f"must be one of {', '.join(TASKS)}", info["task"])
    if "image_size" in info:
        size = info["image_size"]
        if not (
            isinstance(size, list)
            and len(size) == 2
            and all(whole_number(side) and 32 <= side <= MAX_IMAGE_SIDE for side in size)
        ):
            raise bad("image_size", f"must be [height, width], each 32 to {MAX_IMAGE_SIDE}", size)
    if "threshold" in info:
        value = info["threshold"]
        if not (finite_number(value) and 0 < value < 1):
            raise bad("threshold", "must be a number between 0 and 1 (exclusive)", value)
    if "uncertain_band" in info:
        band = info["uncertain_band"]
        if not (
            isinstance(band, list)
            and len(band) == 2
            and all(finite_number(v) and 0 <= v <= 1 for v in band)
            and band[0] < band[1]
        ):
            raise bad("uncertain_band", "must be [LOW, HIGH] with 0 <= LOW < HIGH <= 1", band)
    for name in ("epochs_done", "best_epoch"):
        value = info.get(name)
        if value is not None and not (whole_number(value) and value >= 0):
            raise bad(name, "must be a whole number of at least 0", value)
    for name in ("threshold_source", "source"):
        if name in info and not isinstance(info[name], str):
            raise bad(name, "must be text", info[name])
    if "phases" in info:
        phases = info["phases"]
        if not (
            isinstance(phases, list)
            and all(
                isinstance(p, dict)
                and isinstance(p.get("name"), str)
                and whole_number(p.get("last_epoch"))
                for p in phases
            )
        ):
            raise bad("phases", "must be a list of {name, last_epoch}", phases)
    if "flags" in info:
        _check_flags(info["flags"], bad)
    return info


# run.json "flags" fields with a range besides their type (the flags' own rules)
_FLAG_RANGES = {
    "epochs": (lambda v: v >= 1, "at least 1"),
    "batch_size": (lambda v: v >= 1, "at least 1"),
    "cache_views": (lambda v: v >= 1, "at least 1"),
    "head_epochs": (lambda v: v >= 0, "at least 0"),
    "patience": (lambda v: v >= 0, "at least 0"),
    "keep": (lambda v: v >= 0, "at least 0"),
    "trainable_blocks": (lambda v: v >= 0, "at least 0"),
    "val_split": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
    "label_smoothing": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
    "lr": (lambda v: v > 0, "above 0"),
    "fine_tune_lr": (lambda v: v > 0, "above 0"),
    "l2sp": (lambda v: v >= 0, "at least 0"),
    "rounds": (lambda v: v >= 0, "at least 0"),
    "pseudo_share": (lambda v: 0 <= v <= 1, "from 0 to 1"),
}


def _check_flags(flags: object, bad: Callable[..., UserError]) -> None:
    """run.json's "flags": each field TrainConfig knows, of its type and range."""
    check_fields(flags, TrainConfig, "flags", bad)


def check_fields(flags: object, settings: type, key: str, bad: Callable[..., UserError]) -> None:
    """Each field of the dataclass `settings` (TrainConfig, adapt's AdaptConfig) found in
    `flags` is of its type (None where optional) and, where _FLAG_RANGES has its name, in its
    range; `bad(field, problem, value)` makes the error (see check_info)."""
    if not isinstance(flags, dict):
        raise bad(key, "must be an object of settings", flags)
    for spec in dataclasses.fields(settings):
        if spec.name not in flags:
            continue
        value, kinds = flags[spec.name], spec.type
        optional = isinstance(kinds, types.UnionType) and type(None) in kinds.__args__
        if value is None and optional:
            continue
        union = kinds.__args__ if isinstance(kinds, types.UnionType) else (kinds,)
        kind = next(k for k in union if k is not type(None))
        if spec.name == "data" and isinstance(value, str):
            continue  # runs from before --data took several folders
        if kind is float:
            ok = finite_number(value)
        elif kind is int:
            ok = whole_number(value)
        elif getattr(kind, "__origin__", None) is list:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise bad(f"{key}.{spec.name}", f"must be {_KIND_WORDS.get(kind, 'a list of text')}",
                      value)  # fmt: skip
        if spec.name in _FLAG_RANGES and not _FLAG_RANGES[spec.name][0](value):
            raise bad(f"{key}.{spec.name}", f"must be {_FLAG_RANGES[spec.name][1]}", value)
    if flags.get("model") is not None:
        if flags["model"] not in list_models():
            raise bad(f"{key}.model", "is not a model of this toolkit", flags["model"])
    if flags.get("task") is not None:
        if flags["task"] not in TASKS:
            raise bad(f"{key}.task", f"must be one of {', '.join(TASKS)}", flags["task"])


_KIND_WORDS = {float: "a finite number", int: "a whole number", str: "text", bool: "true or false"}


def run_config(record: RunRecord) -> TrainConfig:
    """The training config of a run from its record (old runs included)."""
    flags = dict(record.flags)
    flags.setdefault("task", record.task or "face")
    flags.setdefault("model", record.model or TrainConfig.model)
    return TrainConfig.from_dict(flags)


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """`run_config` of the run.json in `run_dir`."""
    return run_config(read_run_info(Path(run_dir)))


def config_from_flags(settings: type, args: object, **values: object) -> object:
    """The dataclass `settings` (TrainConfig, adapt's AdaptConfig) from the parsed flags of the
    same names; `values` override. Each field is read by its name, so a flag that is no setting
    (--verbose, --devices) stays out without a list of exceptions; a setting that has no flag
    (adapt's fixed recipe: batch size, views, ...) keeps its default."""
    names = [f.name for f in dataclasses.fields(settings)]
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return settings(**{**given, **values})
