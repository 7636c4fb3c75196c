"""Shared, non-model code of the gender toolkit (data, augmentation, metrics, runs)."""

import os

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

CLASS_NAMES = ("man", "woman")  # label 0, label 1; models output P(CLASS_NAMES[1])
TASKS = ("face", "pedestrian")  # what a model's images show; one bundled model each


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""
