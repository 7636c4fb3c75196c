"""Grad-CAM: which parts of the image pushed the model towards the class it predicted.

Selvaraju et al. (2017), as in the Keras example "Grad-CAM class activation visualization": weight
each channel of the last convolutional feature map by the mean gradient of the class score with
respect to it, sum, keep the positive part. Works for every model of the registry: they are all
chains (input -> scaling -> convolutions or a nested backbone Model -> head).
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from gender.faces import align_crop, crop_matrix
from gender.images import resize
from gender.models.ensemble import members

if TYPE_CHECKING:
    import keras

    from gender.faces import Face

HEATMAP_WEIGHT = 0.45  # share of the colour map in the overlay; the rest is the photo


def _feature_layer(model):
    """(outer layer, inner layer or None): where the last convolutional feature map comes out.

    A transfer model's backbone is a nested keras.Model (see models/split.py): then the inner
    layer is its last layer with a spatial output that is not a pooling (VGG16's block5_conv3
    rather than block5_pool: twice the resolution); a from-scratch CNN's is its last Conv2D.
    """
    import keras

    layers = model.layers
    for layer in reversed(layers):
        if isinstance(layer, keras.Model):
            inner = next(
                sub
                for sub in reversed(layer.layers)
                if len(sub.output.shape) == 4 and "pool" not in type(sub).__name__.lower()
            )
            return layer, inner
        if isinstance(layer, keras.layers.Conv2D):
            return layer, None
    raise ValueError(f"model {model.name} has no convolutional layer to explain")


def grad_cam(model: "keras.Model", image: np.ndarray) -> tuple[np.ndarray, float]:
    """Class activation map for the predicted class of one model-sized image.

    Args:
        image: (H, W, 3) uint8 RGB at the model's input size.

    Returns:
        (heatmap, p_woman): heatmap (h, w) float32 in 0..1 at the feature map's resolution
        (all zeros when nothing in the image supports the class), p_woman the model's output.
        For an average of networks (gender.models.ensemble), the mean of each network's map
        for the class the average predicts, at the image's size.
    """
    networks = members(model)
    if len(networks) == 1:
        return _network_cam(model, image)
    import cv2

    p_woman = float(model.predict_on_batch(image[None].astype("float32"))[0, 0])
    height, width = image.shape[:2]
    maps = []
    for network in networks:
        own_height, own_width = network.input_shape[1:3]
        own = cv2.resize(image, (own_width, own_height), interpolation=cv2.INTER_LINEAR)
        cam, _ = _network_cam(network, own, towards_woman=p_woman >= 0.5)
        maps.append(cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR))
    cam = np.mean(maps, axis=0)
    peak = float(cam.max())
    return (cam / peak if peak > 0 else np.zeros_like(cam)).astype(np.float32), p_woman


def _network_cam(
    model: "keras.Model", image: np.ndarray, towards_woman: bool | None = None
) -> tuple[np.ndarray, float]:
    """grad_cam for one network; `towards_woman` picks the class (default: the predicted one)."""
    import keras
    import tensorflow as tf

    outer, inner = _feature_layer(model)
    if inner is not None:
        backbone = keras.Model(outer.input, [inner.output, outer.output])
    last = model.layers[-1]
    # The sigmoid saturates at confident predictions (its gradient underflows to 0), so the
    # score differentiated is the logit: the last Dense layer without its activation.
    sigmoid = keras.activations.sigmoid
    logit_head = isinstance(last, keras.layers.Dense) and last.activation is sigmoid
    x = tf.convert_to_tensor(image[None].astype("float32"))
    with tf.GradientTape() as tape:
        for layer in model.layers[1:]:  # layers[0] is the InputLayer
            if layer is outer:
                if inner is not None:
                    features, x = backbone(x, training=False)
                else:
                    x = features = layer(x, training=False)
            elif layer is last and logit_head:
                x = keras.ops.matmul(x, last.kernel) + last.bias
            else:
                x = layer(x, training=False)
        logit = x[0, 0] if logit_head else _logit(x[0, 0])
        p_woman = float(keras.ops.sigmoid(logit)) if logit_head else float(x[0, 0])
        if towards_woman is None:
            towards_woman = p_woman >= 0.5
        score = logit if towards_woman else -logit  # the predicted class's evidence
    gradients = tape.gradient(score, features)[0]  # (h, w, c)
    weights = tf.reduce_mean(gradients, axis=(0, 1))  # one weight per channel
    cam = tf.nn.relu(tf.reduce_sum(features[0] * weights, axis=-1)).numpy()
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else np.zeros_like(cam)
    return cam.astype(np.float32), p_woman


def _logit(p):
    import keras

    p = keras.ops.clip(p, 1e-7, 1 - 1e-7)
    return keras.ops.log(p) - keras.ops.log(1 - p)


def overlay(rgb: np.ndarray, heatmap: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The photo with a JET colour map of `heatmap` (resized to it) blended on top (RGB uint8).

    Args:
        heatmap: (h, w) in 0..1, stretched to the photo; or already at the photo's size.
        mask: optional (H, W) 0..1 weight of the overlay per pixel (outside the faces: 0).
    """
    import cv2

    height, width = rgb.shape[:2]
    if heatmap.shape != (height, width):
        heatmap = cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR)
    colours = cv2.applyColorMap(np.uint8(255 * np.clip(heatmap, 0, 1)), cv2.COLORMAP_JET)
    colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB).astype(np.float32)
    alpha = HEATMAP_WEIGHT * (np.ones((height, width)) if mask is None else mask)[..., None]
    return np.uint8(np.clip((1 - alpha) * rgb + alpha * colours, 0, 255) + 0.5)


def face_heatmap(
    heatmap: np.ndarray, matrix: np.ndarray, crop_size: Sequence[int], image_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """A face crop's heatmap mapped back onto the photo, with the mask of where the crop lies.

    Args:
        matrix: the crop's 2x3 image -> crop map (gender.faces.crop_matrix).

    Returns:
        (heat, mask): two (H, W) float32 arrays in 0..1 at the photo's size.
    """
    import cv2

    height, width = image_shape[:2]
    crop = cv2.resize(heatmap, (crop_size[1], crop_size[0]), interpolation=cv2.INTER_LINEAR)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    heat = cv2.warpAffine(crop, matrix, (width, height), flags=flags)
    mask = cv2.warpAffine(np.ones(crop_size, np.float32), matrix, (width, height), flags=flags)
    return heat, mask


def explain_image(
    model: "keras.Model", rgb: np.ndarray, size: Sequence[int], faces: "list[Face] | None" = None
) -> np.ndarray:
    """The photo with the Grad-CAM of the predicted class laid over it (RGB uint8).

    Args:
        faces: detected faces: each face's crop is explained and its map drawn back where the
            crop came from; None explains the whole image as the model saw it (stretched).
    """
    if faces is None:
        heatmap, _ = grad_cam(model, resize(rgb, size))
        return overlay(rgb, heatmap)
    heat = np.zeros(rgb.shape[:2], np.float32)
    mask = np.zeros(rgb.shape[:2], np.float32)
    for face in faces:
        face_map, _ = grad_cam(model, align_crop(rgb, face, size))
        face_heat, face_mask = face_heatmap(face_map, crop_matrix(face, size), size, rgb.shape)
        heat, mask = np.maximum(heat, face_heat * face_mask), np.maximum(mask, face_mask)
    return overlay(rgb, heat, mask)


LEGEND_MIN_WIDTH = 360  # pixels: narrower pictures are enlarged so the caption fits


def number_faces(rgb: np.ndarray, faces: "Sequence[Face]") -> np.ndarray:
    """A copy with each face's number (1, 2, ... in the order given) in a box at its top left,
    inside the face, as the terminal lines number them."""
    import cv2

    out = rgb.copy()
    for number, face in enumerate(faces, 1):
        x1, y1, x2, _ = (round(v) for v in face.box)
        scale = max(0.5, (x2 - x1) / 150)
        thickness = max(1, round(scale * 1.5))
        text = str(number)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        x1, y1 = max(0, x1), max(0, y1)
        cv2.rectangle(out, (x1, y1), (x1 + tw + 6, y1 + th + base + 6), (255, 255, 255), -1)
        cv2.putText(out, text, (x1 + 3, y1 + th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    thickness, cv2.LINE_AA)  # fmt: skip
    return out


def _wrap(text: str, width: int, scale: float, thickness: int) -> list[str]:
    """`text` cut at spaces into lines that fit `width` pixels at this font scale."""
    import cv2

    lines, line = [], ""
    for word in text.split(" "):
        candidate = f"{line} {word}".strip()
        fits = cv2.getTextSize(candidate, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0]
        if line and fits > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return [*lines, line]


def add_legend(rgb: np.ndarray, text: str, bar_label: str = "the answer") -> np.ndarray:
    """The picture with a strip below it: `text` (what each overlay shows) and the colour scale,
    its two ends labelled.

    A picture narrower than LEGEND_MIN_WIDTH (a 48 or 96 px pedestrian crop) is enlarged first,
    by a whole factor, so the caption is not cut off.

    Returns:
        (H' + strip, W', 3) uint8 RGB; the scale runs from blue (no evidence) to red (most).
    """
    import cv2

    if rgb.shape[1] < LEGEND_MIN_WIDTH:
        factor = -(-LEGEND_MIN_WIDTH // rgb.shape[1])
        size = (rgb.shape[1] * factor, rgb.shape[0] * factor)
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_NEAREST)
    width = rgb.shape[1]
    scale = min(1.0, max(0.45, width / 900))
    thickness = 1 if scale < 0.8 else 2
    font = cv2.FONT_HERSHEY_SIMPLEX
    lines = _wrap(text, width - 8, scale, thickness)
    (_, text_height), base = cv2.getTextSize("Ag", font, scale, thickness)
    line_height = text_height + base + 6
    bar_height = max(10, line_height // 2)
    height = line_height * (len(lines) + 1) + bar_height + 8
    strip = np.full((height, width, 3), 255, np.uint8)
    for k, line in enumerate(lines):
        cv2.putText(strip, line, (4, 4 + text_height + k * line_height), font, scale, (0, 0, 0),
                    thickness, cv2.LINE_AA)  # fmt: skip
    bar_top = len(lines) * line_height + 6
    ramp = np.uint8(np.linspace(0, 255, max(1, width - 8)))[None].repeat(bar_height, 0)
    bar = cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    strip[bar_top : bar_top + bar_height, 4 : 4 + bar.shape[1]] = bar
    baseline = bar_top + bar_height + text_height + 4
    small = scale * 0.85
    right = f"most evidence for {bar_label}"
    right_width = cv2.getTextSize(right, font, small, 1)[0][0]
    cv2.putText(strip, "none", (4, baseline), font, small, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(strip, right, (max(4, width - 4 - right_width), baseline), font, small,
                (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
    return np.concatenate([rgb, strip], axis=0)
