"""The model registry: cnn3/5/7, vgg16, mobilenetv2 and the ResNets, by short name.

The code lives in gender/models/, so that an installed copy carries it under the package's own
name; this folder keeps `from models import create_model, list_models` working in a checkout.
"""

from gender.models import *  # noqa: F403
from gender.models import __all__  # noqa: F401
