"""A quiet start: importing i2ckd_mm with MMSeg and MMRazor, and resolving an
``mmseg::`` config, prints exactly one line on stderr under mmcv-lite (what
mmcv-lite means), and nothing under full mmcv. The upstream warnings it
replaces are shown to exist without i2ckd_mm, so the test fails if the
filters stop working or start hiding something else."""
import importlib.util
import os.path as osp
import subprocess
import sys
import textwrap

import pytest

from i2ckd_mm import compat
from toy import toy_configs

FULL_MMCV = importlib.util.find_spec('mmcv._ext') is not None
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# a config with an mmseg:: base: mmengine imports and reloads pkg_resources
MMSEG_CFG = ('from mmengine.config import Config\n'
             f"Config.fromfile({toy_configs()['student']!r})\n")


def stderr_of(code):
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def expected_lines():
    return [] if FULL_MMCV else [compat.MMCV_LITE_NOTICE]


def test_import_and_mmseg_config_print_one_line():
    """... once per process: applying the shims again adds nothing."""
    err = stderr_of('import i2ckd_mm; import mmseg.models; '
                    'import mmrazor.models\n' + MMSEG_CFG +
                    'i2ckd_mm.compat.apply()\n')
    assert err.splitlines() == expected_lines(), err


@pytest.mark.skipif(FULL_MMCV, reason='full mmcv: no mmcv-lite warning')
def test_without_i2ckd_mm_upstream_warns():
    """What the filters replace: mmcv-lite's MultiScaleDeformableAttention
    warning and setuptools' pkg_resources deprecation (the mmcv.ops and
    mmrazor shims applied, the quiet start not)."""
    err = stderr_of(f"""
import importlib.util
spec = importlib.util.spec_from_file_location('c', {compat.__file__!r})
c = importlib.util.module_from_spec(spec)
spec.loader.exec_module(c)
c.patch_mmcv_ops()
c.patch_mmrazor_quantization()
import mmseg.models, mmrazor.models
""" + MMSEG_CFG)
    assert 'Fail to import ``MultiScaleDeformableAttention``' in err, err
    import setuptools
    from packaging.version import Version
    if Version(setuptools.__version__) >= Version('67.5'):
        # older setuptools does not deprecate pkg_resources
        assert 'pkg_resources is deprecated' in err, err


def test_other_warnings_still_show():
    """Only those two messages are filtered: another UserWarning from the
    same modules, or a pkg_resources warning with other text, still shows.
    (compat.py alone: importing the package would add ~10 s.)"""
    err = stderr_of(f"""
import importlib.util, warnings
spec = importlib.util.spec_from_file_location('c', {compat.__file__!r})
c = importlib.util.module_from_spec(spec)
spec.loader.exec_module(c)
c.quiet_mmcv_lite_start()
for message, module in [
        ('Fail to import ``MultiScaleDeformableAttention``',
         'mmcv.cnn.bricks.transformer'),
        ('some other mmcv warning', 'mmcv.cnn.bricks.transformer'),
        ('pkg_resources is deprecated as an API', 'importlib'),
        ('pkg_resources said something else',
         'mmengine.utils.package_utils'),
        ('pkg_resources is deprecated as an API', 'somewhere.else')]:
    warnings.warn_explicit(message, UserWarning, 'x.py', 1, module=module)
""")
    assert 'some other mmcv warning' in err, err
    assert 'pkg_resources said something else' in err, err
    assert err.count('x.py:1: UserWarning: pkg_resources is deprecated') \
        == 1, err  # the one from another module
    assert 'Fail to import' not in err or FULL_MMCV, err
    assert err.count('i2ckd_mm: using mmcv-lite') == len(expected_lines())
