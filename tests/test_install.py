"""What setup.py asks for: ranges that leave a user's own OpenMMLab stack in
place, no mmcv by name (a `cpu` extra brings mmcv-lite), a constraints file
that pins CI inside those ranges, README and .ci/run installing the same, a
wheel that holds the library only; and without any mmcv, one clear
ImportError."""
import ast
import os.path as osp
import re
import shutil
import subprocess
import sys

from packaging.requirements import Requirement

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONSTRAINTS = osp.join(ROOT, 'requirements', 'constraints.txt')
STACK = ('torch', 'mmengine', 'mmsegmentation', 'mmrazor')


def setup_kwargs():
    """install_requires and extras_require, read from setup.py's source
    (running it would rewrite the .mim links)."""
    tree = ast.parse(open(osp.join(ROOT, 'setup.py')).read())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, 'id', None) == 'setup')
    kw = {k.arg: k.value for k in call.keywords}
    return (ast.literal_eval(kw['install_requires']),
            ast.literal_eval(kw['extras_require']))


def requirements(strings):
    return {Requirement(s).name.lower(): Requirement(s) for s in strings}


def constraints():
    out = {}
    for line in open(CONSTRAINTS):
        line = line.split('#', 1)[0].strip()
        if line:
            req = Requirement(line)
            out[req.name.lower()] = req
    return out


def test_no_mmcv_by_name_and_ranges_for_the_stack():
    install, extras = setup_kwargs()
    reqs = requirements(install)
    assert not [n for n in reqs if n.startswith('mmcv')], install
    for name in STACK:
        spec = reqs[name].specifier
        assert any(s.operator in ('>=', '>') for s in spec), (name, spec)
        if name != 'torch':  # OpenMMLab minor releases break the shims
            assert any(s.operator in ('<', '<=') for s in spec), (name, spec)
        assert not any(s.operator == '==' for s in spec), (name, spec)
    # an installed mmengine 0.10.5 (a user's existing stack) and the verified
    # lower bounds are inside the ranges
    assert reqs['mmengine'].specifier.contains('0.10.5')
    assert reqs['mmengine'].specifier.contains('0.10.3')
    # 0.10.2 and older re-train the resumed iterations' batches
    assert not reqs['mmengine'].specifier.contains('0.10.2')
    assert reqs['mmsegmentation'].specifier.contains('1.2.1')
    assert not reqs['mmsegmentation'].specifier.contains('1.2.0')
    assert reqs['torch'].specifier.contains('2.6.0')
    # pkg_resources (mmseg:: configs) is gone in setuptools 81
    assert not reqs['setuptools'].specifier.contains('81.0.0')
    cpu = requirements(extras['cpu'])
    assert set(cpu) == {'torch', 'mmcv-lite'}
    assert cpu['mmcv-lite'].specifier.contains('2.1.0')
    assert not cpu['mmcv-lite'].specifier.contains('2.2.0')


def test_constraints_pin_ci_inside_the_ranges():
    install, extras = setup_kwargs()
    pins = constraints()
    for req in list(requirements(install).values()) + \
            list(requirements(extras['cpu'] + extras['tests']).values()):
        pin = pins.get(req.name.lower())
        assert pin is not None, f'{req.name} is not pinned in constraints'
        (spec, ) = pin.specifier
        assert spec.operator == '==', pin
        assert req.specifier.contains(spec.version), (req, pin)


def test_readme_and_ci_install_the_same():
    readme = open(osp.join(ROOT, 'README.md')).read()
    ci = open(osp.join(ROOT, '.ci', 'run')).read()
    install = re.search(r'## Install.*?```bash\n(.*?)\n```', readme,
                        re.S).group(1).strip()
    assert install == ('pip install -c requirements/constraints.txt -e '
                       '".[tests,cpu]"')
    ci_installs = [line.strip() for line in ci.splitlines()
                   if line.strip().startswith('pip install')]
    assert ci_installs == [install]
    test = re.search(r'## Test.*?```bash\n(.*?)\n```', readme,
                     re.S).group(1).strip()
    assert test in ci


def test_without_mmcv_one_clear_error():
    proc = subprocess.run(
        [sys.executable, '-c',
         "import sys; sys.modules['mmcv'] = None; import i2ckd_mm"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    err = proc.stderr
    last = err.strip().splitlines()[-1]
    assert last.startswith('ImportError: i2ckd_mm needs mmcv'), err
    assert 'mmcv-lite' in last and 'MMCV_WITH_OPS=1' in last, last
    # one message: no chained "During handling of the above exception"
    assert err.count('Error:') == 1, err


def test_a_broken_mmcv_is_not_reported_as_missing():
    """mmcv present but one of its own imports missing (here mmengine):
    that error, not ours, which would send the user to install mmcv."""
    proc = subprocess.run(
        [sys.executable, '-c',
         "import sys; sys.modules['mmengine'] = None; import i2ckd_mm"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "ModuleNotFoundError: No module named 'mmengine" in \
        proc.stderr, proc.stderr[-2000:]
    assert 'i2ckd_mm needs mmcv' not in proc.stderr, proc.stderr


def test_the_wheel_holds_the_library_and_no_toy_code(tmp_path):
    """A regular wheel holds the importable package and MIM's copies of
    configs/ and the user tools, nothing of tools/toy (the toy data, ToyNet
    and subprocess-run code stay in the checkout), and no shipped tool
    imports it; no Python file in the package looks for the checkout's
    folders."""
    import zipfile
    src = tmp_path / 'src'
    for name in ('i2ckd_mm', 'configs', 'tools'):
        shutil.copytree(osp.join(ROOT, name), src / name,
                        ignore=shutil.ignore_patterns('.mim', '__pycache__',
                                                      '*.egg-info'))
    for name in ('setup.py', 'README.md', 'model-index.yml'):
        shutil.copy(osp.join(ROOT, name), src / name)
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
         '--no-build-isolation', '--no-index', '-w', str(tmp_path / 'dist'),
         str(src)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    (wheel, ) = (tmp_path / 'dist').glob('i2ckd_mm-*.whl')
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        sources = {n: z.read(n).decode() for n in names if n.endswith('.py')}
    tops = {n.split('/')[0] for n in names}
    assert tops == {'i2ckd_mm', wheel.name.split('-py')[0] + '.dist-info'}, \
        tops
    # the library, the metric a config imports, MIM's train/test and configs
    for name in ('i2ckd_mm/models/losses/i2ckd_loss.py',
                 'i2ckd_mm/evaluation/metrics/class_iou_metric.py',
                 'i2ckd_mm/.mim/tools/train.py', 'i2ckd_mm/.mim/tools/test.py',
                 'i2ckd_mm/.mim/tools/dist_train.sh',
                 'i2ckd_mm/.mim/configs/_base_/i2ckd/i2ckd_bottleneck.py',
                 'i2ckd_mm/.mim/model-index.yml'):
        assert name in names, name
    toy = [n for n in names if '/toy/' in n and not
           n.startswith('i2ckd_mm/.mim/configs/toy/')]
    assert toy == [], toy
    for name in ('demo.py', 'make_toy_data.py', 'pretrain_toy_backbone.py'):
        assert 'i2ckd_mm/.mim/tools/' + name not in names
    tools = [n for n in sources if n.startswith('i2ckd_mm/.mim/tools/')]
    assert len(tools) >= 4, tools
    for name in tools:
        for node in ast.walk(ast.parse(sources[name])):
            mods = ([a.name for a in node.names] if isinstance(
                node, ast.Import) else [node.module or ''] if isinstance(
                    node, ast.ImportFrom) else [])
            assert not [m for m in mods if m.split('.')[0] == 'toy'], name
    # the package never finds tools/, configs/ or benchmarks/ by path
    lib = {n: s for n, s in sources.items() if not n.startswith(
        'i2ckd_mm/.mim/')}
    assert len(lib) > 20, sorted(lib)
    for name, text in lib.items():
        for folder in ('tools', 'configs', 'benchmarks', '.mim'):
            for quote in '\'"':
                assert quote + folder + quote not in text, (name, folder)
