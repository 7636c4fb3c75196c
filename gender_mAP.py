"""Evaluate a model on a labelled folder: accuracy, AP, mAP, confusion (`--help`); `gender-map`.

The code lives in gender/cli/evaluate.py, so that an installed copy carries it under the package's
own name; this file keeps the checkout's `python gender_mAP.py DATA [WEIGHTS]` form.
"""

from gender.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
