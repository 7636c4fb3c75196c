"""MTCNN without TensorFlow: the `mtcnn` package's pipeline on its own networks, run by LiteRT.

`mtcnn` imports TensorFlow (seconds) and runs its three small networks eagerly. Here the same
networks, converted to TFLite once (`gender.export.export_detector`, files in weights/detector/),
run under the LiteRT interpreter, and the steps between them are ported from mtcnn 1.0.0 with
numpy and OpenCV: the scale pyramid, PNet's proposals, the package's own NMS, box regression,
patch extraction (`tf.image.crop_and_resize`, re-implemented exactly) and the landmarks. On
photos it finds the same faces within a fraction of a pixel (tests/test_faces.py compares).

Nothing here (nor in the modules it imports) may import TensorFlow or Keras: a test checks it.
"""

from importlib import resources
from pathlib import Path

import numpy as np

from gender import lite
from gender.lite import THREADS, without_delegate_banner

# Package data (see gender.predictor.PRETRAINED_DIR): the same place in a checkout and an install.
DETECTOR_DIR = Path(str(resources.files("gender").joinpath("pretrained", "detector")))
NETWORKS = ("pnet", "rnet", "onet")

# mtcnn 1.0.0's defaults (MTCNN.detect_faces keyword arguments).
MIN_FACE_SIZE = 20
MIN_SIZE = 12  # PNet's window
SCALE_FACTOR = 0.709
THRESHOLDS = {"pnet": 0.6, "rnet": 0.7, "onet": 0.8}
NMS_PNET_SCALE, NMS_PNET_ALL, NMS_RNET, NMS_ONET = 0.5, 0.7, 0.7, 0.7


def detector_files(folder: str | Path = DETECTOR_DIR) -> dict[str, Path] | None:
    """{'pnet': path, 'rnet': path, 'onet': path} when all three .tflite files exist, else None."""
    paths = {name: Path(folder) / f"mtcnn_{name}.tflite" for name in NETWORKS}
    return paths if all(path.is_file() for path in paths.values()) else None


def available() -> bool:
    """True when the LiteRT interpreter can be imported and the detector files are there."""
    return lite.available() and detector_files() is not None


class LiteDetector:
    """MTCNN face and landmark detection: `detect(rgb)` gives the rows `MTCNN.detect_faces` gives.

    Args:
        folder: where mtcnn_{pnet,rnet,onet}.tflite are.
        threads: CPU threads for each interpreter.
    """

    def __init__(self, folder: str | Path = DETECTOR_DIR, threads: int = THREADS) -> None:
        from ai_edge_litert.interpreter import Interpreter

        files = detector_files(folder)
        if files is None:
            raise FileNotFoundError(f"{folder}: no mtcnn_{{pnet,rnet,onet}}.tflite")
        self.nets = {
            name: Interpreter(model_path=str(path), num_threads=threads)
            for name, path in files.items()
        }
        self.shapes = {name: None for name in NETWORKS}

    def _run(self, name: str, batch: np.ndarray) -> dict[int, np.ndarray]:
        """Run one network on a float32 batch; its outputs keyed by their last dimension.

        PNet: 4 box offsets, 2 class scores; RNet the same; ONet also 10 landmark coordinates.
        """
        net = self.nets[name]
        (tensor,) = net.get_input_details()
        if self.shapes[name] != batch.shape:
            net.resize_tensor_input(tensor["index"], batch.shape)
            if self.shapes[name] is None:  # LiteRT's banner comes with the first allocation only
                with without_delegate_banner():
                    net.allocate_tensors()
            else:  # PNet is resized for every pyramid level: no fd juggling each time
                net.allocate_tensors()
            self.shapes[name] = batch.shape
        net.set_tensor(tensor["index"], batch)
        net.invoke()
        return {
            int(out["shape"][-1]): net.get_tensor(out["index"]).copy()
            for out in net.get_output_details()
        }

    def detect(self, rgb: np.ndarray, min_face: float = MIN_FACE_SIZE) -> np.ndarray:
        """Faces in an (H, W, 3) uint8 RGB image as (N, 16) float rows, as mtcnn returns them with
        box_format="xyxy", output_type="numpy", fit_to_image=False: image index (0), x1, y1, x2,
        y2, score, the 5 landmarks' x, then their y (left eye, right eye, nose, mouth l/r).

        min_face: the smallest face sought, in pixels. The pyramid is the package's (its
        min_face_size 20) without the levels whose 12 px window only fits smaller faces: the
        largest, costliest ones. A face above min_face is found from the same levels as
        before, so it comes out where the full pyramid puts it.
        """
        # Raw 0..255 values: each step normalises what it samples (area averages and bilinear
        # samples are linear, so this is mtcnn's normalisation of the whole image, done on far
        # fewer pixels).
        image = rgb.astype(np.float32)
        boxes = self._proposals(image, min_face)
        if len(boxes):
            boxes = self._refine(image, boxes)
        if len(boxes):
            boxes = self._output(image, boxes)
        return boxes if len(boxes) else np.empty((0, 16))

    def _proposals(self, image: np.ndarray, min_face: float) -> np.ndarray:
        """PNet over the scale pyramid (StagePNet): square boxes, rows id, x1, y1, x2, y2, score."""
        import cv2

        height, width = image.shape[:2]
        found = []
        scales = scale_pyramid(width, height)
        # Rows that are all 0 (the black border `gender.faces` adds) shrink to 0 in the width
        # pass, so it runs on the others only: the same pixels, a third less work on a portrait.
        content = np.flatnonzero(image.reshape(height, -1).any(axis=1))
        top, bottom = (content[0], content[-1] + 1) if len(content) else (0, 0)
        for scale in scales[scales <= MIN_SIZE / min(min_face, MIN_SIZE / scales[-1])]:
            # tf.image.resize(..., AREA) truncates the float size; cv2's INTER_AREA agrees with it
            # to 1e-4 on [-1, 1] images. Every level is shrunk from the full image: making small
            # levels from a half-size copy changes pixels by ~1e-3 and moved boxes by up to 30 px.
            # Area averaging is separable: shrinking the width, then the height, gives the same
            # pixels to float rounding (5e-5 of 255) in half the time of one 2-D shrink.
            size = (int(width * scale), int(height * scale))
            narrow = np.zeros((height, size[0], 3), np.float32)
            if bottom > top:
                narrow[top:bottom] = cv2.resize(
                    image[top:bottom], (size[0], bottom - top), interpolation=cv2.INTER_AREA
                )
            scaled = normalise(cv2.resize(narrow, size, interpolation=cv2.INTER_AREA))
            out = self._run("pnet", scaled[None])
            boxes = pnet_boxes(out[4], out[2], THRESHOLDS["pnet"])
            boxes[:, 1:5] /= scale
            found.append(nms(boxes, NMS_PNET_SCALE, sort=False))
        boxes = np.concatenate(found) if found else np.empty((0, 6))
        return square(nms(boxes, NMS_PNET_ALL))

    def _refine(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """RNet on 24x24 patches of PNet's boxes (StageRNet)."""
        out = self._run("rnet", normalise(crop_and_resize(image, boxes[:, 1:5], 24, fill=127.5)))
        boxes = boxes.copy()
        boxes[:, 5] = out[2][:, 1]
        boxes = regress(boxes, out[4])
        boxes = boxes[boxes[:, 5] > THRESHOLDS["rnet"]]
        return square(nms(boxes, NMS_RNET))

    def _output(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """ONet on 48x48 patches of RNet's boxes (StageONet): boxes, scores and landmarks."""
        out = self._run("onet", normalise(crop_and_resize(image, boxes[:, 1:5], 48, fill=127.5)))
        # Landmarks are fractions of the box ONet saw (mtcnn's adjust_landmarks, its -1 included).
        w = boxes[:, 3:4] - boxes[:, 1:2] + 1
        h = boxes[:, 4:5] - boxes[:, 2:3] + 1
        points = out[10].astype(np.float64)
        points[:, :5] = w * points[:, :5] + boxes[:, 1:2] - 1
        points[:, 5:] = h * points[:, 5:] + boxes[:, 2:3] - 1
        boxes = boxes.copy()
        boxes[:, 5] = out[2][:, 1]
        boxes = np.concatenate([regress(boxes, out[4]), points], axis=1)
        boxes = boxes[boxes[:, 5] > THRESHOLDS["onet"]]
        return nms(boxes, NMS_ONET, method="min")


def scale_pyramid(width: int, height: int) -> np.ndarray:
    """The image scales PNet looks at, largest first (mtcnn's build_scale_pyramid)."""
    count = round(-((np.log(min(width, height) / MIN_SIZE) / np.log(SCALE_FACTOR)) + 1))
    return MIN_SIZE / MIN_FACE_SIZE * SCALE_FACTOR ** np.arange(count)


def pnet_boxes(offsets: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """PNet's 12x12 windows (stride 2) scoring above `threshold`, moved by their offsets.

    Args:
        offsets: (1, h, w, 4) box offsets; scores: (1, h, w, 2) softmax, [:, :, :, 1] is "face".

    Returns:
        (N, 6) rows id, x1, y1, x2, y2, score in the scaled image, best first.
    """
    face = scores[..., 1]
    index = np.stack(np.where(face > threshold))  # (3, N): image, y, x
    dx1, dy1, dx2, dy2 = offsets[index[0], index[1], index[2]].T
    # The package's arithmetic: corners 2 * cell + 1 and 2 * cell + 12, so a side of 11.
    x1, y1 = index[2] * 2 + 1, index[1] * 2 + 1
    x2, y2 = index[2] * 2 + 12, index[1] * 2 + 12
    boxes = np.stack(
        [index[0], x1 + dx1 * 11, y1 + dy1 * 11, x2 + dx2 * 11, y2 + dy2 * 11, face[tuple(index)]],
        axis=1,
    ).astype(np.float64)
    return boxes[np.argsort(boxes[:, 5])[::-1]]


def nms(
    boxes: np.ndarray, threshold: float, method: str = "union", sort: bool = True
) -> np.ndarray:
    """The package's NMS (smart_nms_from_bboxes for one image): a box is dropped when any box
    ahead of it overlaps it more than `threshold`, even one that was itself dropped."""
    if len(boxes) == 0:
        return boxes
    if sort:
        boxes = boxes[np.argsort(boxes[:, 5])[::-1]]
    x1, y1, x2, y2 = boxes[:, 1:5].T
    area = (x2 - x1) * (y2 - y1)
    inter_w = np.maximum(0, np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]))
    inter_h = np.maximum(0, np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]))
    inter = inter_w * inter_h
    if method == "union":
        overlap = inter / (area[:, None] + area[None] - inter)
    else:
        overlap = inter / np.minimum(area[:, None], area[None])
    ahead = np.triu(np.ones_like(overlap, dtype=bool), k=1)  # [i, j]: i comes before j
    return boxes[~(ahead & (overlap > threshold)).any(axis=0)]


def square(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square about its centre (mtcnn's resize_to_square)."""
    boxes = boxes.copy()
    w, h = boxes[:, 3] - boxes[:, 1], boxes[:, 4] - boxes[:, 2]
    side = np.maximum(w, h)
    boxes[:, 1] += w * 0.5 - side * 0.5
    boxes[:, 2] += h * 0.5 - side * 0.5
    boxes[:, 3] = boxes[:, 1] + side
    boxes[:, 4] = boxes[:, 2] + side
    return boxes


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move box corners by offsets in units of the box's size (mtcnn's adjust_bboxes)."""
    boxes = boxes.copy()
    w = boxes[:, 3] - boxes[:, 1] + 1
    h = boxes[:, 4] - boxes[:, 2] + 1
    boxes[:, 1:5] += offsets * np.stack([w, h, w, h], axis=1)
    return boxes


def normalise(pixels: np.ndarray) -> np.ndarray:
    """mtcnn's input scaling: 0..255 RGB to (pixel - 127.5) / 128, float32."""
    return (pixels - np.float32(127.5)) / np.float32(128)


def crop_and_resize(
    image: np.ndarray, boxes: np.ndarray, size: int, fill: float = 0.0
) -> np.ndarray:
    """`tf.image.crop_and_resize` as mtcnn calls it: (N, size, size, 3) float32 patches.

    mtcnn divides the x1, y1, x2, y2 pixel boxes by the width and height, and TF maps those
    fractions back onto (width - 1, height - 1): so sampling uses that scale too. Samples are
    bilinear; a row or column of samples outside the image is `fill` (TF's 0).
    """
    height, width = image.shape[:2]

    def grid(start, stop, extent):
        # (N, size) sample positions along one axis, TF's formula with normalised coordinates.
        start, stop = start / extent * (extent - 1), stop / extent * (extent - 1)
        return start[:, None] + np.arange(size)[None] * ((stop - start) / (size - 1))[:, None]

    ys = grid(boxes[:, 1], boxes[:, 3], height)
    xs = grid(boxes[:, 0], boxes[:, 2], width)
    y_in = (ys >= 0) & (ys <= height - 1)
    x_in = (xs >= 0) & (xs <= width - 1)
    y0 = np.clip(np.floor(ys), 0, height - 1).astype(np.int64)
    x0 = np.clip(np.floor(xs), 0, width - 1).astype(np.int64)
    y1 = np.clip(np.ceil(ys), 0, height - 1).astype(np.int64)
    x1 = np.clip(np.ceil(xs), 0, width - 1).astype(np.int64)
    fy = (ys - np.floor(ys))[:, :, None, None].astype(np.float32)
    fx = (xs - np.floor(xs))[:, None, :, None].astype(np.float32)
    rows0, rows1 = y0[:, :, None], y1[:, :, None]
    cols0, cols1 = x0[:, None, :], x1[:, None, :]
    top_left, top_right = image[rows0, cols0], image[rows0, cols1]
    bottom_left, bottom_right = image[rows1, cols0], image[rows1, cols1]
    top = top_left + (top_right - top_left) * fx
    bottom = bottom_left + (bottom_right - bottom_left) * fx
    patches = top + (bottom - top) * fy
    inside = (y_in[:, :, None] & x_in[:, None, :])[..., None]
    return np.where(inside, patches, np.float32(fill)).astype(np.float32)
