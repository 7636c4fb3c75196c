"""Face detection, alignment, per-face prediction, --detect-faces, dataset.py crop and Grad-CAM.

A synthetic image is not a face, so the faces here are a real photo that matplotlib ships
(grace_hopper.jpg, 512x600, one face), composed into a group picture and rotated. Detection is
slow-ish (about a second per picture on 2 cores), so pictures are detected once per module.
"""

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, error_line, predict_in_fresh_process, tree_digest

import dataset
import gender_mAP
import gender_single_predict
from gender.cli.predict import NO_FACE
from gender.faces import EYE_LINE, align_crop, detect_faces, face_crops
from gender.images import read_image, resize
from gender.lite_faces import crop_and_resize

# Where the face is in grace_hopper.jpg (x1, y1, x2, y2), read off the photo: hairline to chin.
HOPPER_FACE = (175, 110, 355, 340)


def hopper_path() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def rotate(rgb, degrees):
    """Rotate counter-clockwise about the centre, on a canvas large enough to keep every corner."""
    import cv2

    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(height * sin + width * cos), int(height * cos + width * sin)
    matrix[:, 2] += (new_w - width) / 2, (new_h - height) / 2
    return cv2.warpAffine(rgb, matrix, (new_w, new_h), borderMode=cv2.BORDER_REPLICATE)


def group_picture(rgb):
    """Three copies side by side, at full, 3/4 and 1/2 size, on a grey canvas (3 faces)."""
    import cv2

    height, width = rgb.shape[:2]
    canvas = np.full((height, 3 * width, 3), 128, np.uint8)
    left = 0
    for scale in (1.0, 0.75, 0.5):
        tile = cv2.resize(rgb, (int(width * scale), int(height * scale)))
        canvas[height - tile.shape[0] :, left : left + tile.shape[1]] = tile
        left += width
    return canvas


def no_face_picture(seed=0):
    """Smooth coloured blobs: an image with no face in it."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (400, 300), interpolation=cv2.INTER_CUBIC)


def save(path, rgb):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


def grey(rgb) -> np.ndarray:
    import cv2

    image = cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    return cv2.GaussianBlur(image.astype(float), (0, 0), 3).ravel()


def eye_angle(face) -> float:
    (lx, ly), (rx, ry) = face.eyes
    return float(np.degrees(np.arctan2(ry - ly, rx - lx)))


@pytest.fixture(scope="module")
def hopper():
    return read_image(hopper_path())


@pytest.fixture(scope="module")
def photos(tmp_path_factory, hopper):
    """Photo files: one face, a group of three, a face turned 30 degrees, and no face."""
    root = tmp_path_factory.mktemp("photos")
    return {
        "one": save(root / "hopper.jpg", hopper),
        "group": save(root / "group.jpg", group_picture(hopper)),
        "rotated": save(root / "rotated.jpg", rotate(hopper, 30)),
        "none": save(root / "blobs.png", no_face_picture()),
    }


@pytest.fixture(scope="module")
def detections(photos):
    return {name: detect_faces(read_image(path)) for name, path in photos.items()}


# --- gender/faces.py ----------------------------------------------------------------------------


def test_one_face_box_and_eyes(detections):
    (face,) = detections["one"]
    assert face.score > 0.9
    assert iou(face.box, HOPPER_FACE) > 0.7, face.box
    x1, y1, x2, y2 = face.box
    left, right = face.eyes
    assert x1 < left[0] < right[0] < x2  # the left eye (in the image) comes first
    assert y1 < left[1] < (y1 + y2) / 2 and y1 < right[1] < (y1 + y2) / 2  # upper half
    assert abs(eye_angle(face)) < 5  # the photo is upright


def test_group_picture_finds_each_face_in_its_tile(detections, hopper):
    faces = detections["group"]
    assert len(faces) == 3
    width = hopper.shape[1]
    tiles = sorted(int((f.box[0] + f.box[2]) / 2 // width) for f in faces)
    assert tiles == [0, 1, 2]
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)  # largest first
    assert areas[0] / areas[2] == pytest.approx(4, rel=0.35)  # full size vs half size


def test_no_face(detections, photos):
    assert detections["none"] == []
    assert face_crops(read_image(photos["none"]), (64, 64)) == []


def test_face_views_are_two_framings_and_their_mirrors(detections, hopper):
    """Prediction averages a detected face over its views (faces.VIEW_MARGINS): the toolkit's
    framing and a looser one, each followed by its mirror image."""
    from gender.faces import DEFAULT_MARGIN, face_views, whole_image_views

    (face,) = detections["one"]
    views = face_views(hopper, face, (64, 64))
    assert views.shape == (4, 64, 64, 3) and views.dtype == np.uint8
    np.testing.assert_array_equal(views[0], align_crop(hopper, face, (64, 64), DEFAULT_MARGIN))
    np.testing.assert_array_equal(views[1], views[0][:, ::-1])
    np.testing.assert_array_equal(views[2], align_crop(hopper, face, (64, 64), 3.2))
    np.testing.assert_array_equal(views[3], views[2][:, ::-1])
    assert not np.array_equal(views[0], views[2])  # the looser crop is another picture
    # the views have their own widths: asking for another margin as well is refused, not ignored
    with pytest.raises(ValueError, match="views are cropped at"):
        face_crops(hopper, (64, 64), margin=3.0, views=True)
    # an image without a face has two views, the whole image and its mirror
    whole = whole_image_views(hopper[:64, :64])
    assert whole.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(whole[1], hopper[:64, :64][:, ::-1])


def test_a_detected_face_is_answered_over_its_views(photos, trained_run):
    """One photo (Predictor.faces) and a folder with detection answer the same P(woman): the mean
    of the face's views, each classified alone."""
    from gender.data import Samples
    from gender.faces import face_views
    from gender.predictor import Predictor

    predictor = Predictor.load(trained_run / "best.keras", backend="keras")
    predictor.fast_detector = True  # as folders do: both paths then find the very same face
    rgb = read_image(photos["one"])
    (result,) = predictor.faces(rgb)
    each_view = predictor.classify(face_views(rgb, result.face, predictor.size))
    assert np.ptp(each_view) > 0  # the views differ, so the mean is not any one of them
    assert result.p_woman == pytest.approx(each_view.mean(), abs=1e-6)
    samples = Samples([str(photos["one"]), str(photos["none"])], np.zeros(2, np.int64))
    folder = predictor.folder(samples, detect=True, progress=False)
    assert folder.p_woman[0] == pytest.approx(result.p_woman, abs=1e-6)
    # no face: the whole image and its mirror
    whole = resize(read_image(photos["none"]), predictor.size)
    expected = predictor.classify(np.stack([whole, whole[:, ::-1]])).mean()
    assert list(folder.has_face) == [True, False]
    assert folder.p_woman[1] == pytest.approx(expected, abs=1e-6)


def test_rotated_face_comes_out_upright(detections, hopper, photos):
    (turned,) = detections["rotated"]
    assert eye_angle(turned) == pytest.approx(-30, abs=6)  # counter-clockwise in the picture
    (upright,) = detections["one"]
    size = (160, 160)
    straight = align_crop(hopper, upright, size).astype(float)
    fixed = align_crop(read_image(photos["rotated"]), turned, size).astype(float)
    assert fixed.shape == (160, 160, 3)
    # The crop of the turned photo is the upright crop again (up to the landmarks' jitter),
    # and not a turned one: compared as blurred grey images.
    tilted = rotate(straight, 30)[29:189, 29:189]  # 30 degrees about the centre, same size
    assert np.corrcoef(grey(straight), grey(fixed))[0, 1] > 0.8
    assert np.corrcoef(grey(tilted), grey(fixed))[0, 1] < 0.5
    # and its eyes lie level on the eye line
    (again,) = detect_faces(fixed.astype(np.uint8))
    assert abs(eye_angle(again)) < 5
    assert again.eyes[:, 1].mean() == pytest.approx(EYE_LINE * size[0], abs=0.05 * size[0])


def test_crop_size_and_framing(detections, hopper):
    (face,) = detections["one"]
    for size in ((64, 64), (150, 150), (96, 48)):
        crop = align_crop(hopper, face, size)
        assert crop.shape == (*size, 3) and crop.dtype == np.uint8
    # Twice the margin zooms out twice: the tight crop is the middle of the wide one, with the
    # eye line (EYE_LINE = 0.29 down) in the same place: rows 14.5..64.5 of 100.
    import cv2

    tight = align_crop(hopper, face, (100, 100), 2.0)
    tight = cv2.resize(tight, (50, 50), interpolation=cv2.INTER_AREA)
    wide = align_crop(hopper, face, (100, 100), 4.0)
    assert np.corrcoef(grey(tight), grey(wide[15:65, 25:75]))[0, 1] > 0.9


# --- gender/lite_faces.py: the same detector without TensorFlow ---------------------------------


def same_faces(slow, fast, pixels=1.0):
    """Assert two detections found the same faces: boxes and landmarks within `pixels`."""
    assert len(fast) == len(slow)
    for a, b in zip(slow, fast):
        assert np.abs(np.subtract(a.box, b.box)).max() <= pixels, (a.box, b.box)
        assert np.abs(a.landmarks - b.landmarks).max() <= pixels, (a.landmarks, b.landmarks)
        assert abs(a.score - b.score) < 1e-3


@pytest.mark.parametrize("name", ["one", "group", "rotated", "none"])
def test_lite_detector_finds_what_mtcnn_finds(detections, photos, name):
    # The networks are the package's own weights and the steps between them a port of its code,
    # so the faces agree to float rounding (about 0.01 px), far inside the 1 px allowed.
    same_faces(detections[name], detect_faces(read_image(photos[name]), fast=True))


def test_lite_detector_on_a_large_photo(hopper):
    """Above DETECT_MAX_SIDE the detector sees a shrunk copy; boxes still come back in place."""
    import cv2

    big = cv2.resize(hopper, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC)
    (slow,), (fast,) = detect_faces(big), detect_faces(big, fast=True)
    same_faces([slow], [fast], pixels=2.5)  # 1 px in the shrunk copy
    assert iou(fast.box, [2.5 * v for v in HOPPER_FACE]) > 0.7


def pasted_portraits(count=6, seed=0):
    """faces_web / faces_utk faces pasted at a portrait's scale (30-45% of the shorter side) into
    500-800 px frames on a plain, blurred background; [] without ../shared data."""
    import cv2

    rng = np.random.default_rng(seed)
    frames = []
    for name in ("faces_web", "faces_utk"):
        for label in ("man", "woman"):
            folder = SHARED_DATA / name / label
            for path in sorted(folder.iterdir())[: count // 4 + 1] if folder.is_dir() else []:
                face = read_image(path)
                height, width = (int(v) for v in rng.integers(500, 801, 2))
                frame = cv2.resize(face[:16, :16], (width, height), interpolation=cv2.INTER_CUBIC)
                frame = cv2.GaussianBlur(frame, (0, 0), 15)
                side = int(min(height, width) * rng.uniform(0.30, 0.45))
                x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
                frame[y : y + side, x : x + side] = cv2.resize(face, (side, side))
                frames.append((f"{path.name} in {width}x{height}", frame))
    return frames


def test_reduced_pyramid_finds_what_the_full_one_finds(hopper):
    """By default the detector skips the pyramid levels for faces under a tenth of the shorter
    side; the faces it finds are those the full pyramid (min_face=20) finds, boxes and landmarks
    within 2 px, on the test photos and on data-set faces pasted into portrait-sized frames."""
    import cv2

    pictures = [
        ("hopper", hopper),
        ("group", group_picture(hopper)),
        ("turned", rotate(hopper, 30)),
    ]
    pictures += [("hopper 640", cv2.resize(hopper, (546, 640)))] + pasted_portraits()
    for name, rgb in pictures:
        full = detect_faces(rgb, fast=True, min_face=20)
        reduced = detect_faces(rgb, fast=True)
        assert len(full) >= 1, name
        try:
            same_faces(full, reduced, pixels=2.0)
        except AssertionError as err:
            raise AssertionError(f"{name}: {err}") from None


def test_min_face_finds_small_faces_in_group_photos(hopper, tmp_path, trained_run, capsys):
    """A face under a tenth of the photo is skipped by default and found with --min-face."""
    import cv2

    canvas = np.full((1200, 1600, 3), 128, np.uint8)
    small = cv2.resize(hopper, (128, 150), interpolation=cv2.INTER_AREA)  # face about 50 px
    canvas[100:250, 100:228] = small
    canvas[500:1100, 900:1412] = hopper  # and one large face
    assert len(detect_faces(canvas, fast=True)) == 1
    assert len(detect_faces(canvas, fast=True, min_face=30)) == 2
    photo = save(tmp_path / "group.jpg", canvas)
    weights = str(trained_run / "best.keras")
    assert gender_single_predict.main([str(photo), weights, "--min-face", "30"]) == 0
    assert "face 2 at" in capsys.readouterr().out


def test_folder_detection_in_threads_matches_one_photo_at_a_time(portraits):
    """largest_faces decodes and detects on worker threads; the results are each photo's own,
    in order."""
    from gender.data import list_folder
    from gender.faces import CropSummary, largest_faces

    paths = list_folder(portraits).paths
    for views in (False, True):
        found = list(largest_faces(paths, (64, 64), CropSummary(), views=views))
        assert [i for i, _, _ in found] == list(range(len(paths)))
        for i, _, crop in found:
            expected = face_crops(read_image(paths[i]), (64, 64), fast=True, views=views)
            if expected:
                np.testing.assert_array_equal(crop, expected[0][1])
            else:
                assert crop is None


def test_crop_and_resize_is_tensorflows():
    """The port of tf.image.crop_and_resize, with boxes inside, across and outside the image."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (37, 53, 3)).astype(np.float32)
    # x1, y1, x2, y2: inside, around the whole image, across its corner, one pixel
    boxes = np.array([[3, 4.5, 20.2, 21.7], [-10, -6, 60, 44], [40.5, 20, 70, 49.5], [5, 5, 6, 6]])
    height, width = image.shape[:2]
    normalised = boxes[:, [1, 0, 3, 2]] / [height, width, height, width]
    for size in (24, 48):
        expected = tf.image.crop_and_resize(image[None], normalised, [0] * len(boxes), (size, size))
        np.testing.assert_allclose(crop_and_resize(image, boxes, size), expected, atol=1e-5)


def test_fast_portrait_imports_no_tensorflow():
    """The portrait path (bundled model, detection, LiteRT) never imports TensorFlow or Keras."""
    result = predict_in_fresh_process([hopper_path(), "--backend", "lite"])
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout
    assert "face 1 at x1,y1,x2,y2 = " in result.stdout
    assert "face 2" not in result.stdout
    assert "XNNPACK" not in result.stderr


@pytest.mark.slow
def test_export_detector_remakes_the_bundled_networks(tmp_path):
    """`export_detector` (the recipe in its docstring) gives networks that compute what the
    committed weights/detector/ files compute."""
    from ai_edge_litert.interpreter import Interpreter

    from gender.export import export_detector
    from gender.lite_faces import detector_files

    made, bundled = export_detector(tmp_path), detector_files()
    rng = np.random.default_rng(0)
    shapes = {"pnet": (1, 40, 52, 3), "rnet": (5, 24, 24, 3), "onet": (3, 48, 48, 3)}
    for name, shape in shapes.items():
        batch = rng.uniform(-1, 1, shape).astype(np.float32)
        outputs = []
        for path in (made[name], bundled[name]):
            net = Interpreter(model_path=str(path))
            net.resize_tensor_input(net.get_input_details()[0]["index"], shape)
            net.allocate_tensors()
            net.set_tensor(net.get_input_details()[0]["index"], batch)
            net.invoke()
            details = sorted(net.get_output_details(), key=lambda d: d["shape"][-1])
            outputs.append([net.get_tensor(d["index"]) for d in details])
        for a, b in zip(*outputs):
            np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_lite_detector_on_dataset_photos():
    """Both detectors on a few faces_web and faces_utk images (../shared data)."""
    paths = []
    for name in ("faces_web", "faces_utk"):
        for label in ("man", "woman"):
            folder = SHARED_DATA / name / label
            if folder.is_dir():
                paths += sorted(folder.iterdir())[:4]
    if not paths:
        pytest.skip(f"{SHARED_DATA} has no faces_web or faces_utk")
    for path in paths:
        image = read_image(path)
        same_faces(detect_faces(image), detect_faces(image, fast=True))


@pytest.mark.slow
def test_crops_of_utk_images_look_like_the_images():
    """The margin was chosen so that a UTKFace crop comes out framed as UTKFace frames it."""
    folder = SHARED_DATA / "faces_utk" / "woman"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    adults = [p for p in sorted(folder.iterdir()) if int(p.name.split("_")[0]) >= 18][:10]
    differences = []
    for path in adults:
        image = read_image(path)
        crops = face_crops(image, image.shape[:2])
        assert crops, path
        differences.append(np.abs(crops[0][1].astype(float) - image).mean())
    assert np.median(differences) < 20  # 0..255 scale; a shifted or rescaled frame gives 40+


# --- gender_single_predict.py -------------------------------------------------------------------


def predict(args, capsys):
    status = gender_single_predict.main([str(a) for a in args])
    return status, capsys.readouterr()


def test_predict_one_line_per_face(photos, trained_run, capsys):
    status, captured = predict([photos["group"], trained_run / "best.keras"], capsys)
    assert status == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines, 1):
        assert f"face {i} at x1,y1,x2,y2 = " in line
        assert (": man (P(woman) " in line) or (": woman (P(woman) " in line)


def test_predict_no_face_has_its_own_status(photos, trained_run, capsys):
    status, captured = predict([photos["none"], trained_run / "best.keras"], capsys)
    assert status == NO_FACE == 3
    assert "no face found" in captured.out
    assert "man (" not in captured.out  # no invented label
    status, captured = predict([photos["none"], trained_run / "best.keras", "--no-detect"], capsys)
    assert status == 0 and "(P(woman) " in captured.out


def test_predict_pedestrian_model_never_detects(photos, trained_run, tmp_path, capsys):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "task": "pedestrian"}))
    status, captured = predict([photos["none"], run / "best.keras"], capsys)
    assert status == 0 and "no face" not in captured.out
    status, captured = predict([photos["one"], run / "best.keras", "--detect-faces"], capsys)
    assert status == 2 and "pedestrian" in error_line(captured.err)


def test_predict_annotate_and_explain(photos, trained_run, tmp_path, capsys):
    annotated, explained = tmp_path / "boxes.jpg", tmp_path / "why.png"
    args = [photos["group"], trained_run / "best.keras", "--annotate", annotated]
    status, _ = predict([*args, "--explain", explained], capsys)
    assert status == 0
    photo = read_image(photos["group"])
    drawn, explained = read_image(annotated), read_image(explained)
    # below the photo: a strip with the label, the probability and the colour scale
    heat, legend = explained[: photo.shape[0]], explained[photo.shape[0] :]
    assert drawn.shape == heat.shape == photo.shape
    assert len(legend) >= 40 and (legend[..., 0].astype(int) - legend[..., 2]).max() > 100
    assert np.abs(drawn.astype(int) - photo).max() > 100  # boxes were drawn
    # The heatmap covers the faces and leaves the rest of the picture as it was.
    changed = np.abs(heat.astype(int) - photo).sum(axis=2) > 30
    assert changed.any()
    assert not changed[:, -40:].any() and not changed[:40, :].any()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic writes


def test_predict_annotate_needs_one_image(photos, trained_run, capsys):
    args = [photos["one"], photos["group"], "--weights", trained_run, "--annotate", "x.jpg"]
    status, captured = predict(args, capsys)
    assert status == 2 and "--annotate" in error_line(captured.err)


def test_predict_folder_does_not_detect_unless_asked(photos, trained_run, capsys):
    folder = photos["one"].parent
    status, captured = predict([folder, "--weights", trained_run], capsys)
    rows = list(csv.reader(io.StringIO(captured.out)))
    assert status == 0 and rows[0] == ["path", "label", "probability", "p_woman"]
    assert len(rows) == 1 + len(photos)


@pytest.mark.slow
def test_predict_folder_with_detect_faces_one_row_per_face(photos, trained_run, capsys):
    folder = photos["one"].parent
    status, captured = predict([folder, "--weights", trained_run, "--detect-faces"], capsys)
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert status == NO_FACE  # the blobs picture
    faces = {Path(r["path"]).name: [] for r in rows}
    for row in rows:
        faces[Path(row["path"]).name].append(row["label"])
    assert faces["blobs.png"] == ["no face"]
    assert len(faces["group.jpg"]) == 3 and len(faces["hopper.jpg"]) == 1


# --- gender_mAP.py --detect-faces and dataset.py crop ------------------------------------------


@pytest.fixture(scope="module")
def portraits(tmp_path_factory, hopper):
    """{man,woman}/ of 3 pictures each: faces, one group picture, one picture without a face."""
    root = tmp_path_factory.mktemp("portraits")
    save(root / "man" / "a" / "hopper.jpg", hopper)
    save(root / "man" / "blobs.png", no_face_picture(1))
    save(root / "man" / "mirror.jpg", hopper[:, ::-1])
    save(root / "woman" / "group.jpg", group_picture(hopper))
    save(root / "woman" / "rotated.png", rotate(hopper, -20))
    save(root / "woman" / "blobs.png", no_face_picture(2))
    return root


def test_map_detect_faces_keeps_every_image(portraits, trained_run, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    args = [portraits, trained_run / "best.keras", "--detect-faces", "--json", report_path]
    assert gender_mAP.main([str(a) for a in args]) == 0
    out = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["n"] == 6  # the two pictures without a face are still counted
    faces = report["faces"]
    assert (faces["found"], faces["none"], faces["several"]) == (4, 2, 1)
    assert sorted(Path(p).name for p in faces["no_face_paths"]) == ["blobs.png", "blobs.png"]
    assert "faces: found in 4 of 6 images, none in 2" in out
    assert "over all 6 images" in out and "over the 4 with a face" in out
    assert faces["accuracy_no_face_wrong"] <= faces["accuracy_with_face"] * 4 / 6 + 1e-9


def test_dataset_crop(portraits, tmp_path, capsys):
    before = tree_digest(portraits)
    out = tmp_path / "crops"
    assert dataset.main(["crop", str(portraits), "--out", str(out), "--image-size", "64"]) == 0
    printed = capsys.readouterr()
    assert "found in 4 of 6 images, none in 2, several in 1" in printed.out
    assert "detecting faces" in printed.err  # progress on stderr
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == [
        "man/a/hopper.jpg",
        "man/mirror.jpg",
        "no_face.txt",
        "woman/group.jpg",
        "woman/rotated.png",
    ]
    assert read_image(out / "woman" / "group.jpg").shape == (64, 64, 3)
    assert len((out / "no_face.txt").read_text().splitlines()) == 3  # header + 2
    assert tree_digest(portraits) == before  # the input folder is untouched
    # a second run refuses to mix into the first
    assert dataset.main(["crop", str(portraits), "--out", str(out)]) == 2
    assert "not empty" in error_line(capsys.readouterr().err)


def test_dataset_crop_margin_is_the_width_predicted_on(hopper, tmp_path):
    save(tmp_path / "in" / "man" / "hopper.png", hopper)
    save(tmp_path / "in" / "woman" / "hopper.png", hopper)
    size = (96, 96)
    face = detect_faces(hopper, fast=True)[0]
    for width in (1.8, 4.4):
        out = tmp_path / f"out{width}"
        args = ["crop", str(tmp_path / "in"), "--out", str(out), "--image-size", "96"]
        assert dataset.main([*args, "--margin", str(width)]) == 0
        written = read_image(out / "man" / "hopper.png").astype(float)
        expected = align_crop(hopper, face, size, width).astype(float)
        assert np.abs(written - expected).mean() < 1  # the same crop (png: lossless)
        assert np.abs(written - align_crop(hopper, face, size).astype(float)).mean() > 10


def test_dataset_crop_width_range_keeps_splits(hopper, tmp_path, capsys):
    for split in ("train", "val"):
        for name in ("man", "woman"):
            for k in range(3):
                save(tmp_path / "in" / split / name / f"{k}.png", hopper)
    crops = []
    for run in ("a", "b"):
        out = tmp_path / run
        args = ["crop", str(tmp_path / "in"), "--out", str(out), "--image-size", "64"]
        assert dataset.main([*args, "--margin", "1.8:5.6", "--seed", "3"]) == 0
        assert "1.8 to 5.6 eye distances wide" in capsys.readouterr().out
        paths = sorted(p.relative_to(out) for p in out.rglob("*.png"))
        assert [str(p.parent) for p in paths] == [
            f"{split}/{name}" for split in ("train", "val") for name in ("man", "woman")
            for _ in range(3)
        ]  # fmt: skip
        crops.append([read_image(out / p).astype(float) for p in paths])
    first = crops[0]
    # one photo, 12 widths drawn: the crops differ, and the same seed draws them again
    assert len({c.tobytes() for c in first}) == len(first)
    assert all(np.array_equal(a, b) for a, b in zip(first, crops[1]))
    extremes = {
        w: align_crop(hopper, detect_faces(hopper, fast=True)[0], (64, 64), w) for w in (1.8, 5.6)
    }
    # the widths span the range: some crops are nearer the inner face, some the whole head
    nearest = [min(extremes, key=lambda w: np.abs(c - extremes[w]).mean()) for c in first]
    assert set(nearest) == {1.8, 5.6}


@pytest.mark.parametrize("margin", ["0.5", "3:2", "a", "1:2:3", "nan"])
def test_dataset_crop_bad_margin_is_one_line(margin, portraits, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        dataset.main(["crop", str(portraits), "--out", str(tmp_path / "o"), "--margin", margin])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --margin" in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_train_detect_faces_leaves_out_faceless_images(portraits, hopper, tmp_path, capsys):
    import cv2

    import gender_train

    data = Path(shutil.copytree(portraits, tmp_path / "data"))
    save(data / "man" / "smaller.jpg", cv2.resize(hopper, (410, 480)))
    save(data / "woman" / "larger.jpg", cv2.resize(hopper, (580, 680)))
    args = ["--data", str(data), "--model", "cnn3", "--image-size", "32", "--epochs", "1",
            "--val-split", "0.5", "--detect-faces", "--out", str(tmp_path / "runs")]  # fmt: skip
    assert gender_train.main(args) == 0
    out = capsys.readouterr().out
    assert "without a face left out" in out
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    info = json.loads((run / "run.json").read_text())
    assert info["flags"]["detect_faces"] is True
    counted = sum(info["data"]["train"].values()) + sum(info["data"]["val"].values())
    assert counted == 6  # 8 images, 2 without a face


@pytest.mark.slow
def test_train_detect_faces_needs_a_face_of_each_class(portraits, tmp_path, capsys):
    import gender_train

    args = ["--data", str(portraits), "--model", "cnn3", "--image-size", "32", "--epochs", "1",
            "--val-split", "0.4", "--detect-faces", "--out", str(tmp_path)]  # fmt: skip
    assert gender_train.main(args) == 2
    err = capsys.readouterr().err  # the progress lines, then one error line
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: no man image of the train split")


# --- gender/explain.py --------------------------------------------------------------------------


SMALL_MODELS = ("cnn3", "cnn5", "cnn7", "cnn7se")
TRANSFER_MODELS = (
    "faceresnet",
    "mobilenetv2",
    "resnet101",
    "resnet152",
    "resnet50",
    "vgg16",
)  # 5-10 s each


def test_grad_cam_tests_cover_the_registry():
    from gender.models import list_models

    assert sorted(SMALL_MODELS + TRANSFER_MODELS) == list_models()


@pytest.mark.parametrize(
    "name", [*SMALL_MODELS, *(pytest.param(m, marks=pytest.mark.slow) for m in TRANSFER_MODELS)]
)
def test_grad_cam_on_every_registry_model(name, detections, hopper):
    import keras

    from gender.explain import explain_image, grad_cam
    from gender.images import resize
    from gender.models import create_model

    keras.utils.set_random_seed(0)
    # the smallest square every model takes (cnn7 needs 94), faceresnet its own 150
    size = (150, 150) if name == "faceresnet" else (96, 96)
    model = create_model(name, image_size=size)
    crop = align_crop(hopper, detections["one"][0], size)
    heatmap, p_woman = grad_cam(model, crop)
    assert p_woman == pytest.approx(float(model.predict(crop[None], verbose=0)[0, 0]), abs=1e-5)
    assert heatmap.ndim == 2 and heatmap.shape[0] >= 2
    assert np.isfinite(heatmap).all() and heatmap.min() >= 0 and heatmap.max() <= 1
    assert heatmap.max() == 1 and heatmap.min() < 1  # not constant: one region stands out
    picture = explain_image(model, hopper, size)  # the whole image, no detection
    assert picture.shape == hopper.shape and picture.dtype == np.uint8
    assert np.abs(picture.astype(int) - resize(hopper, hopper.shape[:2])).mean() > 5
