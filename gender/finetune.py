"""The fine-tuning core that training (train, resume) and adaptation share.

A model whose bottom is frozen trains on its frozen prefix's outputs, computed once per image
and view (`prepare_inputs`: the frozen-prefix cache), so an epoch runs only the top part; a
model that trains whole is fed freshly augmented images every epoch. `FitInputs` hides which of
the two a caller has; `fit` compiles and fits it; `balanced_class_weight` is the one class
weighting both use.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import gender.data
import gender.models as models
from gender import CLASS_NAMES
from gender.augment import build_augmenter
from gender.features import compute_features

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


@dataclass
class FitInputs:
    """What the trainable part of a model is fed, and that part."""

    model: object  # the whole keras.Model (what is saved)
    fit_model: object  # the part that trains: the top of `model` when the prefix is cached
    prefix: object | None  # the frozen bottom whose outputs are cached; None: not cached
    x: np.ndarray  # (views, N, ...) cached prefix outputs, or (N, H, W, 3) uint8 images
    augment: Callable | None  # live augmentation of image batches (None when cached)

    @property
    def cached(self) -> bool:
        return self.prefix is not None

    def __len__(self) -> int:
        return self.x.shape[1] if self.cached else len(self.x)

    def rows(self, index: np.ndarray) -> "FitInputs":
        """The same inputs for images `index` only."""
        x = self.x[:, index] if self.cached else self.x[index]
        return FitInputs(self.model, self.fit_model, self.prefix, x, self.augment)

    def original(self) -> np.ndarray:
        """What `fit_model` takes for each image as it is (no view, no augmentation)."""
        return self.x[0] if self.cached else self.x

    def encode(self, images: np.ndarray) -> np.ndarray:
        """What `fit_model` takes for other `images` (validation, unlabelled) as they are."""
        return compute_features(self.prefix, images, ("original",))[0] if self.cached else images

    def predict(self, index: np.ndarray | None = None) -> np.ndarray:
        """P(woman) of the images `index` (all by default), as they are, with current weights."""
        x = self.original() if index is None else self.original()[index]
        return self.fit_model.predict(x, batch_size=64, verbose=0).ravel()

    def dataset(
        self,
        labels: np.ndarray,
        batch_size: int,
        seed: int,
        sample_weights: np.ndarray | None = None,
    ) -> "tf.data.Dataset":
        """Shuffled training batches: one cached view of each image at random, or the images
        augmented afresh."""
        return gender.data.make_dataset(
            self.x, labels, batch_size, shuffle=True, seed=seed, views=self.cached,
            augment=self.augment, sample_weights=sample_weights,
        )  # fmt: skip


def cache_views(augment_names: Sequence[str], count: int) -> tuple[str, ...]:
    """Which versions of each image to cache: original, mirror, then random augmentations."""
    views = ["original"]
    if "flip" in augment_names:
        views.append("flip")
    if set(augment_names) - {"flip"}:
        views += ["augment"] * (count - len(views))
    return tuple(views[: max(1, count)])


def prepare_inputs(
    model: "keras.Model",
    images: np.ndarray,
    augment_names: Sequence[str],
    views: int,
    seed: int,
    *,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    announce: Callable | None = None,
) -> FitInputs:
    """The inputs of `model` (its trainable flags already set) for `images`.

    With `cache` and a frozen bottom, the bottom's outputs for up to `views` versions of each
    image (see cache_views); `announce(prefix, views)` is called before that pass, which takes
    minutes on a large set. Otherwise the images themselves, augmented live.
    """
    from gender.models.split import split_frozen_prefix

    augment = build_augmenter(augment_names, seed)
    split = split_frozen_prefix(model) if cache else None
    if not split:
        return FitInputs(model, model, None, images, augment)
    prefix, fit_model = split
    chosen = cache_views(augment_names, views)
    if announce is not None:
        announce(prefix, chosen)
    features = compute_features(prefix, images, chosen, cache_dir=cache_dir, augment=augment)
    return FitInputs(model, fit_model, prefix, features, None)


def balanced_class_weight(labels: np.ndarray) -> dict[int, float]:
    """Class weights n / (2 n_c): each class weighs as much in the loss as the other."""
    counts = np.bincount(np.asarray(labels, int), minlength=len(CLASS_NAMES))
    return {i: len(labels) / (2 * max(int(c), 1)) for i, c in enumerate(counts)}


def fit(
    inputs: FitInputs,
    labels: np.ndarray,
    *,
    rate: "float | keras.optimizers.schedules.LearningRateSchedule",
    epochs: int,
    batch_size: int,
    seed: int,
    initial_epoch: int = 0,
    steps_done: int = 0,
    keep_optimizer: bool = False,
    class_weight: dict | None = None,
    sample_weights: np.ndarray | None = None,
    validation: "tf.data.Dataset | None" = None,
    callbacks: Sequence = (),
    label_smoothing: float = 0.0,
    verbose: int | str = 2,
) -> "keras.callbacks.History":
    """Fit `inputs.fit_model` on `labels` from `initial_epoch` to `epochs`.

    Args:
        rate: Adam's learning rate, a number or a keras schedule.
        steps_done: optimizer steps already taken (a resumed schedule reads the step count).
        keep_optimizer: keep the model's compiled optimizer and its state (a resumed run's
            first phase), when the whole model trains.
        validation: a dataset of (inputs as `fit_model` takes them, labels[, weights]).
    """
    fit_model = inputs.fit_model
    if not (keep_optimizer and fit_model is inputs.model and fit_model.optimizer is not None):
        models.compile_model(fit_model, rate, label_smoothing)
    if steps_done:
        fit_model.optimizer.build(fit_model.trainable_variables)
        fit_model.optimizer.iterations.assign(steps_done)
    return fit_model.fit(
        inputs.dataset(labels, batch_size, seed, sample_weights),
        validation_data=validation,
        epochs=epochs,
        initial_epoch=initial_epoch,
        class_weight=class_weight,
        callbacks=list(callbacks),
        shuffle=False,  # the dataset shuffles itself
        verbose=verbose,
    )
