"""What the toolkit says on stderr while it works: warnings and a progress count."""

import contextlib
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# Each job's installed command and the checkout's script for it.
COMMANDS = {
    "train": ("gender-train", "gender_train.py"),
    "predict": ("gender-predict", "gender_single_predict.py"),
    "map": ("gender-map", "gender_mAP.py"),
    "dataset": ("gender-dataset", "dataset.py"),
}
CLI_MODULES = {"train": "train", "predict": "predict", "map": "evaluate", "dataset": "dataset"}


def command(job: str) -> str:
    """How to run `job` ("train", "predict", "map", "dataset") the way this process was run, for
    the hints the toolkit prints: `gender-map` after an installed command, `python gender_mAP.py`
    in a checkout, `python -m gender.cli.evaluate` after `python -m`."""
    installed, script = COMMANDS[job]
    ran = Path(sys.argv[0] if sys.argv and sys.argv[0] else "")
    if ran.name.startswith("gender-"):
        return installed
    if ran.parent.name == "cli" and ran.parent.parent.name == "gender":
        return f"python -m gender.cli.{CLI_MODULES[job]}"
    return f"python {script}"


def warn(message: str) -> None:
    """One line `warning: ...` on stderr (a skipped file, an odd input)."""
    print(f"warning: {message}", file=sys.stderr)


class Progress:
    """A one-line progress count on stderr (a line per 10% when stderr is not a terminal)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.tty = sys.stderr.isatty()
        self.shown = -1

    def update(self, done: int) -> None:
        if self.tty:
            print(f"\r{self.label}: {done}/{self.total}", end="", file=sys.stderr, flush=True)
            return
        tenth = done * 10 // max(self.total, 1)
        if tenth > self.shown:
            self.shown = tenth
            print(f"{self.label}: {done}/{self.total}", file=sys.stderr, flush=True)

    def done(self) -> None:
        """Close the count: the final figure on a terminal (the periodic lines already end on
        it otherwise, so it is not printed twice)."""
        if self.tty:
            print(f"\r{self.label}: {self.total}/{self.total}", file=sys.stderr, flush=True)
        elif self.shown < 10:
            print(f"{self.label}: {self.total}/{self.total}", file=sys.stderr, flush=True)


# TensorFlow's and LiteRT's own lines on fd 2: absl-formatted logs ("I0000 00:00:...", "W0000",
# "E0000"), absl's notice before its set-up, the converter's calibration line, LiteRT's banner.
TF_CHATTER = re.compile(
    r"^([IWE]\d{4} \d\d:\d\d:|WARNING: All log messages before absl|fully_quantize: |"
    r"INFO: Created TensorFlow Lite|INFO: Initialized TensorFlow Lite)"
)


def is_tf_chatter(line: str) -> bool:
    """A line TensorFlow, absl or LiteRT wrote for themselves, not for the toolkit's user."""
    return bool(TF_CHATTER.match(line))


@contextlib.contextmanager
def filtered_stderr(drop: Callable[[str], bool] = is_tf_chatter) -> Iterator[None]:
    """Capture file descriptor 2 (C++ code writes there, past sys.stderr) and pass on the lines
    `drop` refuses; if the block raises, pass on every line, since they may explain why."""
    sys.stderr.flush()
    saved = os.dup(2)
    failed = False
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines = sink.read().decode(errors="replace").splitlines()
            kept = [line for line in lines if failed or not drop(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


def run_cli(work: Callable[[], int | None]) -> int:
    """Run a CLI's work and turn how it ends into an exit status, printing one line.

    A UserError is `error: ...` (status 2); SIGINT or SIGTERM (`gender.interrupt`) is
    `interrupted (SIGTERM): <what was kept>` (status 130 or 143); a write failure that reached
    here (a full disk) is `error: PATH: cannot be written (...)` (status 2); a reader that went
    away (`... | head`) ends it quietly with status 141, as for `cat`. None is status 0.
    """
    from gender import UserError, interrupt
    from gender.atomic import WRITE_ERRORS

    try:
        with interrupt.handled():
            try:
                status = work() or 0
                sys.stdout.flush()  # here, not at exit: a closed pipe is then caught below
                return status
            except BrokenPipeError:
                raise
            except BaseException as err:
                # a signal; or any error it caused (raised inside a callback from C++ code,
                # an interrupted conversion comes back as the converter's own error)
                signum = getattr(err, "signum", None) or interrupt.stopping()
                if signum is None and isinstance(err, KeyboardInterrupt):
                    signum = signal.SIGINT  # Ctrl-C before the handlers were installed
                if signum is None:
                    raise
                print(f"\n{interrupt.stop_line(signum)}", file=sys.stderr, flush=True)
                return 128 + signum
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _discard_stdout()
        return 128 + signal.SIGPIPE
    except OSError as err:
        if err.errno not in WRITE_ERRORS:
            raise
        where = err.filename or "an output file"
        print(f"error: {where}: cannot be written ({err.strerror})", file=sys.stderr)
        return 2


def _discard_stdout() -> None:
    """Point stdout at /dev/null once its reader has gone, so the interpreter's last flush of
    the lines still buffered does not fail again (and print a traceback) on the way out."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's capture): nothing to flush at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
