"""What the toolkit says on stderr while it works: warnings, a progress count, TensorFlow's own
lines filtered out, and `quiet()`, which makes a process a quiet command."""

import contextlib
import importlib.abc
import importlib.util
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from gender import UserError, interrupt
from gender.atomic import WRITE_ERRORS

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


# A command's environment, set before numpy or TensorFlow loads; a variable the user set keeps
# their value.
QUIET_ENVIRONMENT = {
    # The toolkit is Keras-on-TensorFlow only.
    "KERAS_BACKEND": "tensorflow",
    # TF's C++ start-up chatter (CUDA probing, oneDNN notices) would bury the one-line messages
    # users need.
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # TensorFlow turns its oneDNN kernels on by default only on some CPUs (not on the first AMD
    # EPYC we developed on). Measured there on 2 cores: cnn7 150x150 trains 1.7-1.9x faster with
    # them and MobileNetV2 1.4x; outputs move by float round-off only.
    "TF_ENABLE_ONEDNN_OPTS": "1",
    # numpy's OpenBLAS starts a thread per core at import, and they spin: 0.05-0.12 CPU s per
    # process that decoding and the model need (a cold prediction used 0.26 CPU s with them,
    # 0.14 without). The toolkit does no large matrix products in numpy: TensorFlow and LiteRT
    # have their own threads.
    "OPENBLAS_NUM_THREADS": "1",
    # OpenCV logs its own decoder failures on stderr ("[ERROR:0@0.006] global loadsave.cpp ...
    # can't read header" for a file with a GIF header and nothing after it) before the toolkit's
    # one-line error naming the file; only its fatal messages stay.
    "OPENCV_LOG_LEVEL": "FATAL",
    # Ray's C++ core (the optional --ray) logs notes for Ray's developers on stderr, such as
    # "constructor arguments in the object store" for every Ray Data actor pool; they stay in
    # Ray's session logs. Set in the command's process, so the workers of a local Ray it starts
    # inherit it.
    "RAY_BACKEND_LOG_LEVEL": "fatal",
}
# The user's own TF_CPP_MIN_LOG_LEVEL and RAY_BACKEND_LOG_LEVEL, read by quiet() before it sets
# the defaults above: their choice wins over the quiet start and over --verbose.
_USER: dict[str, str | None] = {}
_SHOWN = {"tensorflow_logs": False}  # set by --verbose (show_tensorflow_logs)


def quiet() -> None:
    """Make this process a quiet command: QUIET_ENVIRONMENT's defaults, and TensorFlow's first
    import with its start-up lines dropped (unless the user set TF_CPP_MIN_LOG_LEVEL to 0 or 1).

    `gender.cli` calls it once, before any command's module loads numpy or TensorFlow, and so do
    the Ray actors, which are processes of a command too. A library user who imports `gender`
    keeps their environment; calling this is their choice. A second call does nothing.
    """
    if _USER:
        return
    for name in ("TF_CPP_MIN_LOG_LEVEL", "RAY_BACKEND_LOG_LEVEL"):
        _USER[name] = os.environ.get(name)
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    # A user who set TF_CPP_MIN_LOG_LEVEL to 0 or 1 asked for TensorFlow's INFO lines: they get
    # them.
    if _user_value("TF_CPP_MIN_LOG_LEVEL") not in ("0", "1") and "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, _QUIET_TENSORFLOW)


def _user_value(name: str) -> str | None:
    """The user's own value of `name`: as it was before quiet(), or as it is without it."""
    return _USER[name] if _USER else os.environ.get(name)


def tensorflow_logs_shown() -> bool:
    """True after --verbose, or when the user set TF_CPP_MIN_LOG_LEVEL to 0 or 1 (INFO lines)."""
    return _user_value("TF_CPP_MIN_LOG_LEVEL") in ("0", "1") or _SHOWN["tensorflow_logs"]


def show_tensorflow_logs() -> None:
    """--verbose: TensorFlow's start-up lines and INFO logs appear again (call before it loads),
    and Ray's own log lines (before Ray starts)."""
    _SHOWN["tensorflow_logs"] = True
    if _QUIET_TENSORFLOW in sys.meta_path:
        sys.meta_path.remove(_QUIET_TENSORFLOW)
    if _user_value("TF_CPP_MIN_LOG_LEVEL") is None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    if _user_value("RAY_BACKEND_LOG_LEVEL") is None:
        os.environ["RAY_BACKEND_LOG_LEVEL"] = "info"


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's import (and its device probe) with its own lines on stderr dropped.

    TensorFlow 2.21 writes 5-7 lines through absl before its logging is set up ("All log messages
    before absl::InitializeLog()", the oneDNN notice, "Could not find cuda drivers", a failed
    cuInit): TF_CPP_MIN_LOG_LEVEL does not reach them, so only the file descriptor can. If the
    import fails, everything it wrote is shown, so nothing that explains a failure is lost.
    """

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec):  # the importlib loader protocol
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr():
            self.loader.exec_module(module)
            module.config.list_physical_devices()  # the CUDA probe logs here, not at import
        # its Python logger's warnings ("N out of the last N calls ... triggered tf.function
        # retracing" when a model predicts batches of several sizes) speak to TF developers
        module.get_logger().setLevel("ERROR")


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Wraps the first import of tensorflow in `_QuietLoader` (Keras imports it lazily, from many
    places: one hook here instead of a wrapper at each)."""

    def find_spec(self, name, path, target=None):  # the importlib finder protocol
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


_QUIET_TENSORFLOW = _QuietTensorFlow()


def run_cli(work: Callable[[], int | None]) -> int:
    """Run a CLI's work and turn how it ends into an exit status, printing one line.

    A UserError is `error: ...` (status 2); SIGINT or SIGTERM (`gender.interrupt`) is
    `interrupted (SIGTERM): <what was kept>` (status 130 or 143); a write failure that reached
    here (a full disk) is `error: PATH: cannot be written (...)` (status 2); a reader that went
    away (`... | head`) ends it quietly with status 141, as for `cat`. None is status 0.
    """
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
