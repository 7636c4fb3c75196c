"""The demo's data: a small synthetic man/woman set (`gender_train.py demo` trains on it).

The images are SYNTHETIC shapes, not people: "man" images hold squares, "woman" images discs, on
noisy backgrounds. They only show that the whole pipeline works end to end on any machine.
"""

from pathlib import Path

import numpy as np

DEMO_DATA = Path("data") / "demo_synthetic"
DEMO_SIZE = 64
PER_CLASS = 240


def make_synthetic_set(
    root: str | Path, per_class: int = PER_CLASS, size: int = DEMO_SIZE, seed: int = 0
) -> Path:
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
