"""The person-disjoint splits the bundled models were trained and measured on (links, no copies).

    python ../shared/tools/extra_data.py --bfw GITDIR --peta GITDIR --out data/extra
    python dataset.py split ../shared/data/pedestrian_cctv --out data/pedestrian --by-person
    python bench/prepare_extra_splits.py            # data/faces_bfw, data/ped, data/ped_test

faces_bfw: 12 of the 60 people of each ethnicity x gender go to val/ (20%, 2,400 images), so
every group of the per-group table has the same number of unseen people.
Pedestrians, three parts, each person on one side only:
  data/ped/train   what the model learns from;
  data/ped/val     chooses the epoch and the decision threshold (never reported as a result);
  data/ped_test    reported: pedestrian_cctv's own held-out persons (data/pedestrian/val, the
                   previous model's validation set) and 15% of the persons of each PETA subset.
PETA's VIPeR, 3DPeS and SARC3D are the photos of pedestrian_cctv and are left out; CUHK has no
person ids and stays whole in training. Files are hard links named <subset>__<name>
(pedestrian_cctv's become cctv__<name>), so `gender_mAP.py --groups subset` reports per camera.
"""

import argparse
import collections
import os
import random
import re
import sys
from pathlib import Path

SAME_PHOTOS_AS_CCTV = ("VIPeR", "3DPeS", "SARC3D")


def link(source: Path, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.link(source, folder / name)


def split_bfw(source: Path, out: Path, seed: int) -> None:
    people = collections.defaultdict(list)
    for class_name in ("man", "woman"):
        for name in sorted(os.listdir(source / class_name)):
            match = re.match(r"^([a-z]+)_(n\d+)_", name)
            people[(match.group(1), class_name, match.group(2))].append(name)
    rng = random.Random(seed)
    groups = collections.defaultdict(list)
    for key in sorted(people):
        groups[key[:2]].append(key)
    val = set()
    for _, keys in sorted(groups.items()):
        rng.shuffle(keys)
        val.update(keys[:12])  # 12 of 60 people per ethnicity x gender
    for key, names in people.items():
        side = "val" if key in val else "train"
        for name in names:
            link(source / key[1] / name, out / side / key[1], name)


def split_pedestrians(cctv_split: Path, peta: Path, data: Path, seed: int) -> None:
    rng = random.Random(seed)
    for part in ("train", "val"):
        persons = collections.defaultdict(list)
        for class_name in ("man", "woman"):
            for name in sorted(os.listdir(cctv_split / part / class_name)):
                persons[re.match(r"^(\d+)_", name).group(1)].append((class_name, name))
        keys = sorted(persons)
        rng.shuffle(keys)
        n_val = round(0.15 * len(keys))
        for i, key in enumerate(keys):
            side = "ped_test" if part == "val" else ("ped/val" if i < n_val else "ped/train")
            for class_name, name in persons[key]:
                link(
                    cctv_split / part / class_name / name, data / side / class_name, f"cctv__{name}"
                )
    persons = collections.defaultdict(list)
    for class_name in ("man", "woman"):
        for name in sorted(os.listdir(peta / class_name)):
            match = re.match(r"^(?P<subset>[^_]+)__(?P<pid>[^_.]+)", name)
            if match["subset"] not in SAME_PHOTOS_AS_CCTV:
                persons[(match["subset"], match["pid"])].append((class_name, name))
    by_subset = collections.defaultdict(list)
    for key in sorted(persons):
        by_subset[key[0]].append(key)
    for subset, keys in sorted(by_subset.items()):
        rng.shuffle(keys)
        for i, key in enumerate(keys):
            if subset == "CUHK":
                side = "ped/train"
            elif i < 0.15 * len(keys):
                side = "ped/val"
            else:
                side = "ped_test" if i < 0.30 * len(keys) else "ped/train"
            for class_name, name in persons[key]:
                link(peta / class_name / name, data / side / class_name, name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="where data/extra and data/pedestrian are")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args(argv)
    data = Path(args.data)
    needed = [data / "extra" / "faces_bfw", data / "extra" / "pedestrian_peta", data / "pedestrian"]
    missing = [str(p) for p in needed if not p.is_dir()]
    if missing:
        sys.exit(f"error: missing {', '.join(missing)} (see this script's docstring)")
    made = [data / "faces_bfw", data / "ped", data / "ped_test"]
    if any(p.exists() for p in made):
        sys.exit(f"error: {', '.join(str(p) for p in made if p.exists())} already exist")
    split_bfw(data / "extra" / "faces_bfw", data / "faces_bfw", args.seed)
    split_pedestrians(data / "pedestrian", data / "extra" / "pedestrian_peta", data, args.seed)
    for folder in (data / "faces_bfw" / "train", data / "faces_bfw" / "val", *made[1:]):
        for part in [folder] if folder.name != "ped" else [folder / "train", folder / "val"]:
            counts = {c: len(os.listdir(part / c)) for c in ("man", "woman")}
            print(f"{part}: man {counts['man']}, woman {counts['woman']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
