"""Split a transfer model at its frozen prefix, so the prefix can run once per image.

A model from this registry is a chain: input -> scaling layer(s) -> backbone (a nested Model) ->
head layers. When the backbone's bottom layers are frozen, their output for an image never changes
during training: compute it once (the "frozen prefix"), then train the rest (the "suffix") on those
cached tensors. The suffix shares its layers, and so its weights, with the full model: training the
suffix trains the model that gets saved.
"""

import keras


def _backbone(model):
    return next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)


def _parents(layer, index) -> list[int]:
    """Indices (in `index`) of the layers whose outputs feed `layer`."""
    found = []
    for node in layer._inbound_nodes:
        for tensor in node.input_tensors:
            operation = tensor._keras_history.operation
            if id(operation) in index:
                found.append(index[id(operation)])
    return found


def frozen_cut(backbone: keras.Model) -> int | None:
    """Index of the backbone layer whose output is the last clean cut before any trainable layer.

    A clean cut is a layer whose output is the only tensor that later layers read from the part
    before it (no skip connection crosses it). None when the very first layers train.
    """
    layers = backbone.layers
    index = {id(layer): i for i, layer in enumerate(layers)}
    first_trainable = next(
        (i for i, layer in enumerate(layers) if layer.trainable and layer.weights), len(layers)
    )
    parents = [_parents(layer, index) for layer in layers]
    for cut in range(first_trainable - 1, 0, -1):
        if all(p >= cut for j in range(cut + 1, len(layers)) for p in parents[j]):
            return cut
    return None


def split_frozen_prefix(model: keras.Model) -> tuple[keras.Model, keras.Model] | None:
    """(prefix, suffix) models with suffix(prefix(x)) == model(x), or None if nothing is frozen.

    prefix: raw RGB -> the backbone's tensor at its last clean cut before a trainable layer.
    suffix: that tensor -> P(woman), sharing its layers with `model`.
    """
    backbone = _backbone(model)
    if backbone is None:
        return None
    cut = frozen_cut(backbone)
    if cut is None:
        return None
    boundary = backbone.layers[cut].output
    outer = model.layers
    position = outer.index(backbone)

    inputs = keras.Input(model.input_shape[1:], name="image")
    x = inputs
    for layer in outer[1:position]:
        x = layer(x)
    # training=False as in the full model: BatchNorm stays in inference mode.
    x = keras.Model(backbone.input, boundary, name="backbone_prefix")(x, training=False)
    prefix = keras.Model(inputs, x, name=f"{model.name}_prefix")

    features = keras.Input(boundary.shape[1:], name="features")
    y = features
    if cut < len(backbone.layers) - 1:
        rest = keras.Model(boundary, backbone.output, name="backbone_suffix")
        y = rest(y, training=False)
    for layer in outer[position + 1 :]:
        y = layer(y)
    suffix = keras.Model(features, y, name=f"{model.name}_suffix")
    return prefix, suffix
