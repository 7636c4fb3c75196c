"""Shared, non-model code of the gender toolkit (data, augmentation, metrics, runs)."""

import importlib.abc
import importlib.util
import os
import sys

__version__ = "0.2.0"

# Whether the user chose TensorFlow's log level: their choice wins over the quiet start below.
USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")

# Set before anything imports TensorFlow: the toolkit is Keras-on-TensorFlow only, and TF's C++
# start-up chatter (CUDA probing, oneDNN notices) would bury the one-line messages users need.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow turns its oneDNN kernels on by default only on some CPUs (not on the first AMD EPYC
# we developed on). Measured there on 2 cores: cnn7 150x150 trains 1.7-1.9x faster with them and
# MobileNetV2 1.4x; outputs move by float round-off only. A user's setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# numpy's OpenBLAS starts a thread per core at import, and they spin: 0.05-0.12 CPU s per process
# that decoding and the model need (a cold prediction used 0.26 CPU s with them, 0.14 without).
# The toolkit does no large matrix products in numpy: TensorFlow and LiteRT have their own threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# OpenCV logs its own decoder failures on stderr ("[ERROR:0@0.006] global loadsave.cpp ... can't
# read header" for a file with a GIF header and nothing after it) before the toolkit's one-line
# error naming the file; only its fatal messages stay.
os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")
# Ray's C++ core (the optional --ray) logs notes for Ray's developers on stderr, such as
# "constructor arguments in the object store" for every Ray Data actor pool; they stay in Ray's
# session logs. Set here so that the workers of a local Ray, started from this process, inherit it.
USER_RAY_LOG_LEVEL = os.environ.get("RAY_BACKEND_LOG_LEVEL")
os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")

CLASS_NAMES = ("man", "woman")  # label 0, label 1; models output P(CLASS_NAMES[1])
TASKS = ("face", "pedestrian")  # what a model's images show; one bundled model each
THRESHOLD = 0.5  # P(woman) at or above which the answer is woman, unless a model stores its own


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


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
        from gender.console import filtered_stderr

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
_SHOWN = {"tensorflow_logs": False}  # set by --verbose (show_tensorflow_logs)
# A user who set TF_CPP_MIN_LOG_LEVEL to 0 or 1 asked for TensorFlow's INFO lines: they get them.
if USER_TF_LOG_LEVEL not in ("0", "1") and "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _QUIET_TENSORFLOW)


def tensorflow_logs_shown() -> bool:
    """True after --verbose, or when the user set TF_CPP_MIN_LOG_LEVEL to 0 or 1 (INFO lines)."""
    return USER_TF_LOG_LEVEL in ("0", "1") or _SHOWN["tensorflow_logs"]


def show_tensorflow_logs() -> None:
    """--verbose: TensorFlow's start-up lines and INFO logs appear again (call before it loads),
    and Ray's own log lines (before Ray starts)."""
    _SHOWN["tensorflow_logs"] = True
    if _QUIET_TENSORFLOW in sys.meta_path:
        sys.meta_path.remove(_QUIET_TENSORFLOW)
    if USER_TF_LOG_LEVEL is None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    if USER_RAY_LOG_LEVEL is None:
        os.environ["RAY_BACKEND_LOG_LEVEL"] = "info"
