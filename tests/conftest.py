"""Makes the shared test helpers in this folder (tiny_models.py) importable
from every test module, whichever test files pytest was given."""
import os.path as osp
import sys

import pytest

TESTS = osp.dirname(osp.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)


@pytest.fixture(autouse=True, scope="module")
def _no_default_scope_leak():
    """A Runner built in one test sets MMEngine's current default scope
    (e.g. 'mmseg') for the rest of the process; undo it so test order does
    not change which registry later tests look names up in."""
    from mmengine.registry import DefaultScope
    before = set(DefaultScope._instance_dict)
    yield
    for name in set(DefaultScope._instance_dict) - before:
        DefaultScope._instance_dict.pop(name)
