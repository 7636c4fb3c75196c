"""Ground-truth tables, train/val splits and file checks for man/woman image folders.

    python dataset.py DIR                                  # DIR/ground_truth.txt and .npy
    python dataset.py split DIR --out OUT --val 0.2 [--by-person]   # OUT/{train,val}/{man,woman}
    python dataset.py check DIR                            # list unreadable or suspicious files
    python dataset.py crop DIR --out OUT [--margin 1.7:5.6]  # aligned face crops, splits kept
    python dataset.py pack DIR --out SHARDS [--val 0.2] [--by-person]  # TFRecord shards + manifest
Nothing here changes, moves or deletes the images: split links (or copies) them.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from gender import CLASS_NAMES, UserError, interrupt
from gender.atomic import check_outputs, file_set, make_folder, whole_folder, write_text
from gender.conflicts import difference_hash, near_duplicates, same_files
from gender.console import run_cli
from gender.data import (
    TRUTH_HEADER,
    Samples,
    class_folders,
    concat_samples,
    find_splits,
    format_truth_line,
    list_folder,
    load_samples,
    person_ids,
    split_samples,
    train_val_samples,
    write_truth_table,
)
from gender.faces import DEFAULT_MARGIN, CropSummary, largest_faces
from gender.flags import (
    Parser,
    add_common_flags,
    add_person_flag,
    apply_common_flags,
    crop_widths,
    fraction,
    tolerant_console,
)
from gender.images import BadImageError, parse_image_size, read_image
from gender.output import write_image
from gender.shards import pack

COMMANDS = ("truth", "split", "check", "crop", "pack")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    truth = sub.add_parser("truth", help="write the ground-truth table as .txt and .npy (default)")
    truth.add_argument("data", metavar="DIR")
    truth.add_argument("--out", help="output name without suffix (default DIR/ground_truth)")
    split = sub.add_parser("split", help="make OUT/train and OUT/val from DIR/{man,woman}")
    split.add_argument("data", metavar="DIR")
    split.add_argument("--out", required=True, help="folder for train/ and val/ (new or empty)")
    split.add_argument(
        "--val", type=fraction, default=0.2, help="validation fraction (default 0.2)"
    )
    add_person_flag(split, "--by-person", "keep each person on one side")
    split.add_argument("--copy", action="store_true", help="copy instead of hard/symbolic links")
    split.add_argument(
        "--seed", type=int, default=1337, help="which random split (default %(default)s)"
    )
    check = sub.add_parser("check", help="list unreadable or suspicious images")
    check.add_argument("data", metavar="DIR")
    crop = sub.add_parser("crop", help="write the largest face of each image, aligned, to OUT")
    crop.add_argument("data", metavar="DIR")
    crop.add_argument("--out", required=True, help="folder for the crops, DIR's layout kept")
    crop.add_argument(
        "--image-size", default="200", help="crop size, N or HxW (default 200, as UTKFace)"
    )
    crop.add_argument(
        "--margin",
        type=crop_widths,
        default=(DEFAULT_MARGIN, DEFAULT_MARGIN),
        metavar="W|LOW:HIGH",
        help=f"crop width in eye distances (default {DEFAULT_MARGIN}: prediction's framing), or a "
        "range each image draws its own width from (log-uniform), to train for every framing "
        "from the inner face (1.8) to the whole head (5.6)",
    )
    crop.add_argument("--seed", type=int, default=1337, help="for the widths of a range")
    pack = sub.add_parser(
        "pack", help="write DIR as sharded TFRecords with a manifest, for streaming training"
    )
    pack.add_argument("data", metavar="DIR")
    pack.add_argument(
        "--out", required=True, metavar="SHARDS", help="folder for the shards and manifest.json"
    )
    pack.add_argument(
        "--val",
        type=fraction,
        default=0.2,
        help="validation fraction when DIR has no train/val (default 0.2; 0 = none)",
    )
    add_person_flag(pack, "--by-person", "split by person and store each image's person id")
    pack.add_argument(
        "--shards", type=int, help="shard files per split (default: ~64 MB each, at least 16)"
    )
    pack.add_argument(
        "--seed", type=int, default=1337, help="the split and the shuffle (default %(default)s)"
    )
    add_common_flags(parser)
    for command_parser in sub.choices.values():
        add_common_flags(command_parser)
    return parser


def main(argv=None) -> int:
    tolerant_console()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "truth")  # the older `python dataset.py DIR`

    args = build_parser().parse_args(argv)
    apply_common_flags(args)
    commands = {
        "truth": write_truth,
        "split": make_split,
        "check": check_files,
        "crop": crop_faces,
        "pack": pack_shards,
    }
    return run_cli(lambda: commands[args.command](args))


def _all_samples(data):
    splits = load_samples(data)
    parts = list(splits.values())
    return Samples([p for s in parts for p in s.paths], np.concatenate([s.labels for s in parts]))


def write_truth(args) -> int:
    samples = _all_samples(args.data)
    stem = Path(args.out) if args.out else Path(args.data) / "ground_truth"
    tables = [(stem.with_suffix(suffix), False) for suffix in (".txt", ".npy")]
    check_outputs(tables, [*class_folders(args.data), *samples.paths])
    # A structured array loads with np.load(...) and no pickle: fields 'path' and 'label'.
    table = np.array(
        list(zip(samples.paths, samples.labels)),
        dtype=[("path", f"U{max(len(p) for p in samples.paths)}"), ("label", "i1")],
    )
    with file_set() as files:  # the pair is replaced together: never a new .txt by an old .npy
        txt = files.add(stem.with_suffix(".txt"))
        write_truth_table(txt, samples, relative_to=stem.parent)
        np.save(files.add(stem.with_suffix(".npy")), table)
    counts = ", ".join(f"{k} {v}" for k, v in samples.counts().items())
    print(
        f"{len(samples)} images ({counts}) -> {stem.with_suffix('.txt')}, "
        f"{stem.with_suffix('.npy')}"
    )
    return 0


def make_split(args) -> int:
    source = Path(args.data)
    out = Path(args.out)
    _outside(source, out)
    for split in ("train", "val"):
        if (out / split).exists() and any((out / split).iterdir()):
            raise UserError(f"{out / split}: already exists and is not empty")
    samples = _all_samples(source)
    train, val = split_samples(samples, args.val, args.seed, args.by_person)
    for split, part in (("train", train), ("val", val)):
        for path, label in zip(part.paths, part.labels):
            src = Path(path)
            target = out / split / CLASS_NAMES[label] / _relative(src, source, label)
            make_folder(target.parent)
            _place(src, target, copy=args.copy)
        counts = ", ".join(f"{k} {v}" for k, v in part.counts().items())
        print(f"{out / split}: {len(part)} images ({counts})")
    if args.by_person:
        overlap = set(person_ids(train.paths, args.by_person)) & set(
            person_ids(val.paths, args.by_person)
        )
        print(f"persons on both sides: {len(overlap)}")
    return 0


def _outside(source: Path, out: Path) -> None:
    check_outputs([(out, True)], [source])  # never into the user's image folder


def _relative(src: Path, source: Path, label: int) -> Path:
    """The path below the class folder, so equal names in subfolders cannot collide."""
    class_dir = source / CLASS_NAMES[label]
    return src.relative_to(class_dir) if src.is_relative_to(class_dir) else Path(src.name)


def crop_faces(args) -> int:
    """Detect once, so that training on portraits need not detect every run. A train/val
    folder keeps its split (a split by person stays one)."""
    source, out = Path(args.data), Path(args.out)
    _outside(source, out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: already exists and is not empty")
    size = parse_image_size(args.image_size)
    splits = find_splits(source)
    summary = CropSummary()
    no_face = []
    rng = np.random.default_rng(args.seed)
    interrupt.keep(f"{out} was not made (the crops are written there only when all are done)")
    with whole_folder(out) as work:
        for split, folder in splits.items():
            samples = list_folder(folder)
            # log-uniform: each factor of width as likely (1.7-2.6 eye distances as 3.7-5.6)
            margins = np.exp(rng.uniform(*np.log(args.margin), len(samples)))
            target_root = work if split == "all" else work / split
            for i, _, crop in largest_faces(samples.paths, size, summary, margins=margins):
                src, label = Path(samples.paths[i]), int(samples.labels[i])
                if crop is None:
                    no_face.append(format_truth_line(str(src), label))
                    continue
                target = target_root / CLASS_NAMES[label] / _relative(src, folder, label)
                if target.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".webp"):
                    target = target.with_suffix(".png")  # a format OpenCV writes
                write_image(target, crop)
        if no_face:
            write_text(work / "no_face.txt", TRUTH_HEADER + "".join(no_face))
    print(summary.line())
    low, high = args.margin
    width = f"{low:g}" if low == high else f"{low:g} to {high:g}"
    layout = "{man,woman}" if "all" in splits else "{train,val}/{man,woman}"
    print(f"{summary.found} crops of {size[0]}x{size[1]}, {width} eye distances wide")
    print(f"-> {out}/{layout}")
    if no_face:
        print(f"the {len(no_face)} images without a face are listed in {out / 'no_face.txt'}")
    return 0


def pack_shards(args) -> int:
    """Shards for data sets bigger than memory (gender_train.py --data SHARDS streams them)."""
    source, out = Path(args.data), Path(args.out)
    _outside(source, out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: already exists and is not empty")
    train, val = train_val_samples(source, args.val, args.seed, args.by_person)
    splits = {"train": train} if val is None else {"train": train, "val": val}
    interrupt.keep(f"{out} was not made (the shards are moved there only when all are written)")
    with whole_folder(out) as work:
        manifest = pack(
            splits, work, person_pattern=args.by_person, source=source, seed=args.seed,
            shards=args.shards,
        )  # fmt: skip
    for name, entry in manifest["splits"].items():
        counts = ", ".join(f"{k} {v}" for k, v in entry["counts"].items())
        print(f"{name}: {entry['count']} images ({counts}) in {len(entry['shards'])} shards")
    print(f"manifest: {out / 'manifest.json'}")
    return 0


def _place(src: Path, target: Path, copy: bool) -> None:
    try:
        if copy:
            shutil.copy2(src, target)
            return
        try:
            os.link(src, target)  # a hard link shares the bytes: no copy, and no change to src
        except OSError:
            target.symlink_to(src.resolve())
    except OSError as err:
        raise UserError(f"{target}: cannot be written ({err.strerror})") from None


def check_files(args) -> int:
    splits = load_samples(args.data)
    samples = concat_samples(list(splits.values()))
    where = [(split, CLASS_NAMES[label]) for split, s in splits.items() for label in s.labels]
    problems = 0
    sizes, hashes, hashed = [], [], []
    for i, path in enumerate(samples.paths):
        try:
            image = read_image(path)
        except BadImageError as err:
            print(f"bad: {err}")
            problems += 1
            continue
        sizes.append(image.shape[:2])
        hashes.append(difference_hash(image))
        hashed.append(i)
        if min(image.shape[:2]) < 24:
            print(f"suspicious: {path}: only {image.shape[1]}x{image.shape[0]} pixels")
            problems += 1
    problems += _report_duplicates(samples.paths, where, hashes, hashed)
    counts = ", ".join(f"{k} {v}" for k, v in samples.counts().items())
    print(f"{len(samples)} files ({counts}); {problems} with problems")
    if sizes:
        heights, widths = zip(*sizes)
        print(f"sizes: height {min(heights)}..{max(heights)}, width {min(widths)}..{max(widths)}")
    return 1 if problems else 0


def _report_duplicates(paths, where, hashes, hashed) -> int:
    """Print the same picture under two classes (conflict) or in two splits (leak): files with
    the same bytes, then decoded images with near hashes; returns how many pairs were found."""
    found = set()

    def report(i: int, j: int, how: str) -> None:
        (split_i, class_i), (split_j, class_j) = where[i], where[j]
        if (class_i, split_i) == (class_j, split_j) or (min(i, j), max(i, j)) in found:
            return  # copies within one class of one split mislabel nothing
        found.add((min(i, j), max(i, j)))
        kind = "conflict" if class_i != class_j else "leak"
        first, second = f"{paths[i]} ({split_i} {class_i})", f"{paths[j]} ({split_j} {class_j})"
        print(f"{kind}: {first} and {second} {how}")

    for group in same_files(paths):
        for j in group[1:]:
            report(group[0], j, "are the same file or byte-identical")
    for a, b, bits in near_duplicates(hashes):
        report(hashed[a], hashed[b], f"look the same (perceptual hashes {bits} bits apart)")
    return len(found)


if __name__ == "__main__":
    sys.exit(main())
