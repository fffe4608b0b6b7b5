"""Makes the shared test helpers in this folder (tiny_models.py) importable
from every test module, whichever test files pytest was given."""
import os.path as osp
import sys

TESTS = osp.dirname(osp.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
