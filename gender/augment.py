"""Train-only augmentation, chosen by name on the command line.

The names cover seed 001 (shear, zoom) and seed 002 (flip, brightness, contrast, hue, saturation,
noise), plus rotation and translation so a face model also copes with looser, off-centre crops.
Augmentation runs in the tf.data pipeline of the training split only; it is never part of the
model, so validation, evaluation and export see the images unchanged.
"""

import keras

from gender import UserError

# name -> factory of one Keras preprocessing layer working on raw 0..255 RGB batches.
# No vertical flip: an upside-down face or pedestrian is not a case the model will meet.
AUGMENTATIONS = {
    "flip": lambda: keras.layers.RandomFlip("horizontal"),
    "rotate": lambda: keras.layers.RandomRotation(0.03, fill_mode="reflect"),  # about +-10 degrees
    "shift": lambda: keras.layers.RandomTranslation(0.08, 0.08, fill_mode="reflect"),
    "zoom": lambda: keras.layers.RandomZoom((-0.15, 0.15), fill_mode="reflect"),
    "shear": lambda: keras.layers.RandomShear(x_factor=0.1, y_factor=0.1, fill_mode="reflect"),
    "brightness": lambda: keras.layers.RandomBrightness(0.15, value_range=(0, 255)),
    "contrast": lambda: keras.layers.RandomContrast(0.3, value_range=(0, 255)),
    "hue": lambda: keras.layers.RandomHue(0.05, value_range=(0, 255)),
    "saturation": lambda: keras.layers.RandomSaturation(0.3, value_range=(0, 255)),
    "noise": lambda: keras.layers.GaussianNoise(8.0),  # std in 0..255 units (seed 002's 0.08 of 1)
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


def build_augmenter(names, seed: int = 0):
    """Return fn(uint8 batch) -> float32 batch in 0..255 applying `names`, or None if empty."""
    if not names:
        return None
    layers = [AUGMENTATIONS[name]() for name in names]
    for i, layer in enumerate(layers):
        if hasattr(layer, "seed"):
            layer.seed = seed + i
    pipeline = keras.Sequential(layers, name="augment")

    def augment(images):
        images = keras.ops.cast(images, "float32")
        # training=True: GaussianNoise and the random layers are identity otherwise.
        return keras.ops.clip(pipeline(images, training=True), 0.0, 255.0)

    return augment
