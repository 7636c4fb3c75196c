"""Two face models and the plain average of their P(woman), on face crops, one run.

    python bench/bench_face_average.py weights/faceresnet-RUN/best.keras \
        data/faces_bfw_aligned/val data/faces_utk_aligned/val data/faces_web_aligned/val

The crops are `dataset.py crop` output (aligned, 2.6 eye distances wide), so both models see the
framing prediction gives them; each model resizes them to its own input. The second model is
the bundled face model unless --other says otherwise. Balanced accuracy and both error rates,
each model at its own stored threshold (0.5 when none), the average at 0.5.
"""

import argparse
import sys

from machine import ROOT

sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from gender.console import quiet

    quiet()  # the commands' environment (gender.cli sets it there): a bench times what users run
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .keras model or run folder")
    parser.add_argument(
        "data", nargs="+", help="man/woman folders of face crops, or ground-truth tables (.txt)"
    )
    parser.add_argument("--other", default=str(ROOT / "gender" / "pretrained" / "face.keras"))
    args = parser.parse_args(argv)

    import numpy as np

    from gender.data import list_folder, read_truth_table
    from gender.images import load_image
    from gender.predictor import load_trained

    models = [load_trained(path) for path in (args.model, args.other)]
    names = [model.name for model, _ in models]
    print(f"{'data':32s} {'model':12s} balanced  error man  error woman")
    for folder in args.data:
        samples = read_truth_table(folder) if folder.endswith(".txt") else list_folder(folder)
        labels = np.asarray(samples.labels)
        answers = []
        for model, info in models:
            images = np.stack([load_image(p, info.image_size) for p in samples.paths])
            answers.append(
                (model.predict(images, batch_size=64, verbose=0)[:, 0], info.decision_threshold)
            )
        answers.append(((answers[0][0] + answers[1][0]) / 2, 0.5))
        for name, (p_woman, threshold) in zip([*names, "average"], answers):
            woman = p_woman >= threshold
            error_man = 100 * woman[labels == 0].mean()
            error_woman = 100 * (~woman[labels == 1]).mean()
            balanced = 100 - (error_man + error_woman) / 2
            print(f"{folder:32s} {name:12s} {balanced:8.2f}  {error_man:9.2f}  {error_woman:11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
