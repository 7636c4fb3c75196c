"""The built-in default job: a small synthetic man/woman set, trained, evaluated and predicted.

The images are SYNTHETIC shapes, not people: "man" images hold squares, "woman" images discs, on
noisy backgrounds. They only show that the whole pipeline works end to end on any machine.
"""

from pathlib import Path

import numpy as np

DEMO_DATA = Path("data") / "demo_synthetic"
DEMO_SIZE = 64
PER_CLASS = 240


def make_synthetic_set(root, per_class: int = PER_CLASS, size: int = DEMO_SIZE, seed: int = 0):
    """Write root/{man,woman}/NNNN.png (synthetic shapes) and return root."""
    import cv2

    rng = np.random.default_rng(seed)
    root = Path(root)
    for label, name in enumerate(("man", "woman")):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            # Dark noisy background, bright shape of random colour, size and position.
            image = rng.normal(rng.uniform(20, 90), 20, (size, size, 3)).clip(0, 255)
            image = image.astype(np.uint8)
            color = tuple(int(c) for c in rng.integers(150, 256, 3))
            center = rng.integers(size // 4, 3 * size // 4, 2)
            radius = int(rng.integers(size // 8, size // 4))
            if label == 0:
                cv2.rectangle(
                    image,
                    tuple(int(c) for c in center - radius),
                    tuple(int(c) for c in center + radius),
                    color,
                    -1,
                )
            else:
                cv2.circle(image, tuple(int(c) for c in center), radius, color, -1)
            cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    return root


def run_demo(out) -> int:
    """Train cnn3 on the synthetic set, then run the evaluation report and one prediction."""
    import gender_mAP
    import gender_single_predict
    import gender_train

    print(f"demo: writing a SYNTHETIC image set (squares = 'man', discs = 'woman') to {DEMO_DATA}")
    make_synthetic_set(DEMO_DATA)
    argv = [
        "--data",
        str(DEMO_DATA),
        "--model",
        "cnn3",
        "--image-size",
        str(DEMO_SIZE),
        "--epochs",
        "15",
        "--augment",
        "flip",
        "--out",
        str(out),
    ]
    print("demo: python gender_train.py " + " ".join(argv))
    args = gender_train.build_parser().parse_args(argv)
    run_dir = gender_train.train(args)
    best = run_dir / "best.keras"
    print(f"\ndemo: python gender_mAP.py {run_dir / 'val.txt'} {best}")
    status = gender_mAP.main([str(run_dir / "val.txt"), str(best)])
    image = DEMO_DATA / "woman" / "0000.png"
    # shapes, not faces: the face detector would find none, so classify the whole image
    print(f"\ndemo: python gender_single_predict.py {image} {best} --no-detect")
    return status or gender_single_predict.main([str(image), str(best), "--no-detect"])
