"""Install i2ckd_mm and a working OpenMMLab stack in one command.

    pip install -e ".[tests]"

Pins (each needed on current torch; see README "Why these pins"):
  mmcv-lite==2.1.0      mmseg 1.2.2 needs mmcv<2.2.0, mmrazor 1.0.0 needs
                        mmcv<=2.1.0; the lite wheel installs everywhere
                        (full mmcv: see README, "full mmcv").
  mmengine==0.10.7      the MMEngine these shims were verified against.
  mmsegmentation==1.2.2, mmrazor==1.0.0   last releases; compat.py patches them.
  setuptools>=77.0.3,<81   mmengine needs pkg_resources (gone in 81) for
                        `mmseg::` configs; torch 2.13 needs >=77.0.3.
  ftfy, regex, joblib   imported but not declared by mmseg / mmrazor.
"""
import os
import os.path as osp
import shutil
import sys
import warnings

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def readme():
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


def version():
    scope = {}
    with open(osp.join(HERE, 'i2ckd_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def add_mim_extension():
    """Expose configs/, tools/ and model-index.yml as i2ckd_mm/.mim/ so that
    ``mim train i2ckd_mm CONFIG`` and ``i2ckd_mm::`` config paths work."""
    if 'develop' in sys.argv or any('editable' in a for a in sys.argv):
        mode = 'symlink'
    elif any(a in sys.argv for a in ('sdist', 'bdist_wheel', 'install')):
        mode = 'copy'
    else:
        mode = 'symlink'  # pip's PEP 660 editable builds run other commands
    mim_path = osp.join(HERE, 'i2ckd_mm', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src = osp.join(HERE, name)
        tar = osp.join(mim_path, name)
        if not osp.exists(src):
            continue
        if osp.lexists(tar):
            if osp.islink(tar) or osp.isfile(tar):
                os.remove(tar)
            else:
                shutil.rmtree(tar)
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, mim_path), tar)
                continue
            except OSError:
                warnings.warn(f'cannot symlink {src}; copying it instead')
        if osp.isfile(src):
            shutil.copyfile(src, tar)
        else:
            shutil.copytree(src, tar)


add_mim_extension()

setup(
    name='i2ckd_mm',
    version=version(),
    description='I2CKD (Intra- and Inter-Class Knowledge Distillation) for '
    'semantic segmentation, as an MMRazor/MMSegmentation plugin',
    long_description=readme(),
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools',
                                    'benchmarks')),
    include_package_data=True,
    package_data={'i2ckd_mm': ['.mim/**/*', '.mim/*']},
    python_requires='>=3.8',
    install_requires=[
        'torch>=2.0',
        'setuptools>=77.0.3,<81',
        'mmengine==0.10.7',
        'mmcv-lite==2.1.0',
        'mmsegmentation==1.2.2',
        'mmrazor==1.0.0',
        'ftfy',
        'regex',
        'joblib',
        'matplotlib',
    ],
    extras_require={
        'tests': ['pytest', 'hypothesis'],
        # the CPU build verified here; GPU users install their CUDA torch
        # first and leave this extra out
        'cpu': ['torch==2.13.0'],
        'mim': ['openmim==0.3.9'],
    },
    zip_safe=False,
)
