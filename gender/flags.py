"""What every CLI does at its edge: argparse types that refuse bad numbers, a console that prints
any file name.

The types raise argparse.ArgumentTypeError, so a bad value is one `usage:`/`error:` message with
exit status 2, as for any other argparse mistake.
"""

import argparse
import difflib
import math
import re
import sys
import typing
from collections.abc import Callable

from gender import TASKS, UserError, __version__
from gender.console import command, show_tensorflow_logs


class Parser(argparse.ArgumentParser):
    """argparse with a short usage error: one line, `error: ...`, with a "did you mean" for a
    mistyped flag and the command that lists every flag, instead of a usage block of 10-20
    lines above the one that matters."""

    def parse_known_args(
        self, args: "list[str] | None" = None, namespace: "argparse.Namespace | None" = None
    ) -> "tuple[argparse.Namespace, list[str]]":
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> "typing.NoReturn":
        parser = self._chosen_mode()
        hint = _did_you_mean(parser, message)
        self.exit(2, f"error: {message}{hint}; every flag: {parser.prog} --help\n")

    def _chosen_mode(self) -> argparse.ArgumentParser:
        """The mode's parser when argv names one (`gender_train.py adapt ...`), else this one:
        an unknown flag after a mode is reported by the top parser, but belongs to the mode."""
        argv = getattr(self, "_argv", [])
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and argv:
                return action.choices.get(argv[0], self)
        return self


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    """` (did you mean --epochs?)` for the unknown flags named in an argparse `message`."""
    if not message.startswith("unrecognized arguments: "):
        return ""
    known = [option for action in parser._actions for option in action.option_strings]
    guesses = []
    for word in message.removeprefix("unrecognized arguments: ").split():
        flag = word.split("=")[0]
        if flag.startswith("--"):
            guesses += difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
    return f" (did you mean {' or '.join(dict.fromkeys(guesses))}?)" if guesses else ""


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """--version and --verbose, on every command (and every gender_train.py mode)."""
    # a mode's parser is "gender_train.py train": the version line names the command alone
    command = parser.prog.split()[0]
    parser.add_argument("--version", action="version", version=f"{command} {__version__}")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's own start-up and log lines (hidden by default)",
    )


def apply_common_flags(args: argparse.Namespace) -> None:
    """What --verbose changes, before anything imports TensorFlow."""
    if getattr(args, "verbose", False):
        show_tensorflow_logs()


def positive_int(text: str) -> int:
    """An int of at least 1 (--batch-size, --epochs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def _bounded_float(text: str, inside: Callable[[float], bool], bounds: str) -> float:
    """float(text) if `inside` accepts it; nan and inf are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if math.isnan(value) or not inside(value):
        raise argparse.ArgumentTypeError(f"{text!r}: must be {bounds}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (--lr, --fine-tune-lr)."""
    return _bounded_float(text, lambda v: 0 < v < math.inf, "a finite number above 0")


def non_negative_float(text: str) -> float:
    """A finite number of at least 0 (adapt --l2sp: 0 turns the pull off)."""
    return _bounded_float(text, lambda v: 0 <= v < math.inf, "a finite number of at least 0")


def positive_seconds(text: str) -> float:
    """A time in seconds above 0, finite (--peer-timeout)."""
    return _bounded_float(text, lambda v: 0 < v < math.inf, "a number of seconds above 0")


def fraction(text: str) -> float:
    """A share from 0 up to but not including 1 (--val-split, --val)."""
    return _bounded_float(text, lambda v: 0 <= v < 1, "at least 0 and below 1")


def probability(text: str) -> float:
    """A number strictly between 0 and 1 (--threshold)."""
    return _bounded_float(text, lambda v: 0 < v < 1, "between 0 and 1 (exclusive)")


def uncertain_band(text: str) -> "tuple[float, float] | str":
    """LOW:HIGH, 0 <= LOW < HIGH <= 1: the P(woman) band answered `uncertain` (--uncertain);
    or "model": the band stored with the model (`resolve_band`)."""
    if text == "model":
        return text
    parts = text.split(":")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LOW:HIGH, e.g. 0.3:0.7")
    low, high = (_bounded_float(part, lambda v: 0 <= v <= 1, "between 0 and 1") for part in parts)
    if low >= high:
        raise argparse.ArgumentTypeError(f"{text!r}: LOW must be below HIGH")
    return low, high


def add_uncertain_flag(parser: argparse.ArgumentParser) -> None:
    """--uncertain LOW:HIGH, the same in every script that answers."""
    parser.add_argument(
        "--uncertain",
        type=uncertain_band,
        metavar="LOW:HIGH",
        help="answer 'uncertain' when LOW < P(woman) < HIGH (the band must hold the threshold); "
        "accuracy then counts the answered images only; 'model': the band stored by "
        f"{command('train')} bundle --threshold val (default: always answer)",
    )


def smoothing(text: str) -> float:
    """A label-smoothing amount, 0 (none) up to but not including 0.5 (no information left)."""
    return _bounded_float(text, lambda v: 0 <= v < 0.5, "at least 0 and below 0.5")


def crop_widths(text: str) -> tuple[float, float]:
    """A crop width in eye distances, W, or a range LOW:HIGH to draw each image's width from
    (`dataset.py crop --margin`); between 1 (the eyes at the edges) and 12."""
    parts = text.split(":")
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected W or LOW:HIGH")
    bounds = "between 1 and 12 eye distances"
    low, high = (_bounded_float(part, lambda v: 1 <= v <= 12, bounds) for part in (parts * 2)[:2])
    if low > high:
        raise argparse.ArgumentTypeError(f"{text!r}: LOW is above HIGH")
    return low, high


# Pedestrian file names start with the person number ("000_45_1.jpg" is person 000).
DEFAULT_PERSON_PATTERN = r"^(\d+)_"


def compile_id_regex(pattern: str) -> "re.Pattern":
    """A person-id regex compiled; ValueError saying why if it is not a regex or has no group 1
    (the id). The one check behind --by-person, --weigh-persons and `gender.data.person_ids`."""
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"{pattern!r}: not a valid regex ({err})") from None
    if regex.groups < 1:
        raise ValueError(f"{pattern!r}: needs a group, the person id: '^(\\d+)_'")
    return regex


def person_regex(text: str) -> str:
    """A person-id regex (--by-person, --weigh-persons): it compiles and has a group 1."""
    try:
        compile_id_regex(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def add_person_flag(parser: argparse.ArgumentParser, flag: str, purpose: str) -> None:
    """An optional person-id regex flag (`flag` alone takes the default pattern): one spelling,
    one check (`person_regex`) and one help tail for every command that groups by person."""
    parser.add_argument(
        flag,
        nargs="?",
        type=person_regex,
        const=DEFAULT_PERSON_PATTERN,
        metavar="REGEX",
        # %(const)s in quotes, not %(const)r: the repr would double the regex's backslash
        help=f"{purpose}; the person id is group 1 of REGEX on the file name (default "
        "'%(const)s': '000_45_1.jpg' is person 000; '^([^_]+__[^_.]+)' for SUBSET__ID_... names)",
    )


# how a trained model runs (gender.predictor.load_backend)
BACKENDS = ("auto", "lite", "int8", "keras")


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """--task, --backend, --image-size and --batch-size, the same in every script that predicts."""
    parser.add_argument(
        "--task",
        choices=TASKS,
        help="bundled model to use when no weights are given (default face); with weights, "
        "a model trained for the other task is refused",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="lite: the float32 .tflite export beside the weights, run by LiteRT (no "
        "TensorFlow start-up); int8: its int8 export (.int8.tflite, ~2x faster) with float32 "
        "answering again where int8 is near the threshold, so the answers are float32's; "
        "keras: the .keras model under TensorFlow; auto: int8 when both exports are there, "
        "else lite, else keras (default auto)",
    )
    parser.add_argument(
        "--no-task-check",
        action="store_true",
        help="no warning when the images do not look like the model's task (a portrait given "
        "to the pedestrian model, full-body crops to the face model)",
    )
    parser.add_argument("--image-size", help="must match the model's; read from run.json")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        help="images per model call; more is faster until memory runs out (default %(default)s)",
    )


def add_ray_flag(parser: argparse.ArgumentParser) -> None:
    """--ray [ADDRESS]: predict on Ray (the optional extra; docs/scaling.md)."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="classify on Ray, actors on every CPU: alone, a local Ray started for the command "
        "(or the cluster RAY_ADDRESS names); with ADDRESS, that cluster's (needs the ray extra)",
    )


def add_min_face_flag(parser: argparse.ArgumentParser) -> None:
    """--min-face, the same in every script that detects faces."""
    parser.add_argument(
        "--min-face",
        type=positive_int,
        metavar="PIXELS",
        help="smallest face side to look for (group photos with small faces); default a tenth "
        "of each photo's shorter side, at least 20 px",
    )


def tolerant_console() -> None:
    """Print file names that are not valid UTF-8 (e.g. b'caf\\xe9.jpg') as escapes, not a crash.

    Python keeps such names as lone surrogates; a strict stdout raises UnicodeEncodeError on them.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def resolve_band(
    band: "tuple[float, float] | str | None",
    stored: "typing.Sequence[float] | None",
    threshold: float,
) -> tuple[float, float] | None:
    """The --uncertain band to use: as given, or with "model" the one `stored` with the model
    (its JSON's uncertain_band); checked against the threshold."""
    if band == "model":
        if stored is None:
            raise UserError(
                f"--uncertain model: this model stores no band ({command('train')} bundle "
                "--threshold val stores one); give LOW:HIGH"
            )
        band = tuple(stored)
    check_band(band, threshold)
    return band


def check_band(band: tuple[float, float] | None, threshold: float) -> None:
    """A band must hold the threshold: else one side of it would answer against the threshold."""
    if band is not None and not band[0] <= threshold <= band[1]:
        raise UserError(
            f"--uncertain {band[0]:g}:{band[1]:g} does not hold the threshold {threshold:g}; "
            "choose LOW at or below it and HIGH at or above it"
        )
