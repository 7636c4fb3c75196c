"""Train a man/woman classifier and write a run folder under weights/.

python gender_train.py --demo                          # synthetic data, a few minutes on a CPU
python gender_train.py --data DIR --model cnn7 --epochs 60
python gender_train.py --data DIR --by-person --model mobilenetv2 --backbone-weights imagenet
python gender_train.py --resume weights/cnn7-20261122-101500   # continue an interrupted run
python gender_train.py --export weights/cnn7-20261122-101500/best.keras   # + .tflite, SavedModel
"""

import argparse
import sys
from pathlib import Path

import gender.data
import gender.training
from gender import TASKS, UserError
from gender.augment import AUGMENTATIONS, DEFAULT_AUGMENT
from gender.flags import positive_int, tolerant_console
from gender.training import DEFAULT_EPOCHS, ModelFunctions


def build_parser() -> argparse.ArgumentParser:
    from models import list_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        nargs="+",
        metavar="DIR",
        help="folder(s) with man/ and woman/ (or train/ and val/ holding them); "
        "several folders are pooled, each split on its own",
    )
    data.add_argument(
        "--val-split",
        type=float,
        default=0.2,
        help="validation fraction when --data has no val/ folder (default 0.2)",
    )
    data.add_argument(
        "--by-person",
        nargs="?",
        const=gender.data.DEFAULT_PERSON_PATTERN,
        metavar="REGEX",
        help="split so no person is on both sides; the person id "
        "is group 1 of REGEX on the file name (default %(const)r: '000_45_1.jpg' "
        "is person 000)",
    )
    data.add_argument(
        "--detect-faces",
        action="store_true",
        help="train on each image's largest detected face, aligned and cropped "
        "(images without a face are left out and counted); or crop once with dataset.py crop",
    )
    data.add_argument(
        "--augment",
        default=DEFAULT_AUGMENT,
        help=f"comma list from {','.join(AUGMENTATIONS)}, or none (default %(default)s)",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="cnn7", choices=list_models())
    model.add_argument(
        "--task",
        choices=TASKS,
        default="face",
        help="what the images show, stored in run.json: face models detect faces "
        "in photos at prediction, pedestrian models never do (default face)",
    )
    model.add_argument("--image-size", help="HxW or N (default: the model's own size)")
    model.add_argument(
        "--backbone-weights",
        default="imagenet",
        help="vgg16/mobilenetv2 backbone: imagenet (download), a local "
        ".weights.h5 file, or none (random init) (default imagenet)",
    )
    model.add_argument(
        "--trainable-blocks",
        type=int,
        help="top backbone blocks fine-tuned after the head, 0 = frozen backbone "
        "(default vgg16 1, mobilenetv2 0)",
    )
    model.add_argument(
        "--head-epochs",
        type=int,
        default=5,
        help="transfer models: epochs training the head alone before the top "
        "blocks unfreeze (default 5; 0 = one phase)",
    )
    model.add_argument(
        "--fine-tune-lr",
        type=float,
        default=1e-4,
        help="learning rate once backbone blocks train (default 1e-4)",
    )
    model.add_argument(
        "--cache",
        choices=("auto", "off"),
        default="auto",
        help="auto: run a frozen backbone prefix once per image and train the rest "
        "on its cached output (augmentation then comes from --cache-views)",
    )
    model.add_argument(
        "--cache-views",
        type=int,
        default=2,
        help="cached versions of each training image: the original, its mirror "
        "(if --augment has flip), then random --augment draws (default 2)",
    )
    train = parser.add_argument_group("training")
    train.add_argument(
        "--epochs", type=positive_int, help=f"maximum epochs, 1 or more (default {DEFAULT_EPOCHS})"
    )
    train.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="images per training step (default %(default)s)",
    )
    train.add_argument("--lr", type=float, help="learning rate (default: the model's own)")
    train.add_argument(
        "--patience",
        type=int,
        default=10,
        help="early stopping after this many epochs without a better val loss",
    )
    train.add_argument(
        "--no-class-weights",
        action="store_true",
        help="do not reweight the loss when the classes are unbalanced",
    )
    train.add_argument("--seed", type=int, default=1337)
    run = parser.add_argument_group("run")
    run.add_argument("--out", default="weights", help="parent of the run folder (default weights)")
    run.add_argument(
        "--keep",
        type=int,
        default=0,
        help="keep only the newest N epoch checkpoints (default 0 = all)",
    )
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    run.add_argument(
        "--export",
        metavar="WEIGHTS",
        help="write a trained model as TFLite and SavedModel (with a JSON of its labels and "
        "input size) beside it, or in --out if given, and exit",
    )
    run.add_argument(
        "--bundle",
        metavar="RUN_DIR",
        help="make a run's best model the bundled default for its task: weights/pretrained/"
        "<task>.keras, .json and .tflite (or in --out if given), and exit",
    )
    run.add_argument(
        "--average-epochs",
        metavar="N,N,...",
        type=epoch_list,
        help="with --bundle: bundle the mean of these epochs' checkpoints instead of best.keras",
    )
    run.add_argument(
        "--demo",
        action="store_true",
        help="train, evaluate and predict on a small synthetic data set",
    )
    return parser


def epoch_list(text: str) -> list[int]:
    """--average-epochs: comma-separated epoch numbers, 1 or more."""
    try:
        epochs = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected epoch numbers like 10,11,13"
        ) from None
    if not epochs or min(epochs) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected epoch numbers like 10,11,13")
    return epochs


def main(argv=None) -> int:
    tolerant_console()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.average_epochs and not args.bundle:
        parser.error("--average-epochs goes with --bundle RUN_DIR")
    try:
        if args.demo:
            from gender.demo import run_demo

            return run_demo(args.out)
        if args.export or args.bundle:
            return export(args)
        run_dir = train(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the run folder keeps its last finished epoch; continue with --resume",
            file=sys.stderr,
        )
        return 130
    print(f"run folder: {run_dir}")
    return 0


def export(args) -> int:
    """--export: .tflite, SavedModel and JSON beside the weights; --bundle: weights/pretrained/."""
    from gender.export import PRETRAINED_DIR, bundle, export_all

    out_given = args.out != build_parser().get_default("out")
    if args.export:
        paths = export_all(args.export, args.out if out_given else None)
    else:  # a run's best model becomes weights/pretrained/<task>.keras (what predict uses)
        out = args.out if out_given else PRETRAINED_DIR
        paths = bundle(args.bundle, out, average_epochs=args.average_epochs)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def train(args) -> Path:
    """Train as `args` say and return the run folder (--demo calls this too)."""
    import keras

    import models.layers  # the registry, and the custom layers --resume's load_model needs
    from models.split import split_frozen_prefix

    # The models/ side of training is handed in from here: gender/ code does not import models/.
    model_functions = ModelFunctions(
        get_entry=models.get_entry,
        create_model=models.create_model,
        default_trainable_blocks=models.default_trainable_blocks,
        set_trainable_blocks=models.set_trainable_blocks,
        split_frozen_prefix=split_frozen_prefix,
        load_model=keras.saving.load_model,
    )
    return gender.training.train(args, model_functions)


if __name__ == "__main__":
    sys.exit(main())
