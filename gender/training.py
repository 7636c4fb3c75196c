"""The training loop: phases, decoding, resume (the fine-tuning core it shares with adapt, the
frozen-prefix cache among it, is gender.finetune).

`train(config)` trains as a `TrainConfig` says and returns the run folder; `resume_config` reads
an interrupted run's config back. This is the pipeline layer, so it uses models/ (the registry)
and the data side directly (docs/architecture.md).
"""

import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import gender.data
import gender.models as models
from gender import CLASS_NAMES, UserError, distribute, interrupt
from gender.atomic import check_outputs, check_space
from gender.augment import build_augmenter, parse_augment
from gender.config import RunRecord, TrainConfig, read_run_config, read_run_info
from gender.conflicts import check_training_labels
from gender.console import command
from gender.data import person_ids
from gender.evaluation import evaluate_run
from gender.faces import decode_face_crops
from gender.finetune import balanced_class_weight, fit, prepare_inputs
from gender.groups import balance_weights, group_names
from gender.images import parse_image_size
from gender.metrics import person_weights
from gender.predictor import check_gender_model, open_keras
from gender.report import run_page
from gender.runs import read_history, reconcile_run, run_kept
from gender.shards import PackedSplit, is_packed, open_packed, stream_dataset

if TYPE_CHECKING:
    from gender.models import ModelEntry


@dataclass
class Phase:
    """One stage of training: which backbone blocks train, at what rate, up to which epoch."""

    name: str
    trainable_blocks: int | None  # None: a model without a backbone
    learning_rate: float
    last_epoch: int


def plan_phases(config: TrainConfig, entry: "ModelEntry", default_blocks: int) -> list[Phase]:
    """Transfer models train the head on a frozen backbone first, then fine-tune the top blocks.

    That is the Keras transfer-learning recipe: a random head's large early gradients would
    otherwise wreck the pretrained filters it sits on.
    """
    lr = config.lr or entry.learning_rate
    if not entry.blocks:
        return [Phase("train", None, lr, config.epochs)]
    blocks = default_blocks if config.trainable_blocks is None else config.trainable_blocks
    if blocks == 0:
        return [Phase("head", 0, lr, config.epochs)]
    if config.head_epochs == 0:
        return [Phase("fine-tune", blocks, config.fine_tune_lr, config.epochs)]
    return [
        Phase("head", 0, lr, min(config.head_epochs, config.epochs)),
        Phase("fine-tune", blocks, config.fine_tune_lr, config.epochs),
    ]


def train(
    config: TrainConfig,
    resume: str | Path | None = None,
    devices: str | None = None,
    peer_timeout: float | None = None,
) -> Path | None:
    """Train as `config` says and return the run folder (None on a worker other than the chief).

    Args:
        resume: a run folder to continue from its last.keras (its config from `resume_config`).
        devices: where to train, see gender.distribute.select_strategy (None: automatic).
        peer_timeout: seconds a multi-worker task waits for the others (None: the default).
    """
    import keras

    from gender.recorder import RunRecorder

    # first, before any TensorFlow op (MultiWorkerMirroredStrategy's requirement);
    # models and optimizers are then made inside distribute.scope(strategy).
    strategy = distribute.select_strategy(devices, peer_timeout or distribute.PEER_TIMEOUT)
    history, model = _start(config, resume, strategy)
    image_size, phases = _plan(config)
    keras.utils.set_random_seed(config.seed)
    if model is None:  # built before the run folder exists: a bad flag leaves nothing behind
        model = _build_model(config, image_size, phases, strategy)
    distributed = distribute.describe(strategy, config.batch_size)
    _check_space(config, resume, model)
    train_set, val_set = _checked_splits(config, strategy)
    # only the chief writes the run folder (several writers would clobber it); other workers
    # get a temporary one
    run_dir = distribute.run_folder(config.out, config.model, resume)
    interrupt.keep(
        run_kept(run_dir, len(history))
        if distribute.is_chief()
        else f"worker {distribute.task_index()} keeps nothing (the chief writes the run folder)"
    )
    (train_x, train_set), (val_x, val_set) = _decode_splits(
        config, train_set, val_set, image_size, run_dir
    )
    class_weight, sample_weights, val_weights = _loss_weighting(config, train_set, val_set)
    print(f"run folder: {run_dir}" + ("" if distribute.is_chief() else " (temporary: a worker)"))
    _print_plan(config, model, image_size, phases, (train_set, val_set), class_weight,
                sample_weights, strategy, distributed)  # fmt: skip
    info = _open_info(config, resume, run_dir, image_size, (train_set, val_set), phases,
                      distributed)  # fmt: skip
    recorder = RunRecorder(
        run_dir, info, monitor="val_loss" if val_set else "loss", keep=config.keep,
        history=history, announce=distribute.is_chief(),
    )  # fmt: skip
    # the first phase resumed keeps Adam's state (a run resumed at epoch 0 has none)
    keep_optimizer = resume is not None and bool(history)
    for phase in phases:
        if len(recorder.history) >= phase.last_epoch:
            continue
        splits = (train_x, train_set), (val_x, val_set)
        args = (model, phase, config, *splits, class_weight, recorder, keep_optimizer)
        if strategy is None and train_x is not None:
            _fit_phase(*args, run_dir, sample_weights, val_weights)
        else:  # under a tf.distribute strategy, or streaming packed shards
            _fit_phase_custom(*args, strategy)
        keep_optimizer = False
    return _end(run_dir, info, val_set, val_x)


def _start(config: TrainConfig, resume, strategy) -> tuple[list, object]:
    """(history, model) of a resumed run (a model of None: none committed yet), or ([], None);
    a new run's output folder is checked first, before hours of decoding."""

    history, model = [], None
    if resume:
        with distribute.scope(strategy):
            history, model = _resume_state(Path(resume))
    if not config.data:
        raise UserError("--data is required (or --demo, or --resume RUN_DIR)")
    if not resume:  # a run folder that cannot be made fails now
        images = [
            folder
            for data in config.data
            for folder in ([Path(data)] if is_packed(data) else gender.data.class_folders(data))
        ]
        check_outputs([(config.out, True)], images)
    return history, model


def _plan(config: TrainConfig) -> tuple[tuple[int, int], list[Phase]]:
    """(image size, phases) of the run; an augmentation typo fails here, before decoding."""

    entry = models.get_entry(config.model)
    image_size = parse_image_size(config.image_size) if config.image_size else entry.image_size
    parse_augment(config.augment)
    return image_size, plan_phases(config, entry, models.default_trainable_blocks(config.model))


def _build_model(config: TrainConfig, image_size, phases: list[Phase], strategy):

    with distribute.scope(strategy):
        return models.create_model(
            config.model,
            image_size=image_size,
            backbone_weights=config.backbone_weights,
            trainable_blocks=phases[0].trainable_blocks,
        )


def _check_space(config: TrainConfig, resume, model) -> None:
    """Room for the checkpoints the run will write, checked before hours of training."""

    if distribute.is_chief():
        kept = min(config.epochs, config.keep or config.epochs) + 2  # + a temporary, best
        # a checkpoint holds the weights and Adam's two moments: 3 float32 per parameter
        check_space(Path(resume) if resume else config.out, kept * 12 * model.count_params())


def _checked_splits(config: TrainConfig, strategy):
    """(train, val) Samples (or packed splits), with the loss-weighting flags and the labels
    checked before anything is decoded."""
    train_set, val_set = _load_splits(config)
    if config.balance_groups or config.weigh_persons:
        flag = "--balance-groups" if config.balance_groups else "--weigh-persons"
        if strategy is not None or isinstance(train_set, PackedSplit):
            raise UserError(
                f"{flag}: not with several devices or packed shards yet "
                "(train on one device from image folders)"
            )
        if config.balance_groups:  # a bad regex or CSV fails now, not after decoding
            group_names(train_set.paths[:1], config.balance_groups)
    if not isinstance(train_set, PackedSplit):  # packed shards were checked when packed
        check_training_labels({"train": train_set, "val": val_set})
    return train_set, val_set


def _decode_splits(config: TrainConfig, train_set, val_set, image_size, run_dir: Path):
    """((train images, train samples), (val images, val samples)): decoded, unreadable images
    left out; images None for packed shards, which are streamed and decoded per batch."""
    if isinstance(train_set, PackedSplit):
        packed_val = Path(config.data[0]) / "val.txt"
        if val_set and packed_val.is_file():
            shutil.copyfile(packed_val, run_dir / "val.txt")
        print(f"streaming packed shards from {config.data[0]} (decoded per batch, in tf.data)")
        return (None, train_set), (None, val_set)
    print(
        f"decoding {len(train_set) + len(val_set or [])} images at "
        f"{image_size[0]}x{image_size[1]} ..."
    )
    train_x, train_set = decode_split(
        train_set, image_size, config.detect_faces, "the train split", run_dir / "cache"
    )
    val_x = None
    if val_set:
        val_x, val_set = decode_split(
            val_set, image_size, config.detect_faces, "the val split", run_dir / "cache"
        )
        gender.data.write_truth_table(run_dir / "val.txt", val_set)
    print(
        f"decoded images: train {gender.data.storage(train_x)}"
        + (f", val {gender.data.storage(val_x)}" if val_set else "")
        + f" (RAM budget {gender.data.memory_budget_bytes() / 2**20:,.0f} MB for all "
        "arrays together, GENDER_MEMORY_BUDGET_MB; over it, files in the run folder)"
    )
    return (train_x, train_set), (val_x, val_set)


def _loss_weighting(config: TrainConfig, train_set, val_set) -> tuple:
    """(class weights, per-image training weights, per-image validation weights), any None."""
    counts = train_set.counts()
    class_weight = None
    if not config.no_class_weights and max(counts.values()) > 1.1 * min(counts.values()):
        # Balanced weights n / (2 n_c): the pedestrian model the toolkit started from, trained on
        # 2:1 data without them, called most men women.
        class_weight = balanced_class_weight(train_set.labels)
    if config.balance_groups or config.weigh_persons:
        sample_weights, val_weights = _loss_weights(config, train_set, val_set)
        return None, sample_weights, val_weights  # the classes folded into the image weights
    return class_weight, None, None


def _print_plan(
    config, model, image_size, phases, splits, class_weight, sample_weights, strategy,
    distributed,
) -> None:  # fmt: skip
    """The resolved settings and derived numbers, before training starts."""

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    print(
        f"model {config.model}: input {image_size[0]}x{image_size[1]}, {model.count_params():,} "
        f"parameters, {trainable:,} trainable in phase {phases[0].name}"
    )
    train_set = splits[0]
    for name, part in zip(("train", "val"), splits):
        if part:
            print(
                f"  {name}: {len(part)} images "
                + ", ".join(f"{k} {v}" for k, v in part.counts().items())
            )
    weights_text = (
        ", ".join(f"{CLASS_NAMES[i]} {w:.3f}" for i, w in class_weight.items())
        if class_weight
        else "in the per-image weights above"
        if sample_weights is not None
        else "none"
    )
    print(
        f"  {-(-len(train_set) // config.batch_size)} steps per epoch at batch size "
        f"{config.batch_size}; class weights: {weights_text}"
    )
    if strategy is not None:
        print(
            f"  {distributed['strategy']}: {distributed['replicas']} replicas on "
            f"{distributed['workers']} worker(s), {distributed['per_replica_batch_size']} images "
            f"per replica a step (the global batch is --batch-size)"
            + ("" if distribute.is_chief() else "; this worker writes no run folder")
        )
    print(
        "  phases: "
        + "; ".join(
            f"{p.name} to epoch {p.last_epoch} at lr {p.learning_rate:g}"
            + (f" ({p.trainable_blocks} backbone blocks train)" if p.trainable_blocks else "")
            for p in phases
        )
    )


def _open_info(
    config, resume, run_dir: Path, image_size, splits, phases, distributed
) -> "RunRecord":
    """run.json's record as training starts: a new run's (epoch 0 committed, so a run killed in
    its first epoch can be resumed), or the resumed run's, reopened."""
    from gender.recorder import versions

    train_set, val_set = splits
    info = (
        read_run_info(Path(resume))  # a worker's own run_dir is a temporary folder
        if resume
        else RunRecord(
            model=config.model,
            task=config.task,
            image_size=list(image_size),
            class_names=list(CLASS_NAMES),
            flags=config.to_dict(),
            versions=versions(),
            data={"train": train_set.counts(), "val": val_set.counts() if val_set else {}},
        )
    )
    info.distribute = distributed
    info.flags["epochs"] = config.epochs  # a resume may extend the run
    info.finished = False  # training again: unfinished until this run's end is reached
    if resume and distribute.is_chief():
        # at once, not at the next epoch's commit: a run extended with --epochs and stopped
        # before that commit is resumed toward its new maximum, not called finished
        info.write(run_dir)
    info.phases = [vars(p) for p in phases]
    if not resume:
        info.epochs_done = 0
        info.write(run_dir)
    return info


def _end(run_dir: Path, info: "RunRecord", val_set, val_x) -> Path | None:
    """The evaluation page, the run marked finished, the decoded-image cache removed."""

    if distribute.is_chief():  # before the cache goes: the validation images are decoded there
        evaluation = evaluate_run(run_dir, val_set, val_x, info)
        if evaluation:
            page = run_page(run_dir, evaluation)
            print(f"evaluation page of best.keras on the validation split: {page}")
        # the end was reached (all epochs, or early stopping): `resume` then has nothing to do
        info.finished = True
        info.write(run_dir)
    shutil.rmtree(run_dir / "cache", ignore_errors=True)  # decoded images: possibly gigabytes
    if not distribute.finish(run_dir):  # a worker other than the chief: its folder is gone
        return None
    _print_summary(run_dir, info)
    return run_dir


def _loss_weights(config: TrainConfig, train_set, val_set) -> tuple:
    """(training, validation) per-image loss weights for --weigh-persons and --balance-groups,
    with what they do printed.

    --weigh-persons: each person weighs the same, however many frames they are in (a video set
    holds some people in dozens), in the training loss and in the validation loss that picks the
    best epoch. The classes are then balanced on those weights: per group with --balance-groups,
    else over the whole set (unless --no-class-weights).
    """

    labels = train_set.labels
    base, val_weights = None, None
    if config.weigh_persons:
        persons = person_ids(train_set.paths, config.weigh_persons)
        base = person_weights(persons)
        print(
            f"loss weights: every person weighs the same ({config.weigh_persons}): "
            f"{len(set(persons)):,} persons in {len(persons):,} training images"
        )
        if val_set:
            val_weights = person_weights(person_ids(val_set.paths, config.weigh_persons))
            val_weights = (val_weights / val_weights.mean()).astype(np.float32)
    if config.balance_groups:
        groups = group_names(train_set.paths, config.balance_groups)
        print(f"loss weights balancing man and woman within each group ({config.balance_groups}):")
    elif not config.no_class_weights:
        groups = ["all classes"] * len(labels)
        print("loss weights balancing man and woman:")
    else:
        groups = []
    weights = balance_weights(labels, groups, base) if groups else base / base.mean()
    groups = np.asarray(groups, dtype=object)
    for group in sorted(set(groups.tolist())):
        members = groups == group
        parts = [
            f"{name} {int(np.sum(members & (labels == i)))} images, "
            f"{np.sum(weights[members & (labels == i)]):,.0f} in weight"
            for i, name in enumerate(CLASS_NAMES)
        ]
        print(f"  {group}: " + "; ".join(parts))
    return weights, val_weights


def _fit_phase(
    model, phase, config, train, val, class_weight, recorder, keep_optimizer, run_dir,
    sample_weights=None, val_weights=None,
):  # fmt: skip
    """Train one phase: on cached prefix outputs when the backbone bottom is frozen."""

    (train_x, train_set), (val_x, val_set) = train, val
    if phase.trainable_blocks is not None:
        models.set_trainable_blocks(model, config.model, phase.trainable_blocks)
    augment_names = parse_augment(config.augment)
    seed = config.seed + len(recorder.history)
    # Each epoch feeds every image once, from one view at random: a phase of E epochs can use
    # at most E views, and caching more costs a backbone pass each (the head phase of the
    # bundled face recipe, 1 epoch: 5 views cached, 1 used).
    epochs = phase.last_epoch - len(recorder.history)

    def announce(prefix, views):
        print(
            f"phase {phase.name}: caching the frozen prefix output {prefix.output_shape[1:]} "
            f"for {len(train_set)} training images x {len(views)} views ({', '.join(views)})"
            + (" and the validation images" if val_set else "")
            + " ..."
        )

    inputs = prepare_inputs(
        model, train_x, augment_names, min(config.cache_views, epochs), seed,
        cache=config.cache == "auto", cache_dir=run_dir / "cache", announce=announce,
    )  # fmt: skip
    if not inputs.cached:
        print(f"phase {phase.name}: augment {','.join(augment_names) or 'none'}")
    recorder.full_model = model if inputs.cached else None
    val_ds = (
        gender.data.make_dataset(
            inputs.encode(val_x),
            val_set.labels,
            config.batch_size,
            shuffle=False,
            sample_weights=val_weights,
        )  # fmt: skip
        if val_set
        else None
    )
    fit(
        inputs, train_set.labels, rate=phase.learning_rate, epochs=phase.last_epoch,
        batch_size=config.batch_size, seed=seed, initial_epoch=len(recorder.history),
        keep_optimizer=keep_optimizer, class_weight=class_weight, sample_weights=sample_weights,
        validation=val_ds, callbacks=_callbacks(recorder, config),
        label_smoothing=config.label_smoothing, verbose=1 if sys.stdout.isatty() else 2,
    )  # fmt: skip


def _fit_phase_custom(
    model, phase, config, train, val, class_weight, recorder, keep_optimizer, strategy
):
    """Train one phase with gender.distribute's custom step (under a tf.distribute
    strategy, or on streamed shards). The frozen-prefix cache is off here: every step runs the
    whole model on freshly augmented images."""

    (train_x, train_set), (val_x, val_set) = train, val
    if phase.trainable_blocks is not None:
        models.set_trainable_blocks(model, config.model, phase.trainable_blocks)
    augment_names = parse_augment(config.augment)
    seed = config.seed + len(recorder.history)
    print(
        f"phase {phase.name}: augment {','.join(augment_names) or 'none'}"
        + ("; frozen-prefix cache off (custom training step)" if config.cache == "auto" else "")
    )
    # augmentation seeds differ per worker: otherwise every worker would draw the same changes
    augment = build_augmenter(augment_names, seed + distribute.task_index())
    if train_x is not None:
        feed = distribute.in_memory_feed(
            train_x, train_set.labels, config.batch_size, seed, augment
        )
        val_ds = (
            gender.data.make_dataset(val_x, val_set.labels, config.batch_size, shuffle=False)
            if val_set
            else None
        )
    else:
        image_size = tuple(model.input_shape[1:3])  # what the run was built with
        feed = distribute.packed_feed(train_set, image_size, config.batch_size, seed, augment)
        val_ds = (
            stream_dataset(val_set, image_size, config.batch_size, shuffle=False)
            if val_set
            else None
        )
    recorder.full_model = None
    callbacks = _callbacks(recorder, config)
    distribute.fit_phase(
        strategy, model, phase.learning_rate, keep_optimizer, feed, val_ds, class_weight,
        callbacks, len(recorder.history), phase.last_epoch, config.label_smoothing,
    )  # fmt: skip


def _callbacks(recorder, config: TrainConfig) -> list:
    """The run's recorder, early stopping (best weights restored) and learning-rate halving."""
    import keras

    return [
        recorder,
        keras.callbacks.EarlyStopping(
            monitor=recorder.monitor, patience=config.patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor=recorder.monitor, factor=0.5, patience=max(2, config.patience // 3)
        ),
    ]


def decode_split(
    samples: "gender.data.Samples",
    size: Sequence[int],
    detect_faces: bool,
    name: str,
    cache_dir: Path | None = None,
) -> "tuple[np.ndarray, gender.data.Samples]":
    """Decode images `name` (a split, or adapt's new and replayed images): whole images, or
    with `detect_faces` each image's largest face; a class left without a readable image (or
    without faces) is an error, whichever set it is: a model fit on one class learns nothing."""
    if not detect_faces:
        images, kept = gender.data.decode_images(samples, size, cache_dir)
        for class_name, count in kept.counts().items():
            if count == 0:
                listed = samples.counts()[class_name]
                why = f" ({listed} listed, all unreadable: see above)" if listed else ""
                raise UserError(
                    f"no {class_name} image of {name} could be read{why}; use more data"
                )
        return images, kept

    images, kept, _, crops = decode_face_crops(
        samples, size, cache_dir, label=f"detecting faces ({name})"
    )
    print(f"{name}: {crops.line()}; {crops.none} image(s) without a face left out")
    for class_name, count in kept.counts().items():
        if count == 0:
            raise UserError(f"no {class_name} image of {name} has a face; use more data")
    return images, kept


def _load_splits(config):
    """(train, val) Samples pooled over the --data folders.

    A folder with its own train/val keeps them; any other folder is split here (by person with
    --by-person), so no folder's people end up on both sides. A packed folder (dataset.py pack)
    gives its PackedSplit pair instead: it was split when it was packed.
    """

    if any(is_packed(folder) for folder in config.data):
        if len(config.data) > 1:
            raise UserError("--data: a packed folder (manifest.json) cannot be pooled with others")
        splits = open_packed(config.data[0])
        return splits["train"], splits.get("val")
    trains, vals = [], []
    for folder in config.data:
        train, val = gender.data.train_val_samples(
            folder, config.val_split, config.seed, config.by_person
        )
        trains.append(train)
        vals += [val] if val is not None else []
    return gender.data.concat_samples(trains), gender.data.concat_samples(vals) if vals else None


def resume_config(run_dir: str | Path, epochs: int | None = None) -> TrainConfig:
    """The config of the run in `run_dir`, to continue it; a new `epochs` may extend it."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if not (run_dir / "run.json").is_file() or not (
        (run_dir / "last.keras").is_file() or _epochs_done(run_dir) == 0
    ):
        raise UserError(f"{run_dir}: not a run folder with run.json and last.keras to resume")
    if epochs:
        config.epochs = epochs
    return config


def nothing_to_resume(run_dir: str | Path, epochs: int | None = None) -> str | None:
    """Why resuming `run_dir` has nothing to do, with how to train longer; None when it has.

    A run is over when training reached its end (run.json's `finished`, or, for a folder written
    before that field, all its epochs done); a new `epochs` above the epochs done reopens it.
    Said before anything is decoded or loaded: a finished run used to be evaluated and exported
    again for half a minute without a word.
    """

    run_dir = Path(run_dir)
    resume_config(run_dir, epochs)  # a folder that is no run at all is the usual error
    info = read_run_info(run_dir)
    done = info.epochs_done or 0
    planned = int(info.flags.get("epochs") or 0)
    finished = info.finished or (planned > 0 and done >= planned)
    if epochs is not None and epochs > done:
        return None
    if not finished and epochs is None:
        return None

    if distribute.is_chief():  # files of an epoch begun but never committed go, as on a resume
        reconcile_run(run_dir, info, read_history(run_dir))
    longer = f"{command('train')} resume {run_dir} --epochs {max(done + 10, planned)}"
    if epochs is not None:
        return (
            f"{run_dir} has trained {done} epochs already: nothing to do up to --epochs "
            f"{epochs}; to train longer, give a larger maximum: {longer}"
        )
    how = (
        f"{done} of {planned} epochs"
        if done >= planned
        else (f"early stopping after epoch {done} of {planned}")
    )
    return (
        f"{run_dir} finished training: {how}, best epoch {info.best_epoch}. Nothing "
        f"to resume; to train longer, give a new maximum: {longer}"
    )


def _epochs_done(run_dir: Path) -> int | None:

    return read_run_info(run_dir).epochs_done


def _resume_state(run_dir: Path):
    """(history, model) of the run being resumed: its committed epochs and last.keras.

    An interrupted run folder is first brought back to its last committed epoch
    (`gender.runs.reconcile_run`). A run killed before its first commit (epochs_done 0) has no
    model yet: (history, None), and training starts over with the run's seed.
    """

    resume_config(run_dir)  # the same check, for a caller that built its config elsewhere
    info = read_run_info(run_dir)
    if distribute.is_chief():
        history, last = reconcile_run(run_dir, info, read_history(run_dir))
    else:  # a worker only reads the chief's folder, as of its last committed epoch
        done = min(info.epochs_done or 0, len(read_history(run_dir)))
        history, last = read_history(run_dir)[:done], run_dir / f"epoch_{done:03d}.keras"
    if not history:
        print(f"resuming {run_dir} after epoch 0 (no epoch was committed: starting over)")
        return history, None
    # with its optimizer state, so Adam continues smoothly
    model = open_keras(last, compile=True)
    check_gender_model(last, model)
    print(f"resuming {run_dir} after epoch {len(history)}")
    return history, model


def _print_summary(run_dir: Path, info: "RunRecord") -> None:
    best = info.best_epoch
    metric = info.best_metric or {}
    print(
        f"done: {info.epochs_done} epochs; best epoch {best} "
        + " ".join(f"{k}={v:.4f}" for k, v in metric.items())
    )
    print(f"  best model: {run_dir / 'best.keras'}")
    print(f"  evaluate:   {command('map')} {run_dir / 'val.txt'} {run_dir}")
    print(f"  predict:    {command('predict')} PHOTO --weights {run_dir}")
