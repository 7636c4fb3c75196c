"""Decode and resize one image file with OpenCV; no TensorFlow, so light tools can reuse it.

Every loader, the trainer, the evaluator and the predictor read pixels through `read_image`, so
training and prediction see the same decoding, the same EXIF orientation and the same resize.

Hostile files are refused before any pixel is decoded: only regular files are opened (a named
pipe would block for ever), files over GENDER_MAX_IMAGE_MB are not read, the format is told from the
bytes (a GIF named .png is a GIF) and only formats whose header this module reads reach OpenCV,
with their width and height checked against GENDER_MAX_IMAGE_PIXELS first (a 300-byte PNG may
claim 65000x65000 pixels, 12 GB once decoded; a 213 kB TIFF holds 144 million).
"""

import os
import stat
import struct
from pathlib import Path

import numpy as np

from gender import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
DEFAULT_MAX_PIXELS = 50_000_000  # 50 MP: bigger than any phone photo, 150 MB once decoded
DEFAULT_MAX_FILE_MB = 200


class BadImageError(UserError):
    """An image file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def is_image_file(path: str | Path) -> bool:
    """True when the name has an image extension (the content is checked only on reading)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def max_pixels() -> int:
    """The largest width x height decoded (GENDER_MAX_IMAGE_PIXELS, default 50 million)."""
    return int(os.environ.get("GENDER_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS))


def image_format(data: bytes) -> str | None:
    """The format of an image file from its first bytes (never from its name); None if unknown.

    The formats are the ones this OpenCV build decodes; only these are ever handed to it.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(_JPEG_START):
        return "JPEG"
    if data.startswith(b"BM"):
        return "BMP"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WebP"
    if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith(b"\0\0\0\x0cjP  \r\n\x87\n") or data.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG 2000"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis", b"mif1", b"msf1"):
        return "AVIF"
    if data.startswith((b"#?RADIANCE", b"#?RGBE")):
        return "HDR"
    if data.startswith(b"\x59\xa6\x6a\x95"):
        return "Sun raster"
    if data[:2] in (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6"):
        return "PNM"
    if data[:2] == b"P7":
        return "PAM"
    if data.startswith((b"PF", b"Pf")):
        return "PFM"
    return None


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of any format `image_format` knows, without decoding;
    None for an unknown format.

    Raises:
        ValueError: the header is damaged or too short to say the size.
    """
    kind = image_format(data)
    if kind is None:
        return None
    try:
        size = _SIZE_READERS[kind](data)
    except (struct.error, IndexError, ValueError):
        size = None
    if size is None:
        raise ValueError(f"damaged {kind} header (no image size in it)")
    width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"damaged {kind} header (an image of {width}x{height} pixels)")
    return width, height


def _png_size(data: bytes) -> tuple[int, int] | None:
    return struct.unpack(">II", data[16:24]) if data[12:16] == b"IHDR" else None


def _bmp_size(data: bytes) -> tuple[int, int]:
    if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 core header: 16-bit sides
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)


def _webp_size(data: bytes) -> tuple[int, int] | None:
    kind = data[12:16]
    if kind == b"VP8X":
        return (int.from_bytes(data[24:27], "little") + 1,
                int.from_bytes(data[27:30], "little") + 1)  # fmt: skip
    if kind == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """The first page's size (the one OpenCV decodes); a tile bigger than it counts instead."""
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(order + "H", data[2:4])[0] == 43  # BigTIFF: 64-bit offsets and counts
    if big:
        (offset,) = struct.unpack(order + "Q", data[8:16])
        (count,) = struct.unpack(order + "Q", data[offset : offset + 8])
        entry, first, value_at = 20, offset + 8, 12
    else:
        (offset,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[offset : offset + 2])
        entry, first, value_at = 12, offset + 2, 8
    tags = {}
    for i in range(min(count, 4096)):
        at = first + i * entry
        tag, kind = struct.unpack(order + "HH", data[at : at + 4])
        if tag in (256, 257, 322, 323) and kind in (3, 4, 16):  # SHORT, LONG, LONG8
            code = {3: "H", 4: "I", 16: "Q"}[kind]
            tags[tag] = struct.unpack_from(order + code, data, at + value_at)[0]
    if 256 not in tags or 257 not in tags:
        return None
    width, height = tags[256], tags[257]
    tile = tags.get(322, 0) * tags.get(323, 0)
    if tile > width * height:  # the decoder allocates a whole tile
        return tags[322], tags[323]
    return width, height


def _gif_size(data: bytes) -> tuple[int, int] | None:
    """The logical screen, which OpenCV allocates; None unless a block follows the screen
    descriptor (and its colour table), so 'GIF89a' and any 4 bytes claim no size."""
    packed = data[10]
    after = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    if data[after : after + 1] not in (b"\x2c", b"\x21", b"\x3b"):  # image, extension, end
        return None
    return struct.unpack("<HH", data[6:10])


def _jp2_size(data: bytes) -> tuple[int, int] | None:
    if data.startswith(b"\xff\x4f\xff\x51"):  # a bare codestream: its SIZ marker
        xsiz, ysiz, xoff, yoff = struct.unpack(">IIII", data[8:24])
        return xsiz - xoff, ysiz - yoff
    at = data.find(b"ihdr")  # the JP2 header box
    if at < 0:
        return None
    height, width = struct.unpack(">II", data[at + 4 : at + 12])
    return width, height


def _avif_size(data: bytes) -> tuple[int, int] | None:
    """The largest 'ispe' (image spatial extents) property: a grid's own size counts too."""
    sizes, at = [], data.find(b"ispe")
    while at >= 0:
        width, height = struct.unpack(">II", data[at + 8 : at + 16])
        sizes.append((width, height))
        at = data.find(b"ispe", at + 4)
    return max(sizes, key=lambda wh: wh[0] * wh[1]) if sizes else None


def _hdr_size(data: bytes) -> tuple[int, int] | None:
    """Radiance: header lines, a blank line, then e.g. '-Y 480 +X 640'."""
    head, blank, rest = data[:65536].partition(b"\n\n")
    if not blank:
        return None
    words = rest.split(b"\n", 1)[0].split()
    if len(words) != 4 or not {words[0][1:], words[2][1:]} == {b"X", b"Y"}:
        return None
    sides = {words[0][1:]: int(words[1]), words[2][1:]: int(words[3])}
    return sides[b"X"], sides[b"Y"]


def _sun_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[4:12])


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    """P1-P6, PF, Pf: the two numbers after the magic ('#' comments skipped); P7: WIDTH, HEIGHT."""
    text = data[:4096]
    if text[1:2] == b"7":
        fields = dict(
            line.split(None, 1) for line in text.split(b"\n")[1:] if len(line.split(None, 1)) == 2
        )
        return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    words = []
    for line in text[2:].split(b"\n"):
        words += line.split(b"#", 1)[0].split()
        if len(words) >= 2:
            return int(words[0]), int(words[1])
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG markers up to the first frame header (SOF0..SOF15) and read its size."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:  # stray bytes between segments: libjpeg skips them too
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


# each format image_format names, with its header's size reader: what the gate lets through
_SIZE_READERS = {
    "PNG": _png_size,
    "JPEG": _jpeg_size,
    "BMP": _bmp_size,
    "WebP": _webp_size,
    "TIFF": _tiff_size,
    "GIF": _gif_size,
    "JPEG 2000": _jp2_size,
    "AVIF": _avif_size,
    "HDR": _hdr_size,
    "Sun raster": _sun_size,
    "PNM": _pnm_size,
    "PAM": _pnm_size,
    "PFM": _pnm_size,
}
FORMATS = tuple(_SIZE_READERS)


def _read_regular_file(path: Path) -> bytes:
    """The bytes of a regular file; anything else (pipe, socket, device) is never read."""
    try:
        # O_NONBLOCK: opening a named pipe must not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BadImageError(path, "no such file") from None
    except OSError as err:
        raise BadImageError(path, f"cannot be read ({err.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise BadImageError(path, "is a folder, not an image")
        kind = "a named pipe" if stat.S_ISFIFO(info.st_mode) else "a socket or device"
        raise BadImageError(path, f"not a regular file ({kind}); never read")
    with os.fdopen(fd, "rb") as f:
        limit = float(os.environ.get("GENDER_MAX_IMAGE_MB", DEFAULT_MAX_FILE_MB)) * 2**20
        if info.st_size > limit:
            raise BadImageError(
                path,
                f"{info.st_size / 2**20:,.0f} MB file, over the GENDER_MAX_IMAGE_MB limit of "
                f"{limit / 2**20:,.0f} MB",
            )
        try:
            return f.read()
        except OSError as err:
            raise BadImageError(path, f"cannot be read ({err.strerror})") from None


def read_image_bytes(path: str | Path) -> bytes:
    """An image file's bytes, refused as read_image refuses them (not a regular file, too big)."""
    return _read_regular_file(Path(path))


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB, turned upright by its EXIF orientation (phone photos).

    Grayscale, CMYK, 16-bit and alpha images are converted (alpha is dropped: the models see RGB).

    Returns:
        (H, W, 3) uint8 array, RGB order, 0..255.

    Raises:
        BadImageError: missing, not a regular file, unreadable, not an image, truncated, or
            more than max_pixels() pixels (refused from its header, before decoding).
    """
    path = Path(path)
    return decode_image_bytes(_read_regular_file(path), path)


def decode_image_bytes(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Decode an image file's bytes as read_image does: (H, W, 3) uint8 RGB.

    Packed shards (gender/shards.py) store the bytes as they were on disk and decode them here at
    training time, so a streamed image is the same array as the one read from its file.
    """
    import cv2  # imported here so that listing files does not pay for OpenCV

    if not data:
        raise BadImageError(path, "empty file")
    # libjpeg fills a truncated JPEG with grey and only warns, so check the end-of-image marker
    # ourselves; trailing zero padding after the marker is common and harmless.
    if data.startswith(_JPEG_START) and not data.rstrip(b"\x00\r\n\t ").endswith(_JPEG_END):
        raise BadImageError(path, "truncated JPEG (no end-of-image marker)")
    # The gate: only a format known from the bytes (whatever the file's name) whose header
    # gives a size within the limit reaches a decoder, so no decoder allocates unchecked.
    try:
        size = header_size(data)
    except ValueError as err:
        raise BadImageError(path, str(err)) from None
    if size is None:
        raise BadImageError(path, f"not an image format read here ({', '.join(FORMATS)})")
    if size[0] * size[1] > max_pixels():
        raise BadImageError(
            path,
            f"{size[0]}x{size[1]} pixels, over the limit of {max_pixels():,} "
            "(GENDER_MAX_IMAGE_PIXELS); not decoded",
        )
    try:
        # IMREAD_COLOR (not UNCHANGED) applies the EXIF orientation and gives 8-bit BGR from
        # gray, CMYK, 16-bit and alpha files alike.
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as err:  # e.g. a size OpenCV's own limit refuses (TIFF, unknown header)
        reason = (getattr(err, "err", "") or str(err)).strip().splitlines()[-1]
        raise BadImageError(path, f"OpenCV cannot decode it ({reason})") from None
    except MemoryError:
        raise BadImageError(path, "too large to decode in the memory available") from None
    if image is None or image.size == 0:
        raise BadImageError(path, "not an image OpenCV can decode (corrupt or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # always 3 channels of uint8 here


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


def load_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Read an image file and resize it: (height, width, 3) uint8 RGB, what every model takes."""
    return resize(read_image(path), size)


# The largest --image-size side. The models here are built for 64-224 px; at 1024 a cnn7 batch
# of 32 already needs gigabytes, and 100000 ran out of memory after 15 s with a traceback.
MAX_IMAGE_SIDE = 1024


def parse_image_size(text: str) -> tuple[int, int]:
    """Parse '150' or '128x64' (height x width) into (height, width), each side 32..1024."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"--image-size {text!r}: expected N or HxW, e.g. 150 or 128x64") from None
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or min(size) < 32 or max(size) > MAX_IMAGE_SIDE:
        raise UserError(
            f"--image-size {text!r}: expected N or HxW with each side from 32 to {MAX_IMAGE_SIDE}"
        )
    return size
