"""Toy CPU datasets, their configs, and running the tools on them.

Script-side code, not part of the installed ``i2ckd_mm`` package: it writes
the ToyShapes / ToyStreets data, pretrains the ToyNet backbone and runs the
command-line tools of this checkout in subprocesses. Used by
``tools/make_toy_data.py``, ``tools/demo.py``,
``tools/pretrain_toy_backbone.py``, the benchmarks and the tests. A script
in ``tools/`` imports it as ``toy`` (Python puts the script's folder first on
``sys.path``); the benchmarks and the tests append ``tools/`` to
``sys.path``.
"""
from .configs import TOY_CONFIG_NAMES, TOY_DATASETS, toy_configs
from .runs import (TOOLS, data_options, last_metrics, run_tool,
                   schedule_options, split_options)
from .shapes import make_toy_shapes
from .streets import make_toy_streets

__all__ = [
    'TOY_CONFIG_NAMES', 'TOY_DATASETS', 'toy_configs', 'TOOLS',
    'data_options', 'last_metrics', 'run_tool', 'schedule_options',
    'split_options', 'make_toy_shapes', 'make_toy_streets'
]
