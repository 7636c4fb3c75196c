"""Train a man/woman classifier and write a run folder under weights/; resume, export, bundle,
adapt.

python gender_train.py --data DIR --model cnn7 --epochs 60     # train (the default mode)
python gender_train.py --data DIR --by-person --model mobilenetv2 --backbone-weights imagenet
python gender_train.py resume weights/cnn7-20261122-101500      # continue an interrupted run
python gender_train.py export weights/cnn7-20261122-101500/best.keras   # + .tflite, SavedModel
python gender_train.py bundle weights/mobilenetv2-20261123-163729       # the bundled default
python gender_train.py demo                          # synthetic data, about 30 s on a CPU
python gender_train.py adapt --data MY_CAMERA --task pedestrian  # fine-tune on a new setting
TF_CONFIG='{"cluster": ...}' python gender_train.py --data SHARDS ...  # one per worker
The older flag forms still work: --resume RUN_DIR, --export WEIGHTS, --bundle RUN_DIR, --demo.
"""

import argparse
import contextlib
import io
import sys
from pathlib import Path

from gender import TASKS, THRESHOLD, UserError, interrupt
from gender.adapt import AdaptConfig, adapt, resume_adapt
from gender.augment import AUGMENTATIONS, DEFAULT_AUGMENT
from gender.cli import evaluate, predict
from gender.config import (
    DEFAULT_EPOCHS,
    TrainConfig,
    config_from_flags,
    read_info_file,
    read_run_info,
)
from gender.console import command, run_cli
from gender.demo import DEMO_DATA, DEMO_SIZE, make_synthetic_set
from gender.export import bundle, export_all
from gender.flags import (
    Parser,
    add_common_flags,
    add_person_flag,
    apply_common_flags,
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
    positive_seconds,
    probability,
    smoothing,
    tolerant_console,
)
from gender.models import list_models
from gender.predictor import PRETRAINED_DIR
from gender.training import nothing_to_resume, resume_config
from gender.training import train as train_run

MODES = ("train", "resume", "export", "bundle", "demo", "adapt")
# The flags that chose a mode before the modes were subcommands: `--resume RUN_DIR` is `resume
# RUN_DIR` (--demo takes no value).
MODE_FLAGS = {"--resume": "resume", "--export": "export", "--bundle": "bundle", "--demo": "demo"}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True, metavar="MODE")
    train = sub.add_parser(
        "train",
        help="train a model (the default: %(prog)s --data DIR ... trains)",
        description="Train a model and write its run folder (the default mode).",
        epilog=f"other modes: {command('train')} {{resume,export,bundle,demo,adapt}} --help",
    )
    add_train_flags(train)
    add_resume_mode(sub)
    add_export_mode(sub)
    add_bundle_mode(sub)
    demo = sub.add_parser("demo", help="train, evaluate and predict on a small synthetic data set")
    demo.add_argument("--out", default="weights", help="parent of the run folder (default weights)")
    adapt_parser = sub.add_parser(
        "adapt",
        help="fine-tune a trained model (default: the bundled face-fast or pedestrian one) on a "
        "few hundred labelled images of a new setting; a normal run folder",
        description="Adapt a trained model to your camera or photos from 25-500 labelled "
        "images in DIR/{man,woman}/ (docs/adapt.md: how many a setting needs).",
    )
    add_adapt_flags(adapt_parser)
    add_export_flag(adapt_parser)
    add_common_flags(parser)
    for mode_parser in sub.choices.values():
        add_common_flags(mode_parser)
    return parser


def add_resume_mode(sub) -> None:
    """resume RUN_DIR: continue an interrupted run, or train a finished one longer."""
    resume = sub.add_parser(
        "resume",
        help="continue an interrupted run from its last.keras, or a finished one with --epochs",
    )
    resume.add_argument("run_dir", metavar="RUN_DIR")
    resume.add_argument(
        "--epochs",
        type=positive_int,
        help="a new maximum number of epochs, above those done: trains a finished run longer",
    )
    add_devices_flag(resume)
    add_export_flag(resume)


def add_export_mode(sub) -> None:
    """export WEIGHTS: the LiteRT and SavedModel files beside a trained model."""
    export = sub.add_parser(
        "export",
        help="write a trained model as TFLite and SavedModel (with a JSON of its labels and "
        "input size) beside it, or in --out",
    )
    export.add_argument("weights", metavar="WEIGHTS", help="a .keras model or run folder")
    export.add_argument("--out", help="folder for the exports (default: beside the weights)")
    export.add_argument(
        "--calibration",
        metavar="DATA",
        help="images for the int8 export (a man/woman folder or a .txt table; ~1,000 are used); "
        "default the training folders in the run's run.json, else its val.txt beside the "
        "weights; without any no int8 export",
    )


def add_bundle_mode(sub) -> None:
    """bundle RUN_DIR: make a run's model (or an average) the bundled default."""
    bundle = sub.add_parser(
        "bundle",
        help="make a run's best model the bundled default for its task: weights/pretrained/"
        "<task>.keras, .json and .tflite (or in --out)",
    )
    bundle.add_argument("run_dir", metavar="RUN_DIR")
    bundle.add_argument("--out", help="folder for the bundled files (default weights/pretrained)")
    bundle.add_argument(
        "--average-epochs",
        metavar="N,N,...",
        type=epoch_list,
        help="bundle the mean of these epochs' checkpoints instead of best.keras",
    )
    bundle.add_argument(
        "--average-with",
        metavar="WEIGHTS",
        help="bundle the mean of the run's P(woman) and this other model's (a .keras file, run "
        "folder or bundled name such as face-fast): two networks err on different images",
    )
    bundle.add_argument(
        "--threshold",
        type=threshold_choice,
        help="store a decision threshold on P(woman) with the model: a number in (0, 1), or "
        "val for the one giving both classes the same error rate on the run's validation split "
        f"(default: none, i.e. {THRESHOLD:g})",
    )
    add_person_flag(
        bundle,
        "--by-person",
        "with --threshold val: every person of the validation split weighs the same (a split "
        "cut from video holds some people in hundreds of frames)",
    )


def add_adapt_flags(parser: argparse.ArgumentParser) -> None:
    """The adapt mode's flags; each becomes the AdaptConfig field of its name."""
    defaults = AdaptConfig(data="")
    parser.add_argument("--data", required=True, metavar="DIR", help="man/ and woman/ images")
    parser.add_argument(
        "--weights",
        help="the model to adapt, .keras or run folder (default: the bundled face-fast model, or "
        "with --task pedestrian the pedestrian one)",
    )
    parser.add_argument(
        "--task", choices=TASKS, help="which bundled model (default: the --weights' task, or face)"
    )
    parser.add_argument(
        "--out", default="weights", help="parent of the run folder (default weights)"
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=defaults.epochs,
        help="passes over the new images (default %(default)s); the learning rate falls to zero "
        "over them",
    )  # fmt: skip
    parser.add_argument(
        "--lr", type=positive_float, default=defaults.lr,
        help="Adam rate, cosine to zero (default %(default)g; 3e-4 forgot more in the bench)",
    )  # fmt: skip
    parser.add_argument(
        "--trainable-blocks", type=int, default=defaults.trainable_blocks,
        help="top backbone blocks that train, BatchNorm frozen (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--l2sp", type=non_negative_float, default=defaults.l2sp,
        help="pull of the weights toward the source model's, so its old settings are not "
        "forgotten (default %(default)g; 0 = none)",
    )  # fmt: skip
    parser.add_argument(
        "--replay", metavar="DIR", default=defaults.replay,
        type=lambda text: None if text == "none" else text,
        help="images of the old setting trained alongside, so it is not forgotten: auto (the "
        "source run's training folders, when they are here), a man/woman folder, or none "
        "(default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--replay-images", type=int, default=defaults.replay_images,
        help="at most this many replayed images, no more than new ones (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--folds", type=int, default=defaults.folds,
        help="cross-validation folds choosing the threshold (default %(default)s; 0: the "
        "source model's threshold)",
    )  # fmt: skip
    parser.add_argument(
        "--unlabelled", metavar="DIR",
        help="crops of the same setting without labels (a folder in any layout, or a truth "
        "table whose labels are ignored): the final fit self-trains on their confident "
        "pseudo-labels (docs/adapt.md)",
    )  # fmt: skip
    add_person_flag(parser, "--by-person", "folds keep each person's images together")
    parser.add_argument(
        "--detect-faces", action="store_true",
        help="photos, not face crops: train on each image's largest face, as the bundled model",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=defaults.seed,
        help="random seed of the folds, the replayed images, the shuffle and the augmentation "
        "(default %(default)s)",
    )  # fmt: skip


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """The train mode's flags, in groups; each becomes the TrainConfig field of its name."""
    add_data_flags(parser.add_argument_group("data"))
    add_model_flags(parser.add_argument_group("model"))
    add_transfer_flags(
        parser.add_argument_group("transfer models (vgg16, mobilenetv2, resnet50/101/152)")
    )
    add_training_flags(parser.add_argument_group("training"))
    add_run_flags(parser.add_argument_group("run"))


def add_data_flags(data: argparse._ArgumentGroup) -> None:
    """Which images train and validate, and how they are cut and augmented."""
    data.add_argument(
        "--data",
        nargs="+",
        metavar="DIR",
        help="folder(s) with man/ and woman/ (or train/ and val/ holding them); "
        "several folders are pooled, each split on its own",
    )
    data.add_argument(
        "--val-split",
        type=fraction,
        default=0.2,
        help="validation fraction when --data has no val/ folder (default 0.2)",
    )
    add_person_flag(data, "--by-person", "split so no person is on both sides")
    data.add_argument(
        "--detect-faces",
        action="store_true",
        help="train on each image's largest detected face, aligned and cropped "
        "(images without a face are left out and counted); or crop once with "
        f"{command('dataset')} crop",
    )
    data.add_argument(
        "--augment",
        default=DEFAULT_AUGMENT,
        help=f"comma list from {','.join(AUGMENTATIONS)}, or none (default %(default)s)",
    )


def add_model_flags(model: argparse._ArgumentGroup) -> None:
    """Which network, for which task, at which input size."""
    model.add_argument(
        "--model",
        default="cnn7",
        choices=list_models(),
        help="architecture: small CNNs trained from scratch (cnn*) or ImageNet transfer "
        "models (default %(default)s)",
    )
    model.add_argument(
        "--task",
        choices=TASKS,
        default="face",
        help="what the images show, stored in run.json: face models detect faces "
        "in photos at prediction, pedestrian models never do (default face)",
    )
    model.add_argument(
        "--image-size", help="HxW or N, each side 32 to 1024 (default: the model's own size)"
    )


def add_transfer_flags(model: argparse._ArgumentGroup) -> None:
    """The transfer models' backbone: its weights, how much of it trains, and when."""
    model.add_argument(
        "--backbone-weights",
        default="imagenet",
        help="transfer models (vgg16, mobilenetv2, resnet*): imagenet (download), a local "
        ".weights.h5 file, or none (random init) (default imagenet; for faceresnet: its "
        "converted dlib weights in weights/pretrained/)",
    )
    model.add_argument(
        "--trainable-blocks",
        type=int,
        help="top backbone blocks fine-tuned after the head, 0 = frozen backbone "
        "(default vgg16 1, mobilenetv2 0, resnet* 1 = conv5, faceresnet 0)",
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
        type=positive_float,
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
        "(if --augment has flip), then random --augment draws; a phase caches no more "
        "than it has epochs (default 2)",
    )


def add_training_flags(train: argparse._ArgumentGroup) -> None:
    """The optimisation: epochs, batch, rate, stopping, and how the loss weighs images."""
    train.add_argument(
        "--epochs", type=positive_int, help=f"maximum epochs, 1 or more (default {DEFAULT_EPOCHS})"
    )
    train.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="images per training step (default %(default)s)",
    )
    train.add_argument("--lr", type=positive_float, help="learning rate (default: the model's own)")
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
    train.add_argument(
        "--balance-groups",
        metavar="GROUPS",
        help="weight the loss so man and woman weigh the same within each group: a preset "
        "(subset: the camera network of SUBSET__name files; bfw-ethnicity, utk-age, utk-race), "
        "a regex whose group 1 is the group, or a CSV of path,group, as "
        f"{command('map')} --groups; "
        "replaces the class weights",
    )
    add_person_flag(
        train,
        "--weigh-persons",
        "every person weighs the same in the training and validation loss, however many images "
        "(video frames) they are in, and the classes are balanced on those weights",
    )
    train.add_argument(
        "--label-smoothing",
        type=smoothing,
        metavar="S",
        default=0.0,
        help="train towards s/2 and 1 - s/2 instead of 0 and 1, so confident answers "
        "cost something (default 0)",
    )
    train.add_argument(
        "--seed",
        type=int,
        default=1337,
        help="random seed of the split, the initial weights, the shuffle and the augmentation "
        "(default %(default)s)",
    )


def add_run_flags(run: argparse._ArgumentGroup) -> None:
    """Where the run folder goes, what it keeps, and where the run trains."""
    run.add_argument("--out", default="weights", help="parent of the run folder (default weights)")
    run.add_argument(
        "--keep",
        type=int,
        default=3,
        help="epoch checkpoints kept besides best.keras and last.keras: the newest N "
        "(default 3; 0 = all, e.g. for bundle --average-epochs over older epochs)",
    )
    add_export_flag(run)
    add_devices_flag(run)


def add_devices_flag(parser) -> None:
    """--devices, --ray-workers and --ray: where to train, not what; so not part of
    the TrainConfig."""
    parser.add_argument(
        "--ray-workers",
        type=positive_int,
        metavar="N",
        help="train on N workers that Ray places (2 or more; needs the ray extra): a local Ray "
        "started for the run, or the cluster of --ray ADDRESS or RAY_ADDRESS",
    )
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="with --ray-workers: the Ray cluster to join (default RAY_ADDRESS, else local)",
    )
    parser.add_argument(
        "--devices",
        default="auto",
        help="auto: all local GPUs when there are 2+, or the workers TF_CONFIG names "
        "(docs/scaling.md); a list such as gpu:0,gpu:1; or default (one device)",
    )
    parser.add_argument(
        "--peer-timeout",
        type=positive_seconds,
        metavar="SECONDS",
        default=300.0,
        help="multi-worker: how long each worker waits for the others to start before it "
        "gives up, saying which addresses it waited for (default %(default)g)",
    )


def add_export_flag(parser) -> None:
    """--no-export: training ends by exporting best.keras for LiteRT unless told not to."""
    parser.add_argument(
        "--no-export",
        action="store_true",
        help="skip the LiteRT export of the best model at the end (prediction then runs the "
        "Keras model: seconds instead of a fraction of one)",
    )


def threshold_choice(text: str) -> str | float:
    """bundle --threshold: 'val' or a probability."""
    return text if text == "val" else probability(text)


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


def with_mode(argv: list[str]) -> list[str]:
    """argv with its mode first: the older `--resume RUN_DIR` form, or `train` by default."""
    if argv and argv[0] in MODES:
        return argv
    for k, arg in enumerate(argv):
        flag, _, value = arg.partition("=")
        if flag not in MODE_FLAGS:
            continue
        if flag == "--demo":
            return ["demo", *argv[:k], *argv[k + 1 :]]
        if value:
            return [MODE_FLAGS[flag], value, *argv[:k], *argv[k + 1 :]]
        return [MODE_FLAGS[flag], *argv[k + 1 : k + 2], *argv[:k], *argv[k + 2 :]]
    return ["train", *argv]


def main(argv: list[str] | None = None) -> int:
    tolerant_console()
    argv = with_mode(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    if argv[0] != "bundle" and any(a.split("=")[0] == "--average-epochs" for a in argv):
        parser.error("--average-epochs goes with --bundle RUN_DIR")
    args = parser.parse_args(argv)
    apply_common_flags(args)
    if args.mode == "train" and not args.data:  # before TensorFlow loads: a usage error is quick
        print("error: --data is required (or demo, or resume RUN_DIR)", file=sys.stderr)
        return 2
    return run_cli(lambda: run_mode(args))


def run_mode(args: argparse.Namespace) -> int:
    """The work of one mode; what an interruption keeps is said by the mode itself."""
    if args.mode == "demo":
        return run_demo(args.out)
    if args.mode in ("export", "bundle"):
        return export(args)
    if args.mode == "adapt":
        run_dir = adapt(config_from_flags(AdaptConfig, args))
    elif args.mode == "resume" and read_run_info(Path(args.run_dir)).adapt is not None:
        # an adapted run continues with adapt's recipe, not the training one (cosine rate,
        # replay, L2-SP, no validation split; the threshold it chose is kept)

        if args.epochs:
            raise UserError(
                f"--epochs: {args.run_dir} is an adapt run; its cosine rate is fixed to the "
                "epochs it was started with: resume it without --epochs"
            )
        run_dir = resume_adapt(args.run_dir)
    elif args.mode == "resume":
        finished = nothing_to_resume(args.run_dir, args.epochs)
        if finished:
            print(finished)
            return 0
        config, resume = resume_config(args.run_dir, args.epochs), args.run_dir
        run_dir = train(config, resume, args.devices, args.peer_timeout, args)
    else:
        run_dir = train(train_config(args), None, args.devices, args.peer_timeout, args)
    if run_dir is None:  # a multi-worker worker, which writes no run folder
        return 0
    if not args.no_export:
        interrupt.keep(
            f"{run_dir} is complete; its LiteRT export was not written: "
            f"{command('train')} export {run_dir / 'best.keras'}"
        )
        export_best(run_dir)
    print(f"run folder: {run_dir}")
    return 0


def export_best(run_dir: Path) -> None:
    """The run's best model as LiteRT files beside it (float32, and int8 calibrated on the
    training images), so that predicting with the run is as quick as with the bundled model.
    A failed export leaves the trained run as it is and says how to try again."""
    said = io.StringIO()  # the calibration lists the training images again: no second report
    try:
        with contextlib.redirect_stderr(said):
            paths = export_all(run_dir / "best.keras", saved_model=False)
    except (UserError, OSError, ValueError) as err:
        print(
            f"warning: the LiteRT export failed ({err}); the run is complete, and "
            f"{command('train')} export {run_dir} tries again",
            file=sys.stderr,
        )
        return
    finally:
        repeated = [line for line in said.getvalue().splitlines() if line.endswith("(skipped)")]
        print("\n".join(set(said.getvalue().splitlines()) - set(repeated)), file=sys.stderr, end="")
    print("exported for fast prediction: " + ", ".join(p.name for p in paths.values()))


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The train mode's flags as a TrainConfig (every field is a flag of the same name)."""
    return config_from_flags(
        TrainConfig, args, epochs=args.epochs or DEFAULT_EPOCHS, data=args.data or []
    )


def train(
    config: TrainConfig,
    resume=None,
    devices: str = "auto",
    peer_timeout: float | None = None,
    args: argparse.Namespace | None = None,
) -> Path | None:
    """Train as `config` says (continuing the run folder `resume`) and return the run folder;
    None on a multi-worker worker other than the chief (it writes no run folder). With
    --ray-workers in `args`, the workers run on Ray and this process waits for them."""
    if args is not None and args.ray_workers:
        from gender.ray_train import train_on_ray

        return train_on_ray(config, resume, args.ray_workers, args.ray, args.verbose, peer_timeout)
    if args is not None and args.ray:
        raise UserError("--ray ADDRESS goes with --ray-workers N")

    return train_run(config, resume, devices, peer_timeout)


def export(args: argparse.Namespace) -> int:
    """export: .tflite, SavedModel and JSON beside the weights; bundle: weights/pretrained/."""
    if args.mode == "export":
        interrupt.keep("earlier exports of these weights, if any, are kept whole")
        paths = export_all(args.weights, args.out, args.calibration)
    else:  # a run's best model becomes weights/pretrained/<task>.keras (what predict uses)
        if args.by_person and args.threshold != "val":
            raise UserError("--by-person weighs the validation persons for --threshold val")
        paths = bundle(
            args.run_dir,
            args.out or PRETRAINED_DIR,
            average_epochs=args.average_epochs,
            threshold=args.threshold,
            threshold_by_person=args.by_person,
            average_with=args.average_with,
        )
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    if args.mode == "bundle":
        print(stored_decision(paths["json"], args.threshold))
    return 0


def stored_decision(info_path: Path, asked: "str | float | None") -> str:
    """What a bundle stored to decide with, from its JSON: the threshold and the uncertain band
    (what `--uncertain model` answers with), each with where it came from."""
    info = read_info_file(info_path)
    if info.threshold is None:
        return f"threshold: none stored, so {THRESHOLD:g} decides (--threshold val chooses one)"
    if isinstance(asked, float):
        source = "given with --threshold"
    else:  # val, or none asked: the run's own (an adapted run chose one by cross-validation)
        source = info.threshold_source or "stored with the run"
    lines = [f"threshold: {info.threshold:g} ({source})"]
    if info.uncertain_band:
        low, high = info.uncertain_band
        lines.append(
            f"uncertain band, for --uncertain model: {low:g}:{high:g} "
            f"({info.uncertain_band_source or 'stored with the model'})"
        )
    return "\n".join(lines)


def run_demo(out) -> int:
    """Train cnn3 on the synthetic set, then run the evaluation report and one prediction."""
    print(f"demo: writing a SYNTHETIC image set (squares = 'man', discs = 'woman') to {DEMO_DATA}")
    make_synthetic_set(DEMO_DATA)
    argv = ["--data", str(DEMO_DATA), "--model", "cnn3", "--image-size", str(DEMO_SIZE),
            "--epochs", "15", "--augment", "flip", "--out", str(out)]  # fmt: skip
    print(f"demo: {command('train')} " + " ".join(argv))
    run_dir = train(train_config(build_parser().parse_args(["train", *argv])))
    best = run_dir / "best.keras"
    print(f"\ndemo: {command('map')} {run_dir / 'val.txt'} {best}")
    status = evaluate.main([str(run_dir / "val.txt"), str(best)])
    image = DEMO_DATA / "woman" / "0000.png"
    # shapes, not faces: the face detector would find none, so classify the whole image
    print(f"\ndemo: {command('predict')} {image} {best} --no-detect")
    return status or predict.main([str(image), str(best), "--no-detect"])


if __name__ == "__main__":
    sys.exit(main())
