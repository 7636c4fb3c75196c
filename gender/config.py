"""Typed training settings: what gender_train.py's flags become, and what run.json keeps.

`TrainConfig` is saved as run.json's "flags" (the same names as the command-line flags, so runs
written before this class existed read back unchanged) and read back by resume, bundle and export.
Keys a run.json lacks take the defaults here; keys this class no longer knows are ignored.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from gender.augment import DEFAULT_AUGMENT

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


def run_config(info: dict) -> TrainConfig:
    """The training config of a run from its run.json dict (old runs included)."""
    flags = dict(info.get("flags", {}))
    flags.setdefault("task", info.get("task") or "face")
    flags.setdefault("model", info.get("model") or TrainConfig.model)
    return TrainConfig.from_dict(flags)


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """`run_config` of the run.json in `run_dir`."""
    from gender.runs import read_run_info

    return run_config(read_run_info(Path(run_dir)))
