"""Several trained models as one: the plain average of their P(woman).

Two networks that see a face differently (ImageNet features, face-identity features) make
different mistakes, and the mean of their P(woman) is right more often than either. Kept as one
Keras model so that every backend, the export and the threshold treat it like any other: one
raw-RGB input at the largest member's size, each member reached through a resize to its own
input (bilinear: LiteRT has it as a builtin; the area filter and anti-aliasing are not).
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

ENSEMBLE_NAME = "average"  # the Keras model's name: how `members` recognises an ensemble


def average_models(members: Sequence["keras.Model"]) -> "keras.Model":
    """One model whose output is the mean of `members`' outputs (each raw RGB in, P(woman) out)."""
    import keras

    sizes = [tuple(member.input_shape[1:3]) for member in members]
    size = max(sizes, key=lambda hw: hw[0] * hw[1])
    inputs = keras.Input((*size, 3), name="image")
    outputs = []
    for member, own in zip(members, sizes):
        x = inputs
        if own != size:
            x = keras.layers.Resizing(*own, interpolation="bilinear", name=f"to_{member.name}")(x)
        outputs.append(member(x))
    return keras.Model(inputs, keras.layers.Average(name="mean")(outputs), name=ENSEMBLE_NAME)


def members(model: "keras.Model") -> list["keras.Model"]:
    """The networks an `average_models` ensemble averages; [model] for a single network."""
    import keras

    if model.name != ENSEMBLE_NAME:
        return [model]
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]
