"""Shared, non-model code of the gender toolkit (data, augmentation, metrics, runs)."""

import os

# Set before anything imports TensorFlow: the toolkit is Keras-on-TensorFlow only, and TF's C++
# start-up chatter (CUDA probing, oneDNN notices) would bury the one-line messages users need.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CLASS_NAMES = ("man", "woman")  # label 0, label 1; models output P(CLASS_NAMES[1])
TASKS = ("face", "pedestrian")  # what a model's images show; one bundled model each


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""
