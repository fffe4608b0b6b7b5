"""``mim train i2ckd_mm`` / ``mim test i2ckd_mm`` run our tools (needs the
optional openmim: pip install -e ".[mim]")."""
import glob
import importlib.util
import os
import os.path as osp
import shutil
import sys

import pytest

from tool_helpers import ROOT, STUDENT_CFG, tiny_options

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec('mim') is None,
    reason='openmim is not installed (optional: pip install -e ".[mim]")')


def _mim():
    exe = osp.join(osp.dirname(sys.executable), 'mim')
    return exe if osp.isfile(exe) else shutil.which('mim')


def _regular_install(tmp_path):
    """A non-editable install of a copy of the repo into a --target folder.

    mim finds a package's tools/configs at <dist location>/<package>/.mim;
    a PEP 660 editable install (pip install -e .) puts the dist-info in
    site-packages with no package folder beside it, so mim (and
    ``i2ckd_mm::`` config paths) need a regular install - which is what a
    mim user has. Copying first keeps setup.py's copy mode out of the
    working tree (it rewrites i2ckd_mm/.mim).
    """
    import subprocess
    src = tmp_path / 'src'
    for name in ('i2ckd_mm', 'configs', 'tools'):
        shutil.copytree(osp.join(ROOT, name), src / name, symlinks=False,
                        ignore=shutil.ignore_patterns('.mim', '__pycache__',
                                                      '*.egg-info'))
    for name in ('setup.py', 'README.md', 'model-index.yml'):
        if osp.exists(osp.join(ROOT, name)):
            shutil.copy(osp.join(ROOT, name), src / name)
    target = tmp_path / 'site'
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
         '--no-build-isolation', '--no-index', '--target', str(target),
         str(src)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert osp.isfile(target / 'i2ckd_mm' / '.mim' / 'tools' / 'train.py')
    return str(target)


def test_mim_train_and_test(toy_root, tmp_path):
    import subprocess
    site = _regular_install(tmp_path)
    env = dict(os.environ, PYTHONPATH=site, OMP_NUM_THREADS='1')
    # named by basename only: mim must find the config and tools/train.py
    # in the installed package
    cfg = osp.basename(STUDENT_CFG)
    work_dir = str(tmp_path / 'mim')
    run = tmp_path / 'run'
    run.mkdir()
    train = subprocess.run(
        [_mim(), 'train', 'i2ckd_mm', cfg, '--work-dir', work_dir,
         '--cfg-options'] + tiny_options(toy_root, 2, teacher=False),
        cwd=str(run), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300)
    assert train.returncode == 0, train.stdout[-4000:]
    assert osp.join(site, 'i2ckd_mm') in train.stdout  # its config was used
    assert 'Iter(train) [2/2]' in train.stdout
    ckpt = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(ckpt)
    test = subprocess.run(
        [_mim(), 'test', 'i2ckd_mm', cfg, '--checkpoint', ckpt,
         '--work-dir', str(tmp_path / 'mim_test'), '--cfg-options'] +
        tiny_options(toy_root, 2, teacher=False),
        cwd=str(run), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300)
    assert test.returncode == 0, test.stdout[-4000:]
    assert 'mIoU' in test.stdout
    assert glob.glob(str(tmp_path / 'mim_test' / '*' / '*.json'))
