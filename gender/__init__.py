"""Shared, non-model code of the gender toolkit (data, augmentation, metrics, runs).

Importing it changes nothing outside it: the commands' quiet environment (TensorFlow's log level,
the Keras backend, thread counts) is set by `gender.console.quiet()`, which `gender.cli` calls.
"""

__version__ = "0.2.0"

CLASS_NAMES = ("man", "woman")  # label 0, label 1; models output P(CLASS_NAMES[1])
TASKS = ("face", "pedestrian")  # what a model's images show; one bundled model each
THRESHOLD = 0.5  # P(woman) at or above which the answer is woman, unless a model stores its own


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""
