"""Train-only augmentation, chosen by name on the command line.

The names cover the geometric (shear, zoom) and photometric (flip, brightness, contrast, hue,
saturation, noise) augmentations first tried on these data, plus rotation and translation so a
face model also copes with looser, off-centre crops.
Augmentation runs in the tf.data pipeline of the training split only; it is never part of the
model, so validation, evaluation and export see the images unchanged.
"""

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from gender import UserError

if TYPE_CHECKING:
    from keras.layers import Layer


def _training_only_layer(keras: ModuleType, seed: int, name: str, transform: Callable) -> "Layer":
    """A Keras layer running transform(images, generator) in training and passing the images
    through otherwise; `generator` is the layer's own seeded keras.random.SeedGenerator."""

    class TrainingOnly(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.generator = keras.random.SeedGenerator(seed)

        def call(self, images, training=True):
            return transform(images, self.generator) if training else images

    return TrainingOnly(name=name)


def band_erase(keras: ModuleType, seed: int, rate: float = 0.5) -> "Layer":
    """A layer that, on `rate` of the images, replaces the band outside a central box (50-80%
    of the width, 64-94% of the height, its centre moved by up to 3%) with the image's mean
    colour: hair, ears, neck and background go, the inner face stays where it was, at its scale
    (what `tight` does by cropping in, without enlarging the face)."""
    ops = keras.ops

    def erase(images, generator):
        shape = ops.shape(images)
        draws = keras.random.uniform((shape[0], 5), seed=generator)

        def per_image(column, low, span):
            return (low + span * draws[:, column])[:, None, None]

        half_width, half_height = per_image(0, 0.25, 0.15), per_image(1, 0.32, 0.15)
        centre_x, centre_y = per_image(2, 0.47, 0.06), per_image(3, 0.47, 0.06)
        rows = (ops.arange(shape[1], dtype="float32") + 0.5) / ops.cast(shape[1], "float32")
        cols = (ops.arange(shape[2], dtype="float32") + 0.5) / ops.cast(shape[2], "float32")
        inside = ops.logical_and(
            ops.abs(rows[None, :, None] - centre_y) < half_height,
            ops.abs(cols[None, None, :] - centre_x) < half_width,
        )
        untouched = per_image(4, 0.0, 1.0) >= rate
        keep = ops.logical_or(inside, untouched)[..., None]
        return ops.where(keep, images, ops.mean(images, axis=(1, 2), keepdims=True))

    return _training_only_layer(keras, seed, "band", erase)


def low_resolution(keras: ModuleType, seed: int, rate: float = 0.5) -> "Layer":
    """A layer that, on `rate` of the images, shrinks each to 1/2, 1/3 or 1/4 of its size and
    enlarges it back: the few pixels of a far or low-resolution camera, upscaled to the input
    (a blur keeps the pixel grid fine; this loses the detail itself, blocky edges included)."""
    ops = keras.ops
    factors = (2, 3, 4)

    def coarsen(images, generator):
        shape = ops.shape(images)
        draws = keras.random.uniform((shape[0], 1, 1, 1), seed=generator)
        out = images
        # each image one factor: draws in [k * rate / 3, (k + 1) * rate / 3) take factor k
        for k, factor in enumerate(factors):
            small = ops.image.resize(
                images, (shape[1] // factor, shape[2] // factor), antialias=True
            )
            coarse = ops.image.resize(small, (shape[1], shape[2]))
            share = rate / len(factors)
            chosen = ops.logical_and(draws >= k * share, draws < (k + 1) * share)
            out = ops.where(chosen, coarse, out)
        return out

    return _training_only_layer(keras, seed, "lowres", coarsen)


# name -> factory(keras, seed) of one Keras preprocessing layer working on raw 0..255 RGB batches.
# Keras is handed in by build_augmenter: the names alone (for --help) must not load TensorFlow.
# No vertical flip: an upside-down face or pedestrian is not a case the model will meet.
AUGMENTATIONS = {
    "flip": lambda keras, seed: keras.layers.RandomFlip("horizontal", seed=seed),
    # about +-10 degrees
    "rotate": lambda keras, seed: keras.layers.RandomRotation(0.03, fill_mode="reflect", seed=seed),
    "shift": lambda keras, seed: keras.layers.RandomTranslation(
        0.08, 0.08, fill_mode="reflect", seed=seed
    ),
    "zoom": lambda keras, seed: keras.layers.RandomZoom(
        (-0.15, 0.15), fill_mode="reflect", seed=seed
    ),
    # zoom out only, up to 45%: the looser crops of portraits (hair, neck, shoulders in view).
    # Measured on held-out UTK adults 1.7x wider than detection's crops: 92.7% with it in training,
    # 76.8% without (that model called half the men women).
    "loose": lambda keras, seed: keras.layers.RandomZoom(
        (0.0, 0.45), fill_mode="nearest", seed=seed
    ),
    # zoom in only, up to 40%: crops tighter than any source holds, down to the inner face. Women
    # with hair tied back were called men by a model that only saw hair framing the face; a
    # crop without hair leaves the face itself to judge.
    "tight": lambda keras, seed: keras.layers.RandomZoom(
        (-0.4, 0.0), fill_mode="reflect", seed=seed
    ),
    # zoom out up to 100% (edges repeated; Keras' limit): whole heads with neck and background,
    # up to ~5.2 eye distances from a 2.6 crop. With "tight" in the same list the framing spans
    # about 1.6 to 5.2 eye distances: a model trained with "tight" and "loose" (45%) called 30% of
    # women men at 5.6.
    "wide": lambda keras, seed: keras.layers.RandomZoom((0.0, 1.0), fill_mode="nearest", seed=seed),
    "shear": lambda keras, seed: keras.layers.RandomShear(
        x_factor=0.1, y_factor=0.1, fill_mode="reflect", seed=seed
    ),
    "brightness": lambda keras, seed: keras.layers.RandomBrightness(
        0.15, value_range=(0, 255), seed=seed
    ),
    "contrast": lambda keras, seed: keras.layers.RandomContrast(
        0.3, value_range=(0, 255), seed=seed
    ),
    "hue": lambda keras, seed: keras.layers.RandomHue(0.05, value_range=(0, 255), seed=seed),
    "saturation": lambda keras, seed: keras.layers.RandomSaturation(
        0.3, value_range=(0, 255), seed=seed
    ),
    # a third of the images in grey: make-up and hair colour stop being free cues.
    "gray": lambda keras, seed: keras.layers.RandomGrayscale(0.3, seed=seed),
    # small blur: far or low-resolution cameras (pedestrians 30 px wide upscaled to the input).
    "blur": lambda keras, seed: keras.layers.RandomGaussianBlur(
        0.5, kernel_size=5, sigma=(0.1, 1.5), value_range=(0, 255), seed=seed
    ),
    # half the images get one noise-filled rectangle over 2-25% of the area (random erasing,
    # Zhong et al. 2017): a hand, a bag, a strand of hair or a patch of make-up covered, so no
    # single region decides. A bag or a ponytail should not be the whole answer on a new camera.
    "erase": lambda keras, seed: keras.layers.RandomErasing(
        factor=(0.5, 0.5), scale=(0.02, 0.25), value_range=(0, 255), seed=seed
    ),
    # half the images at a half, a third or a quarter of their resolution, enlarged back: far
    # cameras, whose crops are a few dozen pixels wide.
    "lowres": low_resolution,
    # half the images keep only a central box, the band outside the inner face in its mean
    # colour: the face must decide, not the hair.
    "band": band_erase,
    # GaussianNoise takes a std in 0..1 units: 0.03 of the range is about 8 grey levels.
    "noise": lambda keras, seed: keras.Sequential(
        [
            keras.layers.Rescaling(1 / 255),
            keras.layers.GaussianNoise(0.03, seed=seed),
            keras.layers.Rescaling(255),
        ],
        name="noise",
    ),
}
DEFAULT_AUGMENT = "flip,rotate,shift,zoom,brightness,contrast"


def parse_augment(text: str) -> list[str]:
    """Parse 'flip,zoom' (or 'none') into a list of augmentation names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names in ([], ["none"]):
        return []
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise UserError(
            f"--augment: unknown {', '.join(unknown)}; choose from "
            f"{', '.join(AUGMENTATIONS)} or none"
        )
    return names


def build_augmenter(names: Sequence[str], seed: int = 0) -> Callable:
    """Return fn(uint8 batch) -> float32 batch in 0..255 applying `names`, or None if empty."""
    if not names:
        return None
    import keras

    layers = [AUGMENTATIONS[name](keras, seed + i) for i, name in enumerate(names)]
    pipeline = keras.Sequential(layers, name="augment")

    def augment(images):
        images = keras.ops.cast(images, "float32")
        # training=True: GaussianNoise and the random layers are identity otherwise.
        return keras.ops.clip(pipeline(images, training=True), 0.0, 255.0)

    return augment
