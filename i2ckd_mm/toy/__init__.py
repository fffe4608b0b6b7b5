"""Toy CPU datasets, their configs and helpers to run the tools on them.

Used by ``tools/make_toy_data.py``, ``tools/demo.py``, the accuracy study
(``benchmarks/accuracy_study.py``) and the tools tests.
"""
from .configs import TOY_CONFIG_NAMES, TOY_DATASETS, toy_configs
from .runs import (data_options, last_metrics, run_tool, schedule_options,
                   split_options, tools_dir)
from .shapes import make_toy_shapes
from .streets import make_toy_streets

__all__ = [
    'TOY_CONFIG_NAMES', 'TOY_DATASETS', 'toy_configs', 'data_options', 'last_metrics',
    'run_tool', 'schedule_options', 'split_options', 'tools_dir',
    'make_toy_shapes', 'make_toy_streets'
]
