"""Import a script or module of the repository by its file path (tools/,
benchmarks/, a standalone copy of compat.py): the one loader of the tests.
Importable as ``from load_file import load_file`` (tests/ is on sys.path,
see tests/conftest.py)."""
import importlib.util
from types import ModuleType


def load_file(name: str, path: str) -> ModuleType:
    """A fresh module ``name`` executed from ``path`` (not put in
    ``sys.modules``, so every call gives its own globals)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
