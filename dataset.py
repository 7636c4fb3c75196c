"""Prepare data: split, crop faces, write ground truth as txt/npy, check, pack (`--help`).

The code lives in gender/cli/dataset.py, so that an installed copy (`gender-dataset`) carries it
under the package's own name; this file keeps the checkout's `python dataset.py ...` form.
"""

from gender.cli.dataset import main

if __name__ == "__main__":
    raise SystemExit(main())
