"""Finding, splitting, decoding and feeding images: label order, layouts, errors, augmentation."""

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import PER_CLASS, make_image_tree, write_truncated_jpeg

from gender import UserError
from gender.augment import AUGMENTATIONS, DEFAULT_AUGMENT, build_augmenter, parse_augment
from gender.data import (
    DEFAULT_PERSON_PATTERN,
    Samples,
    decode_images,
    find_splits,
    list_folder,
    load_samples,
    make_dataset,
    person_ids,
    read_truth_table,
    split_samples,
    write_truth_table,
)


def write_png(path, value=100, size=8):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size, 3), value, np.uint8))


# --- label order and layouts --------------------------------------------------------------------


def test_label_order_is_fixed_even_when_woman_is_created_first(tmp_path):
    # woman/ is created first, and its file names sort before the man's.
    write_png(tmp_path / "woman" / "a.png")
    write_png(tmp_path / "woman" / "b.png")
    write_png(tmp_path / "man" / "z.png")
    samples = list_folder(tmp_path)
    labels = dict(zip((p.split("/")[-2] + "/" + p.split("/")[-1] for p in samples.paths),
                      samples.labels.tolist()))  # fmt: skip
    assert labels == {"man/z.png": 0, "woman/a.png": 1, "woman/b.png": 1}
    assert samples.counts() == {"man": 1, "woman": 2}
    assert samples.labels.dtype == np.int64


def test_extra_folders_do_not_shift_labels(tmp_path):
    # An alphabetical class index (as image_dataset_from_directory makes) would give "boy" 0.
    for name in ("woman", "boy", "man"):
        write_png(tmp_path / name / "x.png")
    samples = list_folder(tmp_path)
    assert len(samples) == 2
    assert {p.split("/")[-2]: int(label) for p, label in zip(samples.paths, samples.labels)} == {
        "man": 0,
        "woman": 1,
    }


def test_layout_flat(image_tree):
    assert find_splits(image_tree) == {"all": image_tree}
    splits = load_samples(image_tree)
    assert list(splits) == ["all"]
    assert splits["all"].counts() == {"man": PER_CLASS, "woman": PER_CLASS}


def test_layout_train_val(tmp_path):
    for split in ("train", "val"):
        for name in ("man", "woman"):
            write_png(tmp_path / split / name / f"{split}.png")
    write_png(tmp_path / "all" / "man" / "ignored.png")  # an all/ folder beside train/val
    assert find_splits(tmp_path) == {"train": tmp_path / "train", "val": tmp_path / "val"}
    splits = load_samples(tmp_path)
    assert set(splits) == {"train", "val"}
    assert splits["val"].counts() == {"man": 1, "woman": 1}
    assert not any("ignored" in p for s in splits.values() for p in s.paths)


def test_layout_all(tmp_path):
    write_png(tmp_path / "all" / "man" / "m.png")
    write_png(tmp_path / "all" / "woman" / "w.png")
    assert find_splits(tmp_path) == {"all": tmp_path / "all"}
    assert load_samples(tmp_path)["all"].counts() == {"man": 1, "woman": 1}


def test_non_image_names_are_skipped_with_a_warning(tmp_path, capsys):
    write_png(tmp_path / "man" / "m.png")
    write_png(tmp_path / "woman" / "w.png")
    (tmp_path / "woman" / "notes.txt").write_text("hello")
    (tmp_path / "woman" / ".hidden.png").write_bytes(b"")
    samples = list_folder(tmp_path)
    assert len(samples) == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "warning" in err
    assert ".hidden" not in err


# --- errors name the folder ---------------------------------------------------------------------


def assert_user_error(call, folder, words):
    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert str(folder) in message
    assert words in message.split(str(folder), 1)[1]  # not just in the tmp_path name
    return message


def test_missing_path_is_a_user_error(tmp_path):
    missing = tmp_path / "no_such_data"
    assert_user_error(lambda: load_samples(missing), missing, "no such file")


def test_folder_without_class_folders(tmp_path):
    (tmp_path / "holiday_photos").mkdir()
    folder = tmp_path / "holiday_photos"
    message = assert_user_error(lambda: load_samples(folder), folder, "man/")
    assert "woman/" in message


def test_missing_one_class(tmp_path):
    write_png(tmp_path / "man" / "m.png")
    assert_user_error(lambda: load_samples(tmp_path), tmp_path, "woman/")


def test_missing_class_in_val_split(tmp_path):
    for name in ("man", "woman"):
        write_png(tmp_path / "train" / name / "x.png")
    write_png(tmp_path / "val" / "man" / "x.png")
    assert_user_error(lambda: load_samples(tmp_path), tmp_path / "val", "woman/")


def test_empty_class_folder(tmp_path):
    write_png(tmp_path / "man" / "m.png")
    (tmp_path / "woman").mkdir()
    (tmp_path / "woman" / "readme.txt").write_text("no images here")
    assert_user_error(lambda: load_samples(tmp_path), tmp_path / "woman", "no images")


def test_file_instead_of_folder(tmp_path):
    path = tmp_path / "photo.png"
    write_png(path)
    assert_user_error(lambda: load_samples(path), path, "not a folder")


# --- person ids and splits ----------------------------------------------------------------------


def test_person_ids():
    paths = ["/d/man/003_1_a.png", "/d/woman/012_0_a.jpg", "/d/man/face.jpg", "/x/000_45_1.jpg"]
    ids = person_ids(paths, DEFAULT_PERSON_PATTERN)
    assert ids[0] == "003" and ids[1] == "012" and ids[3] == "000"
    assert ids[2] not in ids[:2] + ids[3:]  # an unmatched name is a person of its own


def test_split_by_person_never_shares_a_person(image_tree):
    samples = load_samples(image_tree)["all"]
    for seed in range(5):
        train, val = split_samples(samples, 0.25, seed, DEFAULT_PERSON_PATTERN)
        train_ids = set(person_ids(train.paths))
        val_ids = set(person_ids(val.paths))
        assert not train_ids & val_ids
        assert len(train) + len(val) == len(samples)
        assert set(train.paths) | set(val.paths) == set(samples.paths)
        for part in (train, val):
            assert all(count > 0 for count in part.counts().values())
        # whole persons: each val person brings all 4 of its images
        assert len(val) % 4 == 0


def test_split_by_image_is_stratified_and_reproducible(image_tree):
    samples = load_samples(image_tree)["all"]
    train, val = split_samples(samples, 0.25, 7)
    assert val.counts() == {"man": 4, "woman": 4}
    assert train.counts() == {"man": 12, "woman": 12}
    again = split_samples(samples, 0.25, 7)[1]
    assert again.paths == val.paths
    # labels travel with their paths
    for path, label in zip(val.paths, val.labels):
        assert ("/woman/" in path) == (label == 1)


def test_split_that_empties_a_class_is_a_user_error(tmp_path):
    write_png(tmp_path / "man" / "001_a.png")
    write_png(tmp_path / "man" / "002_a.png")
    write_png(tmp_path / "woman" / "003_a.png")  # one woman: train or val lacks women
    samples = load_samples(tmp_path)["all"]
    with pytest.raises(UserError, match="woman"):
        split_samples(samples, 0.5, 0, DEFAULT_PERSON_PATTERN)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.2])
def test_split_fraction_out_of_range(image_tree, fraction):
    samples = load_samples(image_tree)["all"]
    with pytest.raises(UserError, match="--val-split"):
        split_samples(samples, fraction, 0)


# --- decoding and the tf.data pipelines ---------------------------------------------------------


def test_decode_skips_bad_files_and_names_them(tmp_path, capsys):
    make_image_tree(tmp_path, per_class=4)
    write_truncated_jpeg(tmp_path / "woman" / "zz_cut.jpg")
    (tmp_path / "man" / "zz_text.jpg").write_text("not a picture")
    samples = load_samples(tmp_path)["all"]
    assert len(samples) == 10
    images, kept = decode_images(samples, (24, 20))
    assert images.shape == (8, 24, 20, 3) and images.dtype == np.uint8
    assert len(kept) == 8
    assert not any("zz_" in p for p in kept.paths)
    assert kept.counts() == {"man": 4, "woman": 4}
    err = capsys.readouterr().err
    assert "zz_cut.jpg" in err and "zz_text.jpg" in err


def test_decode_all_bad_is_a_user_error(tmp_path):
    (tmp_path / "x.jpg").write_text("no")
    with pytest.raises(UserError, match="no readable images"):
        decode_images(Samples([str(tmp_path / "x.jpg")], np.array([0])), (32, 32))


def tiny_arrays(n=6, size=16):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = np.array([0, 1] * (n // 2))
    return images, labels


def test_val_dataset_returns_the_stored_pixels_exactly():
    images, labels = tiny_arrays()
    ds = make_dataset(images, labels, batch_size=4, shuffle=False, augment=None)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    assert [len(x) for x in xs] == [4, 2]
    assert xs[0].dtype == np.uint8
    np.testing.assert_array_equal(np.concatenate(xs), images)
    np.testing.assert_array_equal(np.concatenate(ys).ravel(), labels.astype(np.float32))
    # a second pass is identical (no hidden randomness in the unaugmented pipeline)
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in ds]), images)


def test_shuffled_dataset_keeps_labels_with_their_images():
    images, labels = tiny_arrays(n=8)
    ds = make_dataset(images, labels, batch_size=3, shuffle=True, seed=5)
    seen = []
    for x, y in ds:
        for image, label in zip(x.numpy(), y.numpy().ravel()):
            (index,) = [i for i in range(len(images)) if np.array_equal(images[i], image)]
            assert labels[index] == label
            seen.append(index)
    assert sorted(seen) == list(range(8))


def test_augmentation_changes_training_batches_only():
    keras.utils.set_random_seed(0)  # as the trainer does before building the augmenter
    images, labels = tiny_arrays()
    augment = build_augmenter(parse_augment(DEFAULT_AUGMENT), seed=0)
    train = make_dataset(images, labels, batch_size=6, shuffle=False, augment=augment)
    x, y = next(iter(train))
    x = x.numpy()
    assert x.shape == images.shape
    assert x.min() >= 0 and x.max() <= 255
    assert not np.allclose(x, images, atol=1.0)
    np.testing.assert_array_equal(y.numpy().ravel(), labels.astype(np.float32))
    # The val pipeline built beside it is untouched.
    val = make_dataset(images, labels, batch_size=6, shuffle=False, augment=None)
    np.testing.assert_array_equal(next(iter(val))[0].numpy(), images)


def test_flip_alone_mirrors_or_keeps_each_image():
    keras.utils.set_random_seed(0)
    images, labels = tiny_arrays(n=8)
    augment = build_augmenter(["flip"], seed=0)
    x = np.asarray(augment(images))
    flipped = 0
    for out, original in zip(x, images):
        if np.array_equal(out, original[:, ::-1].astype(np.float32)):
            flipped += 1
        else:
            np.testing.assert_array_equal(out, original.astype(np.float32))
    assert 0 < flipped < 8  # 8 coin tosses: both outcomes (fixed seed)


def test_band_keeps_the_centre_and_fills_the_band_with_the_mean():
    from gender.augment import band_erase

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 40, 40, 3)).astype(np.float32)
    out = np.asarray(band_erase(keras, seed=1, rate=1.0)(images, training=True))
    means = images.mean(axis=(1, 2))
    for before, after, mean in zip(images, out, means):
        # the centre is always inside the kept box (half-sizes >= 25% / 32%, centre +-3%)
        np.testing.assert_array_equal(after[14:26, 14:26], before[14:26, 14:26])
        # the corners are always outside it (the box reaches at most 43% from its centre)
        np.testing.assert_allclose(after[0, 0], mean, rtol=1e-5)
        np.testing.assert_allclose(after[-1, -1], mean, rtol=1e-5)
    untouched = np.asarray(band_erase(keras, seed=1, rate=0.0)(images, training=True))
    np.testing.assert_array_equal(untouched, images)
    np.testing.assert_array_equal(np.asarray(band_erase(keras, 1)(images, training=False)), images)


def test_lowres_loses_detail_at_one_of_three_scales():
    from gender.augment import low_resolution

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 48, 24, 3)).astype(np.float32)
    out = np.asarray(low_resolution(keras, seed=1, rate=1.0)(images, training=True))
    factors = []
    for before, after in zip(images, out):
        # enlarged back from a smaller copy: same size, far less pixel-to-pixel change than noise
        assert after.shape == before.shape
        roughness = np.abs(np.diff(after, axis=0)).mean() / np.abs(np.diff(before, axis=0)).mean()
        assert roughness < 0.6
        # which factor: the image shrunk by it and enlarged back is the output
        redone = {
            f: np.abs(after - keras.ops.image.resize(
                keras.ops.image.resize(before[None], (48 // f, 24 // f), antialias=True), (48, 24)
            )[0]).mean()
            for f in (2, 3, 4)
        }  # fmt: skip
        assert min(redone.values()) < 0.01
        factors.append(min(redone, key=redone.get))
    assert set(factors) == {2, 3, 4}  # 24 images: each scale drawn
    untouched = np.asarray(low_resolution(keras, seed=1, rate=0.0)(images, training=True))
    np.testing.assert_array_equal(untouched, images)
    same = np.asarray(low_resolution(keras, 1)(images, training=False))
    np.testing.assert_array_equal(same, images)


def test_parse_augment():
    assert parse_augment("none") == []
    assert parse_augment("flip, zoom") == ["flip", "zoom"]
    assert build_augmenter([]) is None
    with pytest.raises(UserError, match="sparkle"):
        parse_augment("flip,sparkle")


# --- ground-truth tables ------------------------------------------------------------------------


def test_truth_table_round_trip(image_tree, tmp_path):
    samples = load_samples(image_tree)["all"]
    table = tmp_path / "tables" / "truth.txt"
    write_truth_table(table, samples)
    resolved = [str(Path(p).resolve()) for p in samples.paths]
    back = read_truth_table(table)
    assert back.paths == resolved
    np.testing.assert_array_equal(back.labels, samples.labels)
    # load_samples reads a table too
    via_load = load_samples(table)
    assert list(via_load) == ["all"] and via_load["all"].paths == resolved


def test_truth_table_with_relative_paths(image_tree, tmp_path):
    data = shutil.copytree(image_tree, tmp_path / "copy")
    samples = load_samples(data)["all"]
    table = data / "truth.txt"
    write_truth_table(table, samples, relative_to=data)
    lines = [line for line in table.read_text().splitlines() if not line.startswith("#")]
    assert len(lines) == 2 * PER_CLASS
    assert all(line.startswith(("man/", "woman/")) for line in lines)
    assert {line.rsplit("\t", 1)[1] for line in lines} == {"0", "1"}
    back = read_truth_table(table)
    assert back.paths == [str(data / line.split("\t")[0]) for line in lines]
    assert [Path(p).resolve() for p in back.paths] == [Path(p).resolve() for p in samples.paths]
    np.testing.assert_array_equal(back.labels, samples.labels)


def test_truth_table_bad_line(tmp_path):
    table = tmp_path / "bad.txt"
    table.write_text("# header\nman/a.png\t0\nwoman/b.png\t7\n")
    with pytest.raises(UserError, match=r"bad.txt:3"):
        read_truth_table(table)
    table.write_text("# only a header\n")
    with pytest.raises(UserError, match="no images"):
        read_truth_table(table)


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_every_augmentation_runs_on_raw_pixels(name):
    """Each named augmentation accepts a uint8 batch and returns pixels still in 0..255."""
    augment = build_augmenter([name], seed=0)
    batch = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    out = np.asarray(augment(batch))
    assert out.shape == (4, 32, 32, 3)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 255


def test_disk_backed_arrays_do_not_share_a_file(image_tree, tmp_path, monkeypatch):
    """Over the memory budget, train and val decode into separate files of one cache folder."""
    import gender.data as data

    monkeypatch.setattr(data, "MEMORY_BUDGET_BYTES", 0)
    samples = data.list_folder(image_tree)
    first, _ = data.decode_images(samples.subset(range(4)), (32, 32), tmp_path / "cache")
    expected = np.array(first)
    second, _ = data.decode_images(samples.subset(range(4, 8)), (32, 32), tmp_path / "cache")
    assert isinstance(first, np.memmap) and isinstance(second, np.memmap)
    assert len(list((tmp_path / "cache").iterdir())) == 2
    np.testing.assert_array_equal(first, expected)  # the second decode left the first intact


def test_memory_budget_is_for_all_arrays_together(tmp_path, monkeypatch):
    """Two arrays that each fit the budget but not together: the second goes to a file."""
    import gender.data as data

    monkeypatch.setattr(data, "MEMORY_BUDGET_BYTES", data._ram_bytes[0] + 1000)
    first = data.new_array((600,), np.uint8, tmp_path)
    second = data.new_array((600,), np.uint8, tmp_path)
    assert not isinstance(first, np.memmap) and isinstance(second, np.memmap)
    assert "in RAM" in data.storage(first) and "in a file" in data.storage(second)
    del first  # its bytes go back to the budget
    third = data.new_array((600,), np.uint8, tmp_path)
    assert not isinstance(third, np.memmap)


def test_split_by_person_keeps_an_id_found_in_both_classes_on_one_side(tmp_path):
    # Pedestrian sets merged from two sources number their people alike: "010" under man/ and
    # under woman/ must still land on one side.
    for person in range(10):
        for k in range(2):
            write_png(tmp_path / "man" / f"{person:03d}_{k}_a.png")
            write_png(tmp_path / "woman" / f"{person + 5:03d}_{k}_b.png")
    samples = load_samples(tmp_path)["all"]
    for seed in range(6):
        train, val = split_samples(samples, 0.3, seed, DEFAULT_PERSON_PATTERN)
        assert not set(person_ids(train.paths)) & set(person_ids(val.paths))
        assert len(train) + len(val) == len(samples)


def test_loose_augmentation_only_zooms_out():
    """'loose' shows a centred square smaller (wider framing), never larger, edges repeated."""
    batch = np.full((16, 64, 64, 3), 40, np.uint8)
    batch[:, 16:48, 16:48] = 220  # the "face": a quarter of the frame
    out = np.asarray(build_augmenter(["loose"], seed=0)(batch))
    bright = (out[..., 0] > 130).mean(axis=(1, 2))
    assert (bright <= 0.25 + 0.02).all()
    assert bright.min() < 0.25 * 0.8  # some draws zoom out by well over 10%
    assert np.allclose(out[:, 0, 0], 40, atol=1)  # the border repeats the edge, no black band
