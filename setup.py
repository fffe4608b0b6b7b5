"""Install i2ckd_mm on an OpenMMLab stack: yours, or a verified CPU one.

    pip install -e ".[tests,cpu]"                                  # CPU stack
    pip install -c requirements/constraints.txt -e ".[tests,cpu]"  # as CI

Requirements are ranges, each bound verified by installing that version in a
fresh venv and running the targeted tests (docs/install.md, "Why these
ranges"); the exact versions CI runs are in requirements/constraints.txt.

  torch>=2.6            i2ckd_mm.checkpoint loads MMEngine checkpoints with
                        weights_only=True plus a scoped allowlist
                        (torch.serialization.safe_globals with named
                        entries); 2.6 is the oldest verified, and the first
                        whose torch.load defaults to weights_only=True.
  mmengine>=0.10.3,<0.11   0.10.3 is the first whose IterBasedTrainLoop
                        skips the batches already trained on resume (older:
                        resume is not bit-exact, tests/test_runner).
  mmsegmentation>=1.2.1,<1.3   1.2.0's wheel lacks the BPE vocabulary file
                        that `import mmseg.models` reads (FileNotFoundError).
  mmrazor>=1.0.0,<1.1   compat.py patches 1.0.0's imports; a new minor
                        release needs a check.
  setuptools<81         mmengine needs pkg_resources (gone in 81) for
                        `mmseg::` configs. The lower bound is torch's own
                        (torch 2.13 declares setuptools>=77.0.3).
  ftfy, regex, joblib   imported but not declared by mmseg / mmrazor.
  no mmcv               full mmcv or mmcv-lite both satisfy mmseg/mmrazor;
                        never forced, so a compiled mmcv stays. Extra `cpu`
                        brings mmcv-lite 2.1.0 and the CPU torch verified here.
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


#: Parts of tools/ a regular install leaves out of i2ckd_mm/.mim: the toy
#: data, ToyNet and subprocess-run code (tools/toy) and the scripts that
#: import it, which run from a checkout (tests/test_install.py checks the
#: wheel).
CHECKOUT_ONLY_TOOLS = ('toy', 'demo.py', 'make_toy_data.py',
                       'pretrain_toy_backbone.py', '__pycache__', '*.pyc')


def add_mim_extension():
    """Expose configs/, tools/ and model-index.yml as i2ckd_mm/.mim/ so that
    ``mim train i2ckd_mm CONFIG`` and ``i2ckd_mm::`` config paths work
    (an editable install links the checkout's folders; a regular one copies
    them, tools/ without CHECKOUT_ONLY_TOOLS)."""
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
            ignore = CHECKOUT_ONLY_TOOLS if name == 'tools' else (
                '__pycache__', '*.pyc')
            shutil.copytree(src, tar, ignore=shutil.ignore_patterns(*ignore))


add_mim_extension()

setup(
    name='i2ckd_mm',
    version=version(),
    description='I2CKD (Intra- and Inter-Class Knowledge Distillation) for '
    'semantic segmentation, as an MMRazor/MMSegmentation plugin',
    long_description=readme(),
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    # the library only: tools/ (with tools/toy), benchmarks/, tests/ and
    # configs/ stay in the checkout (configs/ and tools/ also reach .mim)
    packages=find_packages(include=('i2ckd_mm', 'i2ckd_mm.*')),
    include_package_data=True,
    package_data={'i2ckd_mm': ['.mim/**/*', '.mim/*']},
    python_requires='>=3.9',  # torch>=2.6 needs 3.9
    install_requires=[
        'torch>=2.6',
        'setuptools<81',
        'mmengine>=0.10.3,<0.11',
        'mmsegmentation>=1.2.1,<1.3',
        'mmrazor>=1.0.0,<1.1',
        'ftfy',
        'regex',
        'joblib',
        'matplotlib',
    ],
    extras_require={
        'tests': ['pytest', 'hypothesis'],
        # The CPU stack verified here: the CPU torch build and mmcv-lite (no
        # compiled ops; mmseg 1.2 needs mmcv<2.2.0, mmrazor 1.0 mmcv<=2.1.0).
        # GPU users install their CUDA torch and full mmcv (or mmcv-lite)
        # first and leave this extra out: mmcv is never required by name, so
        # an installed full mmcv is kept.
        'cpu': ['torch==2.13.0', 'mmcv-lite>=2.0.1,<=2.1.0'],
        'mim': ['openmim==0.3.9'],
    },
    zip_safe=False,
)
