"""i2ckd_mm: I2CKD knowledge distillation for MMSegmentation via MMRazor.

Importing the package (e.g. through ``custom_imports`` in a config) applies
the upstream compatibility shims first, then registers the I2CKD loss,
connector, distiller, algorithm, hooks, datasets and metrics into
MMRazor/MMSeg's registries.
"""
from . import compat

compat.apply()

from . import datasets, engine, evaluation, models  # noqa: E402,F401
from .version import __version__  # noqa: E402,F401

__all__ = [
    '__version__', 'compat', 'datasets', 'engine', 'evaluation', 'models'
]
