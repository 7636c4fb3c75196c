"""Hostile files, paths and flags: one line each, nothing hangs, nothing overwritten.

Every case is built in tmp_path from a few hundred bytes: a header that lies about its size, a
named pipe (os.mkfifo), a name that is not UTF-8 (bytes paths), hidden folders, link loops. Each
command runs through its main(argv) under a watchdog (a hang kills the test run with a
traceback of where it hung) and must end with its documented status, name each bad file once,
use the other images, and leave every input file byte-identical.
"""

import faulthandler
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import (
    IMAGE_SIZE,
    error_line,
    make_image_tree,
    predict_in_fresh_process,
    tree_digest,
)

import dataset
import gender_mAP
import gender_single_predict
import gender_train
from gender.images import BadImageError, header_size, read_image

HANG_SECONDS = 120  # far above any command here on tiny files; only a hang reaches it
GOOD_PER_CLASS = 4


@pytest.fixture(autouse=True)
def watchdog():
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# --- hostile files, built by hand -----------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def lying_png(path, width=65000, height=65000) -> Path:
    """A ~60-byte PNG whose IHDR claims width x height RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
    Path(path).write_bytes(data + png_chunk(b"IEND", b""))
    return Path(path)


def real_big_png(path, side=20000) -> Path:
    """A genuine side x side 1-bit gray PNG, all black: ~60 kB on disk, 1.2 GB decoded as RGB."""
    row = b"\x00" + b"\x00" * (side // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
    Path(path).write_bytes(data + png_chunk(b"IEND", b""))
    return Path(path)


def jpeg_bytes(image=None) -> bytes:
    if image is None:
        image = np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    ok, buffer = cv2.imencode(".jpg", image)
    assert ok
    return buffer.tobytes()


def sof_offset(data: bytes) -> int:
    """Where the baseline frame header (FFC0) of an OpenCV JPEG starts."""
    return data.index(b"\xff\xc0")


def lying_jpeg(path, width=65000, height=65000) -> Path:
    """A real small JPEG whose frame header claims width x height."""
    data = bytearray(jpeg_bytes())
    i = sof_offset(data)
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    Path(path).write_bytes(bytes(data))
    return Path(path)


def exif_app1(orientation: int) -> bytes:
    """A minimal EXIF APP1 segment: a little-endian TIFF header and one IFD0 entry (0x0112)."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)  # SHORT, count 1, value
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", 2 + len(body)) + body


def sideways_jpeg(path, upright: np.ndarray) -> Path:
    """`upright` (RGB) stored turned 90 degrees anticlockwise, tagged orientation 6 (a phone)."""
    stored = cv2.rotate(cv2.cvtColor(upright, cv2.COLOR_RGB2BGR), cv2.ROTATE_90_COUNTERCLOCKWISE)
    ok, buffer = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 95])
    data = buffer.tobytes()
    Path(path).write_bytes(data[:2] + exif_app1(6) + data[2:])
    return Path(path)


def bytes_path(folder: Path, name: bytes) -> Path:
    """A path whose last part is `name`, not valid UTF-8 (Python keeps it with surrogates)."""
    return Path(os.fsdecode(os.path.join(os.fsencode(folder), name)))


# --- the hostile data folder ----------------------------------------------------------------------

# bad file -> what the warning must say about it
BAD = {
    "man/lying.png": "65000x65000 pixels",
    "woman/lying.jpg": "65000x65000 pixels",
    "man/pipe.jpg": "not a regular file",
    "woman/big.png": "20000x20000 pixels",
    "man/zero_height.jpg": "damaged JPEG header",
}


@pytest.fixture(scope="module")
def hostile_tree(tmp_path_factory):
    """4 good images per class, one valid non-UTF-8 name, links, hidden files and BAD."""
    root = make_image_tree(tmp_path_factory.mktemp("hostile") / "data", per_class=GOOD_PER_CLASS)
    lying_png(root / "man/lying.png")
    lying_jpeg(root / "woman/lying.jpg")
    os.mkfifo(root / "man/pipe.jpg")
    real_big_png(root / "woman/big.png")
    lying_jpeg(root / "man/zero_height.jpg", width=32, height=0)
    shutil.copy(root / "man/000_0_a.png", bytes_path(root / "man", b"caf\xe9_\xff.png"))
    # hidden: a thumbnail folder and a dot file, never read (they would count as women)
    (root / "woman/.thumbnails").mkdir()
    shutil.copy(root / "man/000_0_a.png", root / "woman/.thumbnails/000_0_a.png")
    shutil.copy(root / "man/000_0_a.png", root / "woman/._000_0_a.png")
    # links: a linked folder is followed, a loop back to man/ is read once
    extra = make_image_tree(root.parent / "extra", per_class=4, seed=7)
    (root / "man/linked").symlink_to(extra / "man", target_is_directory=True)
    (root / "man/loop").symlink_to(root / "man", target_is_directory=True)
    return root


GOOD = {"man": GOOD_PER_CLASS + 1 + 4, "woman": GOOD_PER_CLASS}  # + non-UTF-8 name + linked


def assert_each_named_once(err: str, root: Path, names=BAD):
    assert "Traceback" not in err, err
    for name, reason in names.items():
        lines = [line for line in err.splitlines() if str(root / name) in line]
        assert len(lines) == 1, (name, err)
        assert reason in lines[0], lines[0]


def digest_without_pipe(root):
    return tree_digest(root)  # read-through digest; tree_digest skips the FIFO (not is_file)


def test_lying_headers_are_refused_before_decoding(tmp_path):
    assert header_size(lying_png(tmp_path / "a.png").read_bytes()) == (65000, 65000)
    assert header_size(lying_jpeg(tmp_path / "a.jpg").read_bytes()) == (65000, 65000)
    for path in (tmp_path / "a.png", tmp_path / "a.jpg", real_big_png(tmp_path / "big.png")):
        with pytest.raises(BadImageError, match="GENDER_MAX_IMAGE_PIXELS"):
            read_image(path)


def test_pixel_limit_can_be_raised(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), np.zeros((10, 400, 3), np.uint8))
    monkeypatch.setenv("GENDER_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(BadImageError, match="400x10 pixels"):
        read_image(path)
    monkeypatch.setenv("GENDER_MAX_IMAGE_PIXELS", "4000")
    assert read_image(path).shape == (10, 400, 3)


def test_non_regular_files_are_never_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(BadImageError, match="named pipe"):
        read_image(tmp_path / "pipe.jpg")
    with pytest.raises(BadImageError, match="not a regular file"):
        read_image("/dev/zero")


def test_exif_orientation_is_applied(tmp_path):
    upright = np.zeros((40, 24, 3), np.uint8)  # tall; a bright band at the top
    upright[:8] = 255
    path = sideways_jpeg(tmp_path / "phone.jpg", upright)
    assert cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (24, 40)
    image = read_image(path)
    assert image.shape == (40, 24, 3)
    assert image[:6].mean() > 200 and image[12:].mean() < 40


def test_exif_orientation_in_prediction(tmp_path, trained_run, capsys):
    """The sideways phone photo gets the upright photo's answer, in predict and in mAP."""
    rng = np.random.default_rng(0)
    upright = rng.integers(0, 256, (48, 32, 3), dtype=np.uint8)
    upright[:12] = 250
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(upright, cv2.COLOR_RGB2BGR))
    (tmp_path / "up.jpg").write_bytes(buffer.tobytes())
    sideways_jpeg(tmp_path / "side.jpg", read_image(tmp_path / "up.jpg"))
    weights = str(trained_run / "best.keras")
    p_woman = []
    for name in ("up.jpg", "side.jpg"):
        status = gender_single_predict.main([str(tmp_path / name), weights, "--no-detect"])
        assert status == 0
        p_woman.append(float(capsys.readouterr().out.split("P(woman) ")[1].split()[0]))
    assert abs(p_woman[0] - p_woman[1]) < 0.02  # the same picture, encoded twice


@pytest.fixture(scope="module")
def hostile_digest(hostile_tree):
    return digest_without_pipe(hostile_tree)


def test_map_skips_each_bad_file_by_name(hostile_tree, hostile_digest, trained_run, capsys):
    report = hostile_tree.parent / "report.json"
    argv = [str(hostile_tree), str(trained_run / "best.keras"), "--json", str(report)]
    assert gender_mAP.main(argv) == 0
    captured = capsys.readouterr()
    assert_each_named_once(captured.err, hostile_tree)
    numbers = json.loads(report.read_text())
    assert numbers["n"] == sum(GOOD.values())
    assert numbers["skipped_unreadable"] == len(BAD) - 1  # the pipe is never listed
    assert f"written to {report}" in captured.out
    assert digest_without_pipe(hostile_tree) == hostile_digest


def test_dataset_check_and_truth(hostile_tree, hostile_digest, tmp_path, capsys):
    assert dataset.main(["check", str(hostile_tree)]) == 1
    captured = capsys.readouterr()
    assert_each_named_once(captured.out + captured.err, hostile_tree)
    assert "with problems" in captured.out
    out = tmp_path / "truth"
    assert dataset.main([str(hostile_tree), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    table = out.with_suffix(".txt").read_bytes()
    assert b"caf\xe9_\xff.png" in table and b".thumbnails" not in table and b"pipe" not in table
    assert digest_without_pipe(hostile_tree) == hostile_digest


def test_predict_folder_csv(hostile_tree, hostile_digest, trained_run, tmp_path, capsys):
    out = tmp_path / "p.csv"
    argv = [str(hostile_tree), "--weights", str(trained_run / "best.keras"), "--csv", str(out)]
    assert gender_single_predict.main(argv) == 1  # some images unreadable
    captured = capsys.readouterr()
    assert_each_named_once(captured.err, hostile_tree)
    rows = out.read_bytes().splitlines()[1:]
    assert len(rows) == sum(GOOD.values())
    assert any(b"caf\xe9_\xff.png" in row for row in rows)
    assert digest_without_pipe(hostile_tree) == hostile_digest


def test_predict_folder_to_stdout_prints_a_non_utf8_name(hostile_tree, trained_run, capsys):
    argv = [str(hostile_tree / "man"), "--weights", str(trained_run / "best.keras")]
    assert gender_single_predict.main(argv) == 1
    out = capsys.readouterr().out
    assert "caf\\udce9_\\udcff.png" in out  # escaped, not a UnicodeEncodeError


@pytest.mark.parametrize("detect", [[], ["--no-detect"]])
@pytest.mark.parametrize("name", sorted(BAD))
def test_predict_one_bad_file_is_one_error(hostile_tree, trained_run, name, detect, capsys):
    argv = [str(hostile_tree / name), str(trained_run / "best.keras"), *detect]
    assert gender_single_predict.main(argv) == 2
    assert BAD[name] in error_line(capsys.readouterr().err)


def test_train_skips_bad_files(hostile_tree, hostile_digest, tmp_path, capsys):
    argv = ["--data", str(hostile_tree), "--model", "cnn3", "--image-size", str(IMAGE_SIZE),
            "--epochs", "1", "--batch-size", "4", "--out", str(tmp_path)]  # fmt: skip
    assert gender_train.main(argv) == 0
    captured = capsys.readouterr()
    assert_each_named_once(captured.err, hostile_tree)
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    info = json.loads((run / "run.json").read_text())
    used = sum(info["data"]["train"].values()) + sum(info["data"]["val"].values())
    assert used == sum(GOOD.values())
    assert digest_without_pipe(hostile_tree) == hostile_digest


def test_crop_writes_non_utf8_names(tmp_path, capsys):
    import matplotlib

    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    data = tmp_path / "data"
    for name in ("man", "woman"):
        (data / name).mkdir(parents=True)
    shutil.copy(hopper, bytes_path(data / "woman", b"gr\xe2ce.jpg"))
    sideways_jpeg(data / "woman/phone.jpg", read_image(hopper))
    shutil.copy(hopper, data / "man/other.jpg")
    before = tree_digest(data)
    out = tmp_path / "crops"
    assert dataset.main(["crop", str(data), "--out", str(out), "--image-size", "64"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    written = sorted(os.listdir(os.fsencode(out / "woman")))
    assert written == [b"gr\xe2ce.jpg", b"phone.jpg"]  # the sideways photo's face was found
    assert tree_digest(data) == before


# --- outputs never onto inputs, never where they cannot go ----------------------------------------


@pytest.fixture
def small_tree(tmp_path):
    return make_image_tree(tmp_path / "data", per_class=4)


def map_argv(tree, run, *extra):
    return [str(tree), str(run / "best.keras"), *map(str, extra)]


@pytest.mark.parametrize(
    "flag, target, words",
    [
        ("--json", "data/man/000_0_a.png", "input folder"),
        ("--json", "data", "is a folder"),
        ("--errors", "data/woman/x.csv", "input folder"),
        ("--plots", "data/man/000_0_a.png", "input folder"),
        ("--plots", "file.txt/plots", "not a folder"),
        ("--json", "/proc/gender_test/r.json", "cannot be written"),
    ],
)
def test_map_refuses_bad_outputs(small_tree, trained_run, flag, target, words, capsys):
    (small_tree.parent / "file.txt").write_text("x")
    before = tree_digest(small_tree.parent)
    argv = map_argv(small_tree, trained_run, flag, small_tree.parent / target)
    assert gender_mAP.main(argv) == 2
    assert words in error_line(capsys.readouterr().err)
    assert tree_digest(small_tree.parent) == before


@pytest.mark.parametrize("flag", ["--csv", "--annotate", "--explain"])
def test_predict_never_writes_onto_its_input(small_tree, trained_run, flag, capsys):
    image = small_tree / "man/000_0_a.png"
    before = image.read_bytes()
    argv = [str(image), str(trained_run / "best.keras"), "--no-detect", flag, str(image)]
    assert gender_single_predict.main(argv) == 2
    assert "input" in error_line(capsys.readouterr().err)
    assert image.read_bytes() == before


def test_predict_refuses_output_inside_an_input_folder(small_tree, trained_run, capsys):
    argv = [str(small_tree), "--weights", str(trained_run / "best.keras"),
            "--csv", str(small_tree / "man/out.csv")]  # fmt: skip
    assert gender_single_predict.main(argv) == 2
    assert "input folder" in error_line(capsys.readouterr().err)
    assert not (small_tree / "man/out.csv").exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["truth", "{data}", "--out", "{data}/man/table"], "input folder"),
        (["split", "{data}", "--out", "/proc/gender_test"], "cannot be written"),
        (["crop", "{data}", "--out", "{file}"], "not a folder"),
    ],
)
def test_dataset_refuses_bad_outputs(small_tree, argv, words, capsys):
    (small_tree.parent / "file.txt").write_text("x")
    argv = [a.format(data=small_tree, file=small_tree.parent / "file.txt") for a in argv]
    assert dataset.main(argv) == 2
    assert words in error_line(capsys.readouterr().err)


def test_train_refuses_an_unwritable_out(small_tree, capsys):
    argv = ["--data", str(small_tree), "--model", "cnn3", "--image-size", str(IMAGE_SIZE),
            "--epochs", "1", "--out", "/proc/gender_test"]  # fmt: skip
    assert gender_train.main(argv) == 2
    assert "cannot be written" in error_line(capsys.readouterr().err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(small_tree, trained_run, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert gender_mAP.main(map_argv(small_tree, trained_run, "--json", locked / "r.json")) == 2
        assert "read-only" in error_line(capsys.readouterr().err)
    finally:
        locked.chmod(0o755)


# --- flags ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "main, argv",
    [
        (gender_single_predict.main, ["x.jpg", "--batch-size", "0"]),
        (gender_single_predict.main, ["x.jpg", "--batch-size", "-5"]),
        (gender_mAP.main, ["data", "--batch-size", "0"]),
        (gender_mAP.main, ["data", "--threshold", "2"]),
        (gender_mAP.main, ["data", "--threshold", "nan"]),
        (gender_mAP.main, ["data", "--threshold", "0"]),
        (gender_train.main, ["--data", "d", "--batch-size", "-1"]),
        (gender_train.main, ["--data", "d", "--epochs", "0"]),
    ],
)
def test_bad_flag_values_are_usage_errors(main, argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].count("error:") == 1


# --- weights that are not gender models -----------------------------------------------------------


@pytest.fixture(scope="module")
def odd_models(tmp_path_factory):
    import keras

    folder = tmp_path_factory.mktemp("odd_models")

    def save(name, inputs, outputs):
        keras.Model(inputs, outputs).save(folder / f"{name}.keras")

    def head(x, activation="sigmoid"):
        return keras.layers.Dense(1, activation=activation)(
            keras.layers.GlobalAveragePooling2D()(x)
        )

    i = keras.Input((32, 32, 3))
    save("linear", i, head(i, activation=None))
    i = keras.Input((32, 32, 1))
    save("gray", i, head(i))
    i = keras.Input((None, None, 3))
    save("dynamic", i, head(i))
    a, b = keras.Input((32, 32, 3)), keras.Input((32, 32, 3))
    save("two_inputs", [a, b], head(keras.layers.Add()([a, b])))
    i = keras.Input((32, 32, 3))
    save("lambda", i, head(keras.layers.Lambda(lambda t: t / 255.0)(i)))
    data = (folder / "linear.keras").read_bytes()
    (folder / "truncated.keras").write_bytes(data[: len(data) // 2])
    return folder


@pytest.mark.parametrize(
    "name, words",
    [
        ("linear", "not a probability"),
        ("gray", "not an RGB image"),
        ("dynamic", "not fixed"),
        ("two_inputs", "2 inputs"),
        ("lambda", "only models built by this toolkit load"),  # the whole sentence
        ("truncated", "corrupt"),
    ],
)
def test_odd_models_are_refused(odd_models, small_tree, name, words, capsys):
    argv = [str(small_tree), str(odd_models / f"{name}.keras"), "--backend", "keras"]
    assert gender_mAP.main(argv) == 2
    line = error_line(capsys.readouterr().err)
    assert words in line, line


@pytest.mark.parametrize("name, words", [("truncated", "corrupt"), ("lambda", "Lambda layer")])
def test_resume_with_a_bad_last_keras(trained_run, odd_models, tmp_path, name, words, capsys):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    for checkpoint in ("last.keras", "epoch_001.keras"):
        shutil.copy(odd_models / f"{name}.keras", run / checkpoint)
    # --epochs 2: the run finished its one epoch, and only a longer run loads last.keras
    assert gender_train.main(["--resume", str(run), "--epochs", "2"]) == 2
    assert words in error_line(capsys.readouterr().err)


# --- interrupted runs -----------------------------------------------------------------------------


def test_resume_reconciles_an_interrupted_epoch(trained_run, tmp_path, capsys):
    """A kill during epoch 2's save: a temporary, epoch_002.keras and a history row, no commit."""
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    (run / ".epoch_002.k3j_x9a2.keras").write_bytes(b"")
    shutil.copy(run / "epoch_001.keras", run / "epoch_002.keras")
    shutil.copy(run / "epoch_001.keras", run / "last.keras")
    history = (run / "history.csv").read_text().splitlines()
    (run / "history.csv").write_text("\n".join([*history, history[-1].replace("1,", "2,", 1)]))
    assert json.loads((run / "run.json").read_text())["epochs_done"] == 1
    assert gender_train.main(["--resume", str(run), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "interrupted save" in out and "not committed" in out
    assert not (run / ".epoch_002.k3j_x9a2.keras").exists()
    assert not (run / "epoch_002.keras").exists()
    assert len((run / "history.csv").read_text().strip().splitlines()) == 2  # header + epoch 1
    assert (run / "last.keras").read_bytes() == (run / "epoch_001.keras").read_bytes()


# --- fuzz: mutated JPEG and PNG bytes through the decoder and one folder command ------------------


def mutations(seed: int, count: int):
    """(name, bytes) of `count` damaged versions of one JPEG and one PNG, reproducibly."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    sources = {"jpg": jpeg_bytes(image), "png": cv2.imencode(".png", image)[1].tobytes()}
    for k in range(count):
        suffix = ("jpg", "png")[k % 2]
        data = bytearray(sources[suffix])
        kind = rng.integers(0, 4)
        if kind == 0:  # flip a few bytes anywhere
            for i in rng.integers(0, len(data), rng.integers(1, 9)):
                data[i] = rng.integers(0, 256)
        elif kind == 1:  # damage the header (size fields live in the first ~200 bytes)
            for i in rng.integers(0, min(len(data), 200), rng.integers(1, 5)):
                data[i] = rng.integers(0, 256)
        elif kind == 2:  # cut it short
            data = data[: rng.integers(1, len(data))]
        else:  # insert junk
            i = rng.integers(0, len(data))
            data[i:i] = rng.integers(0, 256, rng.integers(1, 64), dtype=np.uint8).tobytes()
        yield f"fuzz_{k:04d}.{suffix}", bytes(data)


def run_fuzz(tmp_path, count, capsys):
    folder = tmp_path / "fuzz"
    for name in ("man", "woman"):
        (folder / name).mkdir(parents=True)
    readable = set()
    for k, (name, data) in enumerate(mutations(12, count)):
        path = folder / ("man", "woman")[k % 4 // 2] / name
        path.write_bytes(data)
        try:
            image = read_image(path)
        except BadImageError as err:
            assert str(path) in str(err) and "\n" not in str(err)
        else:
            assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
            readable.add(str(path))
    status = dataset.main(["check", str(folder)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    bad = [line for line in captured.out.splitlines() if line.startswith("bad: ")]
    assert len(bad) == count - len(readable)
    assert all(sum(f"/{name}:" in line for line in bad) <= 1 for name, _ in mutations(12, count))
    assert status == (1 if bad or "suspicious" in captured.out else 0)


def test_fuzz_decoder(tmp_path, capsys):
    run_fuzz(tmp_path, 300, capsys)


@pytest.mark.slow
def test_fuzz_decoder_long(tmp_path, capsys):
    run_fuzz(tmp_path, 2000, capsys)


def test_a_header_only_gif_is_one_error_line_in_a_fresh_process(tmp_path):
    """OpenCV logs its own decoder error on the process's stderr (not Python's): a file with a
    GIF header and nothing after it must still end in the toolkit's one line."""
    bad = tmp_path / "header_only.jpg"
    bad.write_bytes(b"GIF89a garbage")
    done = predict_in_fresh_process([bad])
    assert done.returncode == 2
    assert str(bad) in error_line(done.stderr)
