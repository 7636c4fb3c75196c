"""Adapt a trained model to a new setting (a camera, a kind of photo) from a few hundred labels.

`adapt(AdaptConfig(data=DIR))` starts from a trained model (default: the bundled model of the
task), fine-tunes it on DIR/{man,woman}/ and writes a normal run folder (best.keras, last.keras,
history.csv, run.json with `adapted_from`) that prediction, evaluation, export and bundle take.

The recipe, measured on held-out camera networks and on UTK children (docs/adapt.md):
- the top backbone blocks train (BatchNorm stays in inference mode, as bundled), the frozen
  bottom runs once per image and view (the frozen-prefix cache), so 250 images adapt in minutes;
- Adam at 1e-4 on a cosine schedule, a fixed number of epochs: a few dozen images give no
  validation split worth stopping on;
- replay: as many images of the source's own training folders as new ones (at most 250) train
  alongside, when those folders are here (a checkout with the data); this, not L2-SP, is what
  kept the old cameras' accuracy in the bench. An installed copy without them adapts without
  (and says so); L2-SP, a pull of every trained weight toward its starting value, stays on but
  barely moved the forgetting at any strength tried;
- a decision threshold that equalises the two error rates on the new setting, chosen on
  cross-validated (out-of-fold) probabilities and shrunk toward the source model's threshold by
  how few images there are.
"""

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import gender.models as models
from gender import CLASS_NAMES, TASKS, UserError
from gender.atomic import atomic_path, check_outputs
from gender.augment import parse_augment
from gender.config import RunRecord, check_fields, read_run_info
from gender.console import command
from gender.data import (
    Samples,
    class_folders,
    concat_samples,
    decode_images,
    expand_inputs,
    list_folder,
    load_samples,
    person_ids,
    read_truth_table,
)
from gender.faces import decode_face_crops
from gender.finetune import balanced_class_weight, fit, prepare_inputs
from gender.metrics import equal_error_threshold
from gender.predictor import (
    check_gender_model,
    default_weights,
    load_trained,
    open_keras,
    resolve_weights,
)
from gender.runs import RUN_FILE, field_error, link_over, new_run_dir, read_history, reconcile_run
from gender.training import decode_split

if TYPE_CHECKING:
    from gender.data import Samples

# What adapt starts from without --weights: the bundled model of the task, or for faces the
# bundled fast network, since the bundled face model averages two networks and adapt fine-tunes one.
ADAPT_DEFAULTS = {"face": "face-fast", "pedestrian": "pedestrian"}
MIN_IMAGES = 10  # fewer cannot be split into folds that each hold both classes
MIN_PER_CLASS = 4
ADAPT_AUGMENT = "flip,shift,zoom,brightness,contrast"
REPLAY_AUTO = "auto"


@dataclass
class AdaptConfig:
    """What `adapt` needs besides the images; saved in run.json as "adapt"."""

    data: str  # DIR/{man,woman}/ of the new setting
    weights: str | None = None  # a .keras model or run folder; None: ADAPT_DEFAULTS of `task`
    task: str | None = None  # None: the task of `weights` (face when no weights are given)
    out: str = "weights"
    epochs: int = 12
    lr: float = 1e-4  # 3e-4 collapsed a whole-model fine-tune (docs/adapt.md)
    trainable_blocks: int = 12  # top backbone blocks that train (the bundled recipes' 12-13)
    batch_size: int = 32
    cache_views: int = 4  # cached versions of each image: original, mirror, then `augment` draws
    augment: str = ADAPT_AUGMENT
    l2sp: float = 0.01  # strength of the pull toward the start weights (0: none)
    # "auto": the source run's training folders (run.json flags.data) when present here; or a
    # DIR/{man,woman}/ (or DIR/{train,val}/...) of the old setting; None: no replay
    replay: str | None = REPLAY_AUTO
    replay_images: int = 250  # at most this many replayed images (and no more than new ones)
    folds: int = 3  # cross-validation folds for the threshold (0: the source's threshold)
    prior_images: int = 25  # threshold shrinkage: images per class the source threshold is worth
    by_person: str | None = None  # person-id regex: folds keep each person on one side
    detect_faces: bool = False  # photos: train on each image's largest detected face
    seed: int = 1337
    keep: int = 1  # epoch checkpoints kept (best.keras and last.keras always stay)
    # best.keras: the mean of the final model's weights and the threshold folds' models (all
    # fine-tuned from the same start: a "model soup", Wortsman et al. 2022)
    average_folds: bool = False
    # crops of the new setting without labels (a folder in any layout, or a truth table whose
    # labels are ignored): the final fit self-trains on their confident pseudo-labels
    unlabelled: str | None = None
    rounds: int = 3  # self-training fits before the final one, each on more pseudo-labels
    pseudo_share: float = 0.5  # share of the unlabelled crops pseudo-labelled in the last round

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def renamed(cls, values: dict) -> dict:
        """`values` with the names adapt records written before training and adapt shared
        their setting names ("learning_rate", "views") given their present names."""
        return {RENAMED.get(k, k): v for k, v in values.items()}


# old adapt-record names -> the names training uses for the same settings
RENAMED = {"learning_rate": "lr", "views": "cache_views"}


def shrunk_threshold(fitted: float, source: float, per_class: int, prior_images: int) -> float:
    """The fitted threshold pulled toward the source model's: weight n / (n + prior_images) on
    the fitted one, n the smaller class's image count (a dozen images cannot move it far)."""
    weight = per_class / (per_class + prior_images) if per_class + prior_images else 0.0
    return float(weight * fitted + (1 - weight) * source)


def fold_index(labels: np.ndarray, groups: list[str], folds: int, seed: int) -> np.ndarray:
    """(N,) fold number of each image: groups (people) whole, each class spread over the folds."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), int)
    for label in range(len(CLASS_NAMES)):
        keys = sorted({g for g, y in zip(groups, labels) if y == label})
        rng.shuffle(keys)
        for k, key in enumerate(keys):
            fold[[i for i, g in enumerate(groups) if g == key and labels[i] == label]] = k % folds
    return fold


def source_model(config: AdaptConfig) -> tuple[Path, "object", "RunRecord", str]:
    """(path, model, info, task) of the model to start from; UserError for the wrong task."""

    if config.task is not None and config.task not in TASKS:
        raise UserError(f"--task {config.task}: expected one of {', '.join(TASKS)}")
    path = resolve_weights(config.weights or default_weights(ADAPT_DEFAULTS[config.task or "face"]))
    model, info = load_trained(path)
    if info.averaged_with:  # gender.models.ensemble: two networks, no one set of blocks
        raise UserError(
            f"{path}: averages two networks ({info.model} and "
            f"{info.averaged_with['model']}); adapt fine-tunes one: pass --weights face-fast "
            "(the bundled fast model) or a run folder"
        )
    task = info.task_name
    if config.task is not None and config.task != task:
        raise UserError(
            f"{path}: a {task} model, not a {config.task} one (leave out --task, or give "
            f"--weights of a {config.task} model)"
        )
    if config.detect_faces and task != "face":
        raise UserError("--detect-faces: this is a pedestrian model (see its run.json)")
    return path, model, info, task


def check_samples(samples: "Samples", what: str) -> None:
    """Refuse too few images for a meaningful adaptation (UserError, one line)."""
    counts = samples.counts()
    if len(samples) < MIN_IMAGES or min(counts.values()) < MIN_PER_CLASS:
        raise UserError(
            f"{what}: {len(samples)} images ({', '.join(f'{k} {v}' for k, v in counts.items())}); "
            f"adapting needs at least {MIN_IMAGES}, {MIN_PER_CLASS} of each class (a few hundred "
            "are best)"
        )


def replay_folders(config: AdaptConfig, source_info: "RunRecord") -> list[str]:
    """The folders of old-setting images to replay: --replay, or with "auto" the source run's
    own training folders that exist here (none for an installed copy, or a bundled model whose
    data was never fetched)."""
    if not config.replay:
        return []
    if config.replay != REPLAY_AUTO:
        return [config.replay]
    return [f for f in source_info.flags.get("data", []) if Path(f).is_dir()]


def _replay_samples(config: AdaptConfig, folders: list[str], new_count: int):
    """Up to min(replay_images, new_count) images of `folders` (their train/ part when they
    have one), half of each class; None when there is nothing to replay."""

    if not folders or config.replay_images <= 0:
        return None
    parts = []
    for folder in folders:
        splits = load_samples(folder)
        parts.append(splits["train"] if "train" in splits else next(iter(splits.values())))
    samples = concat_samples(parts)
    rng = np.random.default_rng(config.seed + 1)
    per_class = max(1, min(config.replay_images, new_count) // 2)
    index = []
    for label in range(len(CLASS_NAMES)):
        members = np.flatnonzero(samples.labels == label)
        index += sorted(rng.choice(members, min(per_class, len(members)), replace=False))
    return samples.subset(np.asarray(index, int))


class L2SP:
    """alpha * ||w - w_start||^2: a Keras weight regularizer pulling toward the start weights
    (Li, Grandvalet and Davoine 2018). Set on variables only while adapting: not saved."""

    def __init__(self, start: np.ndarray, alpha: float) -> None:
        self.start, self.alpha = start, alpha

    def __call__(self, weight):
        import keras

        return self.alpha * keras.ops.sum(keras.ops.square(weight - self.start))


def _set_trainable(model, model_name: str, blocks: int) -> None:
    """The top `blocks` backbone blocks train (BatchNorm frozen); a model without a backbone
    trains whole, with its BatchNorm layers frozen too (inference statistics as bundled)."""
    import keras

    if models.get_entry(model_name).blocks:
        count = min(blocks, len(models.get_entry(model_name).blocks))
        models.set_trainable_blocks(model, model_name, count)
        return
    for layer in model.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)


class _Trainer:
    """The adaptation recipe on one model: its inputs prepared once (the frozen prefix's cached
    views), then fits that each start from the same weights (each fold and the final fit)."""

    def __init__(self, model, model_name: str, config: AdaptConfig, images: np.ndarray) -> None:

        self.model, self.config = model, config
        _set_trainable(model, model_name, config.trainable_blocks)
        names = parse_augment(config.augment)
        self.inputs = prepare_inputs(model, images, names, config.cache_views, config.seed)
        self.fit_model = self.inputs.fit_model
        self.start = [np.array(w) for w in self.fit_model.trainable_weights]
        self.start_all = [np.array(w) for w in model.weights]
        for variable, start in zip(self.fit_model.trainable_weights, self.start):
            variable.regularizer = L2SP(start, config.l2sp) if config.l2sp > 0 else None

    @property
    def cached(self) -> bool:
        return self.inputs.cached

    def trainable_count(self) -> int:
        return int(sum(w.size for w in self.start))

    def fit(
        self,
        index: np.ndarray,
        labels: np.ndarray,
        callbacks=(),
        verbose=0,
        resume_from: "list[np.ndarray] | None" = None,
        initial_epoch: int = 0,
    ) -> None:
        """Train from the start weights on the images `index` (labels of all images); or, to
        resume, from the weights `resume_from` (the whole model's), after `initial_epoch`
        epochs, with the rate where the cosine schedule had brought it (the L2-SP pull is still
        toward the start weights)."""
        import keras

        self.model.set_weights(self.start_all if resume_from is None else resume_from)
        steps = -(-len(index) // self.config.batch_size)
        # cosine to zero: no validation to stop on, so the rate itself ends the training
        rate = keras.optimizers.schedules.CosineDecay(
            self.config.lr, decay_steps=steps * self.config.epochs
        )
        fit(
            self.inputs.rows(index), labels[index], rate=rate, epochs=self.config.epochs,
            batch_size=self.config.batch_size, seed=self.config.seed,
            initial_epoch=initial_epoch, steps_done=initial_epoch * steps,
            class_weight=balanced_class_weight(labels[index]), callbacks=callbacks,
            verbose=verbose,
        )  # fmt: skip

    def predict(self, index: np.ndarray) -> np.ndarray:
        """P(woman) of images `index` (original view) with the current weights."""
        return self.inputs.predict(index)


def resume_adapt(run_dir: str | Path) -> Path:
    """Continue an interrupted `adapt` run: its own recipe (cached views, replay, L2-SP toward
    the source, the cosine rate where it stopped) from its last committed epoch, with the
    threshold it chose before its final fit. Returns the run folder."""

    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    stored = info.adapt
    if isinstance(stored, dict):
        stored = AdaptConfig.renamed(stored)
    fields = {f.name for f in dataclasses.fields(AdaptConfig)}
    path = run_dir / RUN_FILE
    if not isinstance(stored, dict) or not set(stored) <= fields or "data" not in stored:
        raise field_error(path, "adapt", "is not the settings of an adapt run", stored)
    # each setting of the type and range the adapt flags accept
    check_fields(stored, AdaptConfig, "adapt", lambda *why: field_error(path, *why))
    if info.adapt_seconds is not None:
        raise UserError(f"{run_dir}: this adaptation is complete; there is nothing to resume")
    if info.threshold is None:
        raise UserError(
            f"{run_dir}: this adapt run was made before adapt stored its threshold first; "
            f"adapt again ({_adapt_command(stored)})"
        )
    origin = info.adapted_from
    source = origin.get("weights") if isinstance(origin, dict) else None
    if isinstance(source, str):  # the model it started from, as resolved then
        stored = {**stored, "weights": source}
    return adapt(AdaptConfig(**stored), resume=run_dir)


def _adapt_command(stored: dict) -> str:

    return f"{command('train')} adapt --data {stored.get('data')}"


@dataclass
class _Images:
    """The decoded images an adaptation trains on: the new ones first, then any replayed."""

    images: np.ndarray
    samples: "Samples"
    new_count: int
    replay: "Samples | None"
    folders: list[str]  # where the replayed images come from
    unlabelled: int = 0  # images after the labelled ones (new and replayed): no labels

    @property
    def labelled(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return self.samples.labels

    def new_counts(self) -> dict:
        return self.samples.subset(np.arange(self.new_count)).counts()


@dataclass
class _Threshold:
    """The adapted model's decision threshold and how it was chosen."""

    value: float
    source: str  # how it was chosen, in words (run.json's threshold_source)
    out_of_fold: float | None = None  # the equal-error threshold before shrinking
    fold_weights: list = dataclasses.field(default_factory=list)  # with average_folds


def adapt(config: AdaptConfig, resume: Path | None = None) -> Path:
    """Adapt the source model to `config.data` and return the new run folder (or continue the
    interrupted run folder `resume`, see `resume_adapt`)."""

    started = time.perf_counter()
    source_path, model, source_info, task = source_model(config)
    data = _load_images(config, source_info)
    trainer = _Trainer(model, source_info.model, config, data.images)
    _print_plan(config, source_path, task, source_info, data, trainer)
    source_threshold = source_info.decision_threshold
    threshold = _choose_threshold(config, trainer, data, source_threshold, resume is not None)
    if resume is not None:
        return _finish(config, trainer, data, Path(resume), threshold.fold_weights, started,
                       resumed=True)  # fmt: skip
    run_dir = new_run_dir(config.out, source_info.model)
    info = _run_info(config, source_path, source_info, task, data, threshold)
    RunRecord.from_dict(info, run_dir / "run.json").write(run_dir)
    return _finish(config, trainer, data, run_dir, threshold.fold_weights, started)


def _load_images(config: AdaptConfig, source_info: "RunRecord") -> _Images:
    """The new setting's images, checked and decoded, followed by the replayed ones."""

    samples = list_folder(config.data)
    check_samples(samples, config.data)
    check_outputs([(config.out, True)], class_folders(config.data))
    size = tuple(source_info.image_size)
    images, samples = decode_split(samples, size, config.detect_faces, "the new setting")
    check_samples(samples, config.data)  # after unreadable or faceless images left out
    new_count = len(samples)
    folders = replay_folders(config, source_info)
    replay = _replay_samples(config, folders, new_count)
    if replay is None and config.replay == REPLAY_AUTO:
        print(
            "no replay: the source's training folders "
            f"({', '.join(source_info.flags.get('data', [])) or 'none recorded'}) "
            "are not here; give --replay DIR to keep its old settings in mind"
        )
    if replay is not None:
        replay_images, replay = decode_split(replay, size, config.detect_faces, "the replay")
        images = np.concatenate([images, replay_images])
        samples = concat_samples([samples, replay])
    unlabelled = _unlabelled_images(config, size, samples.paths)
    if unlabelled is not None:
        images = np.concatenate([images, unlabelled])
    count = 0 if unlabelled is None else len(unlabelled)
    return _Images(images, samples, new_count, replay, folders, count)


def _unlabelled_images(config: AdaptConfig, size, labelled: list[str]) -> np.ndarray | None:
    """The decoded --unlabelled crops, less any of the labelled images; unreadable ones (or,
    with --detect-faces, faceless ones) reported and left out."""

    if not config.unlabelled:
        return None
    source = Path(config.unlabelled)
    paths = read_truth_table(source).paths if source.is_file() else expand_inputs([source])
    known = {str(Path(p).resolve()) for p in labelled}
    paths = [p for p in paths if str(Path(p).resolve()) not in known]
    if not paths:
        raise UserError(f"{source}: no unlabelled images besides the labelled ones")
    samples = Samples(paths, np.zeros(len(paths), np.int64))
    if config.detect_faces:
        images, kept, _, _ = decode_face_crops(samples, size, label="detecting faces (unlabelled)")
    else:
        try:
            images, kept = decode_images(samples, size)
        except UserError:  # none readable: said for this folder, not as a bare "no images"
            kept = []
    if not len(kept):
        raise UserError(f"{source}: none of its {len(paths)} images could be read (see above)")
    return images


def _print_plan(config: AdaptConfig, source_path, task, source_info, data, trainer) -> None:
    size, model_name = source_info.image_size, source_info.model
    print(
        f"adapting {source_path} ({task}, {model_name} {size[0]}x{size[1]}) to {config.data}: "
        + ", ".join(f"{k} {v}" for k, v in data.new_counts().items())
        + (
            f"; replaying {len(data.replay)} images of {', '.join(data.folders)}"
            if data.replay is not None
            else ""
        )
        + (f"; {data.unlabelled} unlabelled" if data.unlabelled else "")
    )
    print(
        f"  {trainer.trainable_count():,} weights train ({config.trainable_blocks} top blocks, "
        f"BatchNorm frozen), {config.epochs} epochs at {config.lr:g} (cosine), "
        f"L2-SP {config.l2sp:g}, "
        + (f"{config.cache_views} cached views" if trainer.cached else "live augmentation")
    )


def _choose_threshold(config, trainer, data: _Images, source_threshold: float, resumed: bool):
    """The threshold: equal error rates on the out-of-fold P(woman) of the new images (a model
    never scores the images it trained on, so the threshold is not fitted on memorised
    images), shrunk toward the source's. Replayed images train in every fold but choose
    nothing: the threshold is for the new setting."""

    new, labels = data.new_count, data.labels
    groups = (
        person_ids(data.samples.paths[:new], config.by_person)
        if config.by_person
        else [f"file:{p}" for p in data.samples.paths[:new]]
    )
    # every fold must hold someone of each class: no more folds than a class has people
    people = min(
        len({g for g, y in zip(groups, labels[:new]) if y == label})
        for label in range(len(CLASS_NAMES))
    )
    folds = min(config.folds, people)
    if resumed and not config.average_folds:
        folds = 0  # the threshold was chosen before the interruption; only averaging needs folds
    chosen = _Threshold(source_threshold, "the source model's (no folds)")
    if 0 < folds < 2 <= config.folds:
        chosen.source = "the source model's (one person of a class: nothing to fold)"
    if folds < 2:
        return chosen
    fold = fold_index(labels[:new], groups, folds, config.seed)
    oof = np.zeros(new)
    for k in range(folds):
        held = np.flatnonzero(fold == k)
        train_index = np.setdiff1d(np.arange(len(data.samples)), held)
        trainer.fit(train_index, labels)
        oof[held] = trainer.predict(held)
        if config.average_folds:
            chosen.fold_weights.append(trainer.fit_model.get_weights())
        print(f"  fold {k + 1}/{folds}: {len(train_index)} training, {len(held)} scored")
    per_class = min(data.new_counts().values())
    fitted = equal_error_threshold(labels[:new], oof)
    chosen.value = shrunk_threshold(fitted, source_threshold, per_class, config.prior_images)
    chosen.out_of_fold = fitted
    chosen.source = (
        f"equal error rates on {folds}-fold out-of-fold P(woman) of the {new} new "
        f"images ({fitted:.4f}), shrunk toward the source's {source_threshold:.4f} with "
        f"weight {per_class}/({per_class}+{config.prior_images})"
    )
    return chosen


def _run_info(config, source_path, source_info, task, data: _Images, threshold) -> dict:
    """run.json of a new adapted run, written before the final fit."""
    from gender.recorder import versions

    model_name = source_info.model
    info = {
        "model": model_name,
        "task": task,
        "image_size": list(source_info.image_size),
        "class_names": list(CLASS_NAMES),
        # the training flags other tools read back (run_config): the adapted model's own
        "flags": {
            **source_info.flags,
            "data": [str(config.data)],
            "task": task,
            "model": model_name,
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "augment": config.augment,
            "detect_faces": config.detect_faces,
            "seed": config.seed,
            "out": config.out,
        },
        "adapt": config.to_dict(),
        "adapted_from": {
            "weights": str(source_path),
            "task": task,
            "threshold": source_info.decision_threshold,
        },
        "versions": versions(),
        "data": {"train": data.new_counts(), "val": {}},
        "epochs_done": 0,
        # chosen before the final fit, so a run interrupted in it already answers at the
        # adapted threshold (not 0.5), and its resume keeps it
        "threshold": round(threshold.value, 4),
        "threshold_source": threshold.source,
        "threshold_out_of_fold": (
            None if threshold.out_of_fold is None else round(threshold.out_of_fold, 4)
        ),
    }
    if data.replay is not None:
        info["data"]["replay"] = data.replay.counts()
        info["replay_folders"] = data.folders
    return info


def pseudo_labels(
    p_woman: np.ndarray, threshold: float, count: int, shares: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(index, labels) of the `count` most confident of `p_woman`: each class's share of them
    (`shares`, the labelled images' class shares) taken from the images called that class at
    `threshold`, the farthest from it first (in units of the room on that side of it)."""
    called = (p_woman >= threshold).astype(int)
    margin = np.where(
        called == 1,
        (p_woman - threshold) / max(1 - threshold, 1e-6),
        (threshold - p_woman) / max(threshold, 1e-6),
    )
    index = []
    for label, share in enumerate(shares):
        members = np.flatnonzero(called == label)
        wanted = min(len(members), int(round(count * share)))
        index += members[np.argsort(-margin[members], kind="stable")[:wanted]].tolist()
    index = np.asarray(sorted(index), int)
    return index, called[index]


def _self_train(config: AdaptConfig, trainer, data: _Images, threshold: float):
    """(index, labels) of the final fit: the labelled images and the unlabelled ones that
    `config.rounds` rounds of self-training pseudo-label. Each round fits afresh from the
    start weights on the labelled images and the previous round's pseudo-labels, then labels
    a larger share of the unlabelled crops (up to `pseudo_share`), the most confident first, in
    the labelled images' class shares (a model's confident calls lean to one class; kept
    balanced, the pseudo-labels cannot drift toward it)."""
    labelled = np.arange(data.labelled)
    unlabelled = data.labelled + np.arange(data.unlabelled)
    labels = np.concatenate([data.labels, np.zeros(data.unlabelled, int)])
    shares = np.bincount(data.labels[: data.new_count], minlength=len(CLASS_NAMES))
    shares = shares / shares.sum()
    index = labelled
    for r in range(1, config.rounds + 1):
        trainer.fit(index, labels)
        count = int(config.pseudo_share * data.unlabelled * r / config.rounds)
        chosen, called = pseudo_labels(trainer.predict(unlabelled), threshold, count, shares)
        labels[unlabelled[chosen]] = called
        index = np.concatenate([labelled, unlabelled[chosen]])
        print(
            f"  self-training round {r}/{config.rounds}: {len(chosen)} of {data.unlabelled} "
            "unlabelled crops pseudo-labelled ("
            + ", ".join(f"{n} {int(np.sum(called == i))}" for i, n in enumerate(CLASS_NAMES))
            + ")"
        )
    return index, labels


def _finish(
    config: AdaptConfig,
    trainer: "_Trainer",
    data: _Images,
    run_dir: Path,
    fold_weights: list,
    started: float,
    resumed: bool = False,
) -> Path:
    """The final fit on every image into `run_dir` (continued from its last committed epoch when
    `resumed`), then best.keras and the completed run.json."""
    from gender.recorder import RunRecorder

    info = read_run_info(run_dir)
    history, weights, done = [], None, 0
    if resumed:
        history, last = reconcile_run(run_dir, info, read_history(run_dir))
        done = len(history)
        if done:
            resumed_model = open_keras(last, compile=False)
            check_gender_model(last, resumed_model)
            weights = resumed_model.get_weights()
        print(f"resuming the adaptation {run_dir} after epoch {done} of {config.epochs}")
    index, labels = np.arange(data.labelled), data.labels
    if data.unlabelled:
        index, labels = _self_train(config, trainer, data, float(info.threshold))
        pseudo = labels[index[index >= data.labelled]]
        info.data["unlabelled"] = data.unlabelled
        info.data["pseudo_labelled"] = {
            name: int(np.sum(pseudo == i)) for i, name in enumerate(CLASS_NAMES)
        }
    recorder = RunRecorder(run_dir, info, monitor="loss", keep=config.keep, history=history)
    recorder.full_model = trainer.model if trainer.cached else None
    trainer.fit(
        index, labels, callbacks=[recorder], verbose=2, resume_from=weights, initial_epoch=done
    )
    # The last epoch is the model: the cosine rate ends the training, nothing chose an epoch.
    if fold_weights:
        final = trainer.fit_model.get_weights()
        trainer.fit_model.set_weights([np.mean(w, axis=0) for w in zip(final, *fold_weights)])
        averaged = run_dir / "averaged.keras"
        with atomic_path(averaged) as tmp:
            trainer.model.save(tmp)
        link_over(averaged, run_dir / "best.keras")
        info.averaged_models = 1 + len(fold_weights)
    else:
        link_over(run_dir / "last.keras", run_dir / "best.keras")
    info.best_epoch = config.epochs
    info.adapt_seconds = round(time.perf_counter() - started, 1)
    info.best_metric = None
    info.write(run_dir)
    print(f"threshold {info.threshold:.4f}: {info.threshold_source}")
    print(f"done in {info.adapt_seconds:.0f} s; {run_dir / RUN_FILE} records the source model")
    return run_dir
