"""``mim train i2ckd_mm`` / ``mim test i2ckd_mm`` run our tools (needs the
optional openmim: pip install -e ".[mim]")."""
import glob
import importlib.util
import os.path as osp
import shutil
import sys

import pytest

from conftest import ROOT, STUDENT_CFG, tiny_options

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec('mim') is None,
    reason='openmim is not installed (optional: pip install -e ".[mim]")')


def _mim():
    exe = osp.join(osp.dirname(sys.executable), 'mim')
    return exe if osp.isfile(exe) else shutil.which('mim')


def test_mim_train_and_test(toy_root, tmp_path):
    import subprocess
    if not osp.isdir(osp.join(ROOT, 'i2ckd_mm', '.mim', 'tools')):
        pytest.fail('i2ckd_mm/.mim/tools is missing: re-run '
                    '`pip install -e .` (setup.py links tools/ there)')
    rel_cfg = osp.relpath(STUDENT_CFG, osp.join(ROOT, 'configs'))
    work_dir = str(tmp_path / 'mim')
    # the config is named relative to i2ckd_mm/.mim/configs, run from
    # another folder: mim must find both the config and tools/train.py
    # through the installed package
    train = subprocess.run(
        [_mim(), 'train', 'i2ckd_mm', rel_cfg, '--work-dir', work_dir,
         '--cfg-options'] + tiny_options(toy_root, 2, teacher=False),
        cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=300)
    assert train.returncode == 0, train.stdout[-4000:]
    assert 'Iter(train) [2/2]' in train.stdout
    ckpt = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(ckpt)
    test = subprocess.run(
        [_mim(), 'test', 'i2ckd_mm', rel_cfg, '--checkpoint', ckpt,
         '--work-dir', str(tmp_path / 'mim_test'), '--cfg-options'] +
        tiny_options(toy_root, 2, teacher=False),
        cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=300)
    assert test.returncode == 0, test.stdout[-4000:]
    assert 'mIoU' in test.stdout
    assert glob.glob(str(tmp_path / 'mim_test' / '*' / '*.json'))
