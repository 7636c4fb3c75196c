"""Is the face model thrown by a looser (or tighter) crop? Accuracy per crop margin, one run.

    python bench/bench_crop_margin.py data/utk_val_adults.txt           # a table or a folder
    python bench/bench_crop_margin.py data/faces_web/val --margins 2.0 2.6 3.4 4.2

Each image's largest face is found once (the LiteRT MTCNN), then cropped at each margin (the crop's
width in eye distances; 2.6 is the toolkit's framing, that of the aligned UTKFace crops) and
classified by the model. A larger margin shows more hair, neck and shoulders, as portraits do;
pixels beyond the photo repeat its edge. Images without a face are left out (counted).
"""

import argparse
import sys

from machine import ROOT

sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from gender.console import quiet

    quiet()  # the commands' environment (gender.cli sets it there): a bench times what users run
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a man/woman folder or a ground-truth table .txt")
    parser.add_argument("--weights", help="default: the bundled face model")
    parser.add_argument("--margins", type=float, nargs="+", default=[2.0, 2.6, 3.2, 3.8, 4.4])
    parser.add_argument(
        "--backend", default="auto", choices=["auto", "lite", "int8", "keras"],
        help="as gender_mAP.py's (default auto)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    import numpy as np

    from gender.data import load_samples
    from gender.faces import align_crop, detect_faces
    from gender.images import BadImageError, read_image
    from gender.metrics import evaluate
    from gender.predictor import Predictor

    predictor = Predictor.load(args.weights, task="face", backend=args.backend)
    info, size = predictor.info, predictor.size
    parts = load_samples(args.data)  # a train/val folder: its val/
    samples = parts.get("val") or parts["all"]
    crops = {margin: [] for margin in args.margins}
    labels, no_face = [], 0
    for path, label in zip(samples.paths, samples.labels):
        try:
            rgb = read_image(path)
        except BadImageError:
            continue
        faces = detect_faces(rgb, fast=True)
        if not faces:
            no_face += 1
            continue
        labels.append(label)
        for margin in args.margins:
            crops[margin].append(align_crop(rgb, faces[0], size, margin))

    print(
        f"{args.data}: {len(labels)} images with a face, {no_face} without (left out); "
        f"model {info.model} {size[0]}x{size[1]}, backend {predictor.backend}, "
        f"threshold {predictor.threshold:g}"
    )
    print(f"{'margin':>7}{'accuracy %':>12}{'error man %':>13}{'error woman %':>15}")
    for margin in args.margins:
        p_woman = predictor.classify(np.stack(crops[margin]))
        # at the model's own threshold, as gender_mAP.py and prediction use it
        report = evaluate(np.array(labels), p_woman, predictor.threshold)
        errors = report["error_rate"]
        print(
            f"{margin:>7.1f}{100 * report['accuracy']:>12.2f}"
            f"{100 * errors['man']:>13.2f}{100 * errors['woman']:>15.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
