"""The group of each evaluated image, for per-group error rates (`gender_mAP.py --groups`).

Binary gender classifiers fail unevenly across groups (ethnicity, age, camera); a report on the
whole folder hides it. A group comes from the file name (a regex whose group 1 is the group, or a
ready-made name below) or from a CSV of `path,group` rows. An image that matches no group is
counted under NO_GROUP, never dropped.
"""

import csv
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gender import UserError

if TYPE_CHECKING:
    import numpy as np

NO_GROUP = "(no group)"
UTK_RACES = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "other"}


def _age_band(age: str) -> str:
    age = int(age)
    if age < 18:
        return "0-17"
    if age < 40:
        return "18-39"
    return "40-59" if age < 60 else "60+"


# name -> (regex on the file name, map from group 1 to the group's name)
PRESETS = {
    # Balanced Faces in the Wild as extra_data.py names it: asian_n000053_0001_01.jpg
    "bfw-ethnicity": (r"^([a-z]+)_n\d+_", str),
    # UTKFace: AGE_GENDER_RACE_DATE.jpg.chip.jpg
    "utk-age": (r"^(\d+)_\d_", _age_band),
    "utk-race": (r"^\d+_\d_(\d)_", lambda code: UTK_RACES.get(code, code)),
    # the camera network of PETA as extracted (VIPeR__000_45_1.bmp), or any <subset>__<name>
    "subset": (r"^([^_]+)__", str),
}


def group_names(paths: Sequence[str], source: str) -> list[str]:
    """The group of each path from `source`: a PRESETS name, a CSV file, or a regex (group 1)."""
    if source in PRESETS:
        pattern, name_of = PRESETS[source]
        return _from_regex(paths, pattern, name_of)
    if source.lower().endswith(".csv") or Path(source).is_file():
        return _from_csv(paths, Path(source))
    return _from_regex(paths, source, str)


def _from_regex(paths, pattern: str, name_of) -> list[str]:
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise UserError(
            f"--groups {pattern!r}: not a preset ({', '.join(PRESETS)}), a CSV file or a "
            f"valid regex ({err})"
        ) from None
    if regex.groups < 1:
        raise UserError(f"--groups {pattern!r}: the regex needs a group, e.g. '^([a-z]+)_'")
    names = []
    for path in paths:
        match = regex.search(Path(path).name)
        names.append(name_of(match.group(1)) if match and match.group(1) else NO_GROUP)
    return names


def _from_csv(paths, table: Path) -> list[str]:
    """Rows `path,group`; a path is matched as given, from the CSV's folder, or by file name."""
    if not table.is_file():
        raise UserError(f"{table}: no such file (--groups CSV of path,group rows)")
    by_path, by_name = {}, {}
    try:
        with open(table, newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                if len(row) < 2 or not row[0].strip() or row[0].strip().lower() == "path":
                    continue
                entry, group = row[0].strip(), row[1].strip()
                if os.sep in entry or "/" in entry:
                    for base in (Path.cwd(), table.parent):
                        by_path[os.path.realpath(base / entry)] = group
                else:
                    by_name[entry] = group
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{table}: cannot read it as a CSV of path,group ({err})") from None
    if not by_path and not by_name:
        raise UserError(f"{table}: no path,group rows")
    return [
        by_path.get(os.path.realpath(path), by_name.get(Path(path).name, NO_GROUP))
        for path in paths
    ]


def balance_weights(
    labels: "np.ndarray", groups: Sequence[str], base: "np.ndarray | None" = None
) -> "np.ndarray":
    """Per-image loss weights that give the two classes equal weight within each group.

    A group of n images, n_c of class c, weighs each image n / (2 n_c): the group keeps its
    share of the training set, but a group that is mostly one class (one camera filming mostly
    women) stops teaching "this group -> that class". With `base` weights (e.g. one person
    weighing the same however many frames they are in) the counts are sums of those, and each
    image's weight is its base weight times its class's factor. A group holding one class only
    is left as it was. The weights are scaled to a mean of 1, so the learning rate means what
    it did.
    """
    labels = np.asarray(labels)
    base = np.ones(len(labels)) if base is None else np.asarray(base, np.float64)
    weights = base.copy()
    groups = np.asarray(groups, dtype=object)
    for group in set(groups.tolist()):
        members = groups == group
        mass = np.bincount(labels[members], weights=base[members], minlength=2)
        if mass.min() == 0:
            continue
        weights[members] *= mass.sum() / (2 * mass[labels[members]])
    return (weights / weights.mean()).astype(np.float32)
