"""Predict man or woman for the faces in a photo, or for crops (`--help`); `gender-predict`.

The code lives in gender/cli/predict.py, so that an installed copy carries it under the package's
own name; this file keeps the checkout's `python gender_single_predict.py IMAGE [WEIGHTS]` form.
"""

from gender.cli.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
