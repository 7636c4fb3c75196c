"""The training loop behind gender_train.py: phases, decoding, the frozen-prefix cache, resume.

`train(args, model_functions)` takes the CLI's flags and the few models/ functions it needs. They
are passed in rather than imported here: gender/ is the data side, and only the CLIs combine data
and models (STYLE.md), so gender_train.py is the one place that joins the two.
"""

import argparse
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gender.data
from gender import CLASS_NAMES, UserError

DEFAULT_EPOCHS = 60


@dataclass(frozen=True)
class ModelFunctions:
    """What training calls in models/, filled in by gender_train.py."""

    get_entry: Callable  # name -> registry entry (image_size, learning_rate, blocks)
    create_model: Callable  # (name, image_size=, backbone_weights=, trainable_blocks=) -> Model
    default_trainable_blocks: Callable  # name -> int
    set_trainable_blocks: Callable  # (model, name, count) -> None
    split_frozen_prefix: Callable  # model -> (prefix, suffix), or None if nothing is frozen
    load_model: Callable  # path -> compiled Model; must know the custom layers of models/


@dataclass
class Phase:
    """One stage of training: which backbone blocks train, at what rate, up to which epoch."""

    name: str
    trainable_blocks: int | None  # None: a model without a backbone
    learning_rate: float
    last_epoch: int


def plan_phases(args, entry, default_blocks: int) -> list[Phase]:
    """Transfer models train the head on a frozen backbone first, then fine-tune the top blocks.

    That is the Keras transfer-learning recipe: a random head's large early gradients would
    otherwise wreck the pretrained filters it sits on.
    """
    lr = args.lr or entry.learning_rate
    if not entry.blocks:
        return [Phase("train", None, lr, args.epochs)]
    blocks = default_blocks if args.trainable_blocks is None else args.trainable_blocks
    if blocks == 0:
        return [Phase("head", 0, lr, args.epochs)]
    if args.head_epochs == 0:
        return [Phase("fine-tune", blocks, args.fine_tune_lr, args.epochs)]
    return [
        Phase("head", 0, lr, min(args.head_epochs, args.epochs)),
        Phase("fine-tune", blocks, args.fine_tune_lr, args.epochs),
    ]


def train(args, model_functions: ModelFunctions) -> Path:
    """Train as `args` (gender_train.py's flags) say and return the run folder."""
    import keras
    import numpy as np

    from gender.augment import parse_augment
    from gender.images import parse_image_size
    from gender.runs import RunRecorder, new_run_dir, read_run_info, versions

    history, model = [], None
    if args.resume:
        args, history, model = _resume_args(args, model_functions.load_model)
    args.epochs = args.epochs or DEFAULT_EPOCHS
    if not args.data:
        raise UserError("--data is required (or --demo, or --resume RUN_DIR)")
    if not args.resume:  # before hours of decoding: a run folder that cannot be made fails now
        from gender.atomic import check_output

        images = [folder for data in args.data for folder in gender.data.class_folders(data)]
        check_output(args.out, images, folder=True)
    entry = model_functions.get_entry(args.model)
    image_size = parse_image_size(args.image_size) if args.image_size else entry.image_size
    parse_augment(args.augment)  # fail on a typo before decoding thousands of images
    phases = plan_phases(args, entry, model_functions.default_trainable_blocks(args.model))
    keras.utils.set_random_seed(args.seed)

    if model is None:  # built before the run folder exists: a bad flag leaves nothing behind
        model = model_functions.create_model(
            args.model,
            image_size=image_size,
            backbone_weights=args.backbone_weights,
            trainable_blocks=phases[0].trainable_blocks,
        )
    train_set, val_set = _load_splits(args)
    print(
        f"decoding {len(train_set) + len(val_set or [])} images at "
        f"{image_size[0]}x{image_size[1]} ..."
    )
    run_dir = Path(args.resume) if args.resume else new_run_dir(args.out, args.model)
    train_x, train_set = _decode(args, "train", train_set, image_size, run_dir / "cache")
    val_x = None
    if val_set:
        val_x, val_set = _decode(args, "val", val_set, image_size, run_dir / "cache")
        gender.data.write_truth_table(run_dir / "val.txt", val_set)
    print(
        f"decoded images: train {gender.data.storage(train_x)}"
        + (f", val {gender.data.storage(val_x)}" if val_set else "")
        + f" (RAM budget {gender.data.MEMORY_BUDGET_BYTES / 2**20:,.0f} MB for all arrays "
        "together, GENDER_MEMORY_BUDGET_MB; over it, files in the run folder)"
    )

    counts = train_set.counts()
    class_weight = None
    if not args.no_class_weights and max(counts.values()) > 1.1 * min(counts.values()):
        # Balanced weights n / (2 n_c): the pedestrian seed's model, trained on 2:1 data without
        # them, called most men women.
        class_weight = {
            i: len(train_set) / (2 * counts[name]) for i, name in enumerate(CLASS_NAMES)
        }

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    print(f"run folder: {run_dir}")
    print(
        f"model {args.model}: input {image_size[0]}x{image_size[1]}, {model.count_params():,} "
        f"parameters, {trainable:,} trainable in phase {phases[0].name}"
    )
    for name, part in (("train", train_set), ("val", val_set)):
        if part:
            print(
                f"  {name}: {len(part)} images "
                + ", ".join(f"{k} {v}" for k, v in part.counts().items())
            )
    weights_text = (
        ", ".join(f"{CLASS_NAMES[i]} {w:.3f}" for i, w in class_weight.items())
        if class_weight
        else "none"
    )
    print(
        f"  {-(-len(train_set) // args.batch_size)} steps per epoch at batch size "
        f"{args.batch_size}; class weights: {weights_text}"
    )
    print(
        "  phases: "
        + "; ".join(
            f"{p.name} to epoch {p.last_epoch} at lr {p.learning_rate:g}"
            + (f" ({p.trainable_blocks} backbone blocks train)" if p.trainable_blocks else "")
            for p in phases
        )
    )

    info = (
        read_run_info(run_dir)
        if args.resume
        else {
            "model": args.model,
            "task": args.task,
            "image_size": list(image_size),
            "class_names": list(CLASS_NAMES),
            "flags": {k: v for k, v in vars(args).items() if k not in ("resume", "demo")},
            "versions": versions(),
            "data": {"train": counts, "val": val_set.counts() if val_set else {}},
        }
    )
    info["flags"]["epochs"] = args.epochs  # a resume may extend the run
    info["phases"] = [vars(p) for p in phases]
    recorder = RunRecorder(
        run_dir, info, monitor="val_loss" if val_set else "loss", keep=args.keep, history=history
    )
    keep_optimizer = args.resume is not None  # the first phase resumed keeps Adam's state
    for phase in phases:
        if len(recorder.history) >= phase.last_epoch:
            continue
        _fit_phase(
            model,
            phase,
            args,
            (train_x, train_set),
            (val_x, val_set),
            class_weight,
            recorder,
            run_dir,
            keep_optimizer,
            model_functions,
        )
        keep_optimizer = False
    shutil.rmtree(run_dir / "cache", ignore_errors=True)  # decoded images: possibly gigabytes
    _print_summary(run_dir, info)
    return run_dir


def _fit_phase(
    model, phase, args, train, val, class_weight, recorder, run_dir, keep_optimizer, model_functions
):
    """Train one phase: on cached prefix outputs when the backbone bottom is frozen."""
    import keras

    from gender.augment import build_augmenter, parse_augment
    from gender.features import compute_features

    (train_x, train_set), (val_x, val_set) = train, val
    if phase.trainable_blocks is not None:
        model_functions.set_trainable_blocks(model, args.model, phase.trainable_blocks)
    augment_names = parse_augment(args.augment)
    split = model_functions.split_frozen_prefix(model) if args.cache == "auto" else None
    seed = args.seed + len(recorder.history)
    if split:
        prefix, fit_model = split
        views = cache_views(augment_names, args.cache_views)
        print(
            f"phase {phase.name}: caching the frozen prefix output {prefix.output_shape[1:]} "
            f"for {len(train_set)} training images x {len(views)} views ({', '.join(views)})"
            + (" and the validation images" if val_set else "")
            + " ..."
        )
        features = compute_features(
            prefix,
            train_x,
            views,
            cache_dir=run_dir / "cache",
            augment=build_augmenter(augment_names, seed),
        )
        train_ds = gender.data.make_dataset(
            features, train_set.labels, args.batch_size, shuffle=True, seed=seed, views=True
        )
        val_inputs = compute_features(prefix, val_x, ("original",))[0] if val_set else None
        recorder.full_model = model
    else:
        fit_model, val_inputs = model, val_x
        print(f"phase {phase.name}: augment {','.join(augment_names) or 'none'}")
        train_ds = gender.data.make_dataset(
            train_x,
            train_set.labels,
            args.batch_size,
            shuffle=True,
            seed=seed,
            augment=build_augmenter(augment_names, seed),
        )
        recorder.full_model = None
    val_ds = (
        gender.data.make_dataset(val_inputs, val_set.labels, args.batch_size, shuffle=False)
        if val_set
        else None
    )
    if not (keep_optimizer and fit_model is model and model.optimizer is not None):
        fit_model.compile(
            optimizer=keras.optimizers.Adam(phase.learning_rate),
            loss="binary_crossentropy",
            metrics=["accuracy"],
        )
    stopper = keras.callbacks.EarlyStopping(
        monitor=recorder.monitor, patience=args.patience, restore_best_weights=True
    )
    callbacks = [
        recorder,
        stopper,
        keras.callbacks.ReduceLROnPlateau(
            monitor=recorder.monitor, factor=0.5, patience=max(2, args.patience // 3)
        ),
    ]
    fit_model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=phase.last_epoch,
        initial_epoch=len(recorder.history),
        class_weight=class_weight,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself
        verbose=1 if sys.stdout.isatty() else 2,
    )


def cache_views(augment_names, count: int) -> tuple[str, ...]:
    """Which versions of each image to cache: original, mirror, then random augmentations."""
    views = ["original"]
    if "flip" in augment_names:
        views.append("flip")
    if set(augment_names) - {"flip"}:
        views += ["augment"] * (count - len(views))
    return tuple(views[: max(1, count)])


def _decode(args, name: str, samples, size, cache_dir):
    """Decode a split: whole images, or with --detect-faces each image's largest face."""
    if not getattr(args, "detect_faces", False):  # runs older than the flag do not have it
        return gender.data.decode_images(samples, size, cache_dir)
    from gender.faces import decode_face_crops

    images, kept, _, crops = decode_face_crops(
        samples, size, cache_dir, label=f"detecting faces ({name})"
    )
    print(f"{name}: {crops.line()}; {crops.none} image(s) without a face left out")
    for class_name, count in kept.counts().items():
        if count == 0:
            raise UserError(f"no {class_name} image of the {name} split has a face; use more data")
    return images, kept


def _load_splits(args):
    """(train, val) Samples pooled over the --data folders.

    A folder with its own train/val keeps them; any other folder is split here (by person with
    --by-person), so no folder's people end up on both sides.
    """
    trains, vals = [], []
    for folder in args.data:
        splits = gender.data.load_samples(folder)
        if "train" in splits:
            trains.append(splits["train"])
            vals.append(splits["val"])
        elif args.val_split == 0:
            trains.append(splits["all"])
        else:
            train, val = gender.data.split_samples(
                splits["all"], args.val_split, args.seed, args.by_person
            )
            trains.append(train)
            vals.append(val)
    return gender.data.concat_samples(trains), gender.data.concat_samples(vals) if vals else None


def _resume_args(args, load_model: Callable):
    """Flags of the run being resumed (a new --epochs may extend it), its history and model."""
    from gender.export import open_keras
    from gender.runs import read_history, read_run_info, reconcile_run

    run_dir = Path(args.resume)
    info = read_run_info(run_dir)
    last = run_dir / "last.keras"
    if not info or not last.is_file():
        raise UserError(f"{run_dir}: not a run folder with run.json and last.keras to resume")
    flags = dict(info["flags"])
    flags.update(resume=str(run_dir), demo=False)
    if isinstance(flags.get("data"), str):  # runs from before --data took several folders
        flags["data"] = [flags["data"]]
    flags.setdefault("task", info.get("task", "face"))
    if args.epochs:
        flags["epochs"] = args.epochs
    history, last = reconcile_run(run_dir, info, read_history(run_dir))
    model = open_keras(last, load_model)  # with its optimizer state, so Adam continues smoothly
    print(f"resuming {run_dir} after epoch {len(history)}")
    return argparse.Namespace(**flags), history, model


def _print_summary(run_dir: Path, info: dict) -> None:
    best = info.get("best_epoch")
    metric = info.get("best_metric", {})
    print(
        f"done: {info.get('epochs_done')} epochs; best epoch {best} "
        + " ".join(f"{k}={v:.4f}" for k, v in metric.items())
    )
    print(f"  best model: {run_dir / 'best.keras'}")
    print(f"  evaluate:   python gender_mAP.py {run_dir / 'val.txt'} {run_dir / 'best.keras'}")
