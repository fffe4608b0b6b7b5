"""Makes the shared test modules in this folder (tiny_models.py), the
script-side toy package (tools/toy, imported as ``toy``) and the benchmark
scripts (benchmarks/) importable from every test module, whichever test
files pytest was given."""
import os.path as osp
import sys

import pytest

TESTS = osp.dirname(osp.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
# appended, not prepended: tools/test.py must not shadow the stdlib's test
TOOLS = osp.join(osp.dirname(TESTS), 'tools')
if TOOLS not in sys.path:
    sys.path.append(TOOLS)
# the benchmark scripts and their harness, imported as modules by
# tests/test_benchmarks
BENCHMARKS = osp.join(osp.dirname(TESTS), 'benchmarks')
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)


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


@pytest.fixture(autouse=True, scope="module")
def _fresh_dynamo_cache():
    """Dynamo caches compiled code per code object (``I2CKDLoss.compute``)
    with a recompile limit of 8 entries across all loss instances; each test
    module starts from an empty cache, so that the compilations of other
    modules do not decide whether its tests pass."""
    dynamo = sys.modules.get('torch._dynamo')
    if dynamo is not None:
        dynamo.reset()
    yield
