"""Train a man/woman classifier; resume, export, bundle, adapt (`python gender_train.py --help`).

The code lives in gender/cli/train.py, so that an installed copy (`gender-train`) carries it under
the package's own name; this file keeps the checkout's `python gender_train.py ...` form.
"""

from gender.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
