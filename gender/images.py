"""Decode and resize one image file with OpenCV; no TensorFlow, so light tools can reuse it.

Every loader, the trainer, the evaluator and the predictor read pixels through `load_image`, so
training and prediction see the same decoding and the same resize.
"""

from pathlib import Path

import numpy as np

from gender import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"


class BadImageError(UserError):
    """An image file that cannot be used; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def is_image_file(path) -> bool:
    """True when the name has an image extension (the content is checked only on reading)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def read_image(path) -> np.ndarray:
    """Read an image file as RGB.

    Grayscale, CMYK, 16-bit and alpha images are converted (alpha is dropped: the models see RGB).

    Returns:
        (H, W, 3) uint8 array, RGB order, 0..255.

    Raises:
        BadImageError: missing, unreadable, not an image, or a truncated JPEG.
    """
    import cv2  # imported here so that listing files does not pay for OpenCV

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadImageError(path, "no such file") from None
    except IsADirectoryError:
        raise BadImageError(path, "is a folder, not an image") from None
    except OSError as err:
        raise BadImageError(path, f"cannot be read ({err.strerror})") from None
    if not data:
        raise BadImageError(path, "empty file")
    # libjpeg fills a truncated JPEG with grey and only warns, so check the end-of-image marker
    # ourselves; trailing zero padding after the marker is common and harmless.
    if data.startswith(_JPEG_START) and not data.rstrip(b"\x00\r\n\t ").endswith(_JPEG_END):
        raise BadImageError(path, "truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise BadImageError(path, "not an image OpenCV can decode (corrupt or unsupported format)")
    return _to_rgb8(image, path)


def _to_rgb8(image: np.ndarray, path) -> np.ndarray:
    """Convert any decoded OpenCV array (gray, BGR, BGRA; 8/16-bit or float) to RGB uint8."""
    import cv2

    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)  # keep the top 8 bits: a linear 16 -> 8 bit rescale
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise BadImageError(path, f"unsupported image with {channels} channels")


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (H, W, 3) uint8 to `size` = (height, width), ignoring aspect ratio.

    Stretching (rather than padding) matches what the seeds' Keras loaders did, and works the same
    for square faces and tall pedestrian crops as long as training and prediction share it.
    """
    import cv2

    height, width = size
    if image.shape[:2] == (height, width):
        return image
    # INTER_AREA averages when shrinking (no aliasing); bilinear when enlarging.
    shrinking = image.shape[0] * image.shape[1] > height * width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def load_image(path, size: tuple[int, int]) -> np.ndarray:
    """Read an image file and resize it: (height, width, 3) uint8 RGB, what every model takes."""
    return resize(read_image(path), size)


def parse_image_size(text: str) -> tuple[int, int]:
    """Parse '150' or '128x64' (height x width) into (height, width)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"--image-size {text!r}: expected N or HxW, e.g. 150 or 128x64") from None
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or min(size) < 32:
        raise UserError(f"--image-size {text!r}: expected N or HxW with each side at least 32")
    return size
