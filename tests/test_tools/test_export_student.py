"""Student export: plain MMSeg loads it without i2ckd_mm and gives exactly
the distilled student's logits; non-distillation checkpoints are refused."""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

from tool_helpers import I2CKD_CFG, STUDENT_CFG, TOOLS, run_tool

# Runs in a fresh interpreter that never imports i2ckd_mm. Under mmcv-lite
# (no compiled ops) MMSeg itself cannot be imported, so the script registers
# a minimal mmcv.ops the way any mmcv-lite user of plain MMSeg must; with
# full mmcv it does nothing.
PLAIN_MMSEG = r'''
import importlib.util, os.path as osp, sys, types
if importlib.util.find_spec('mmcv._ext') is None:
    import mmcv
    ops = types.ModuleType('mmcv.ops')
    ops.__path__ = [osp.join(osp.dirname(mmcv.__file__), 'ops')]
    sys.modules['mmcv.ops'] = mmcv.ops = ops
    from mmcv.ops.point_sample import point_sample
    ops.point_sample = point_sample
    def __getattr__(name):
        if name.startswith('__'):
            raise AttributeError(name)
        return type(name, (), {})
    ops.__getattr__ = __getattr__
import numpy as np, torch
from mmseg.apis import inference_model, init_model
cfg, ckpt, img, out = sys.argv[1:5]
state = torch.load(ckpt, map_location='cpu', weights_only=True)
model = init_model(cfg, ckpt, device='cpu')
result = inference_model(model, img)
np.save(out, result.seg_logits.data.numpy())
assert not [m for m in sys.modules if m.startswith('i2ckd_mm')]
print('CLASSES', list(model.dataset_meta['classes']))
print('KEYS', len(state['state_dict']), 'META', sorted(state['meta']))
'''


@pytest.fixture(scope='module')
def exported(distill_run, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('export'))
    ckpt = osp.join(distill_run['work_dir'], 'iter_6.pth')
    proc = run_tool([
        osp.join(TOOLS, 'export_student.py'), I2CKD_CFG, ckpt, out,
        '--name', 'toy_student'
    ])
    assert 'exported student' in proc.stdout
    return dict(
        ckpt=ckpt,
        out_ckpt=osp.join(out, 'toy_student.pth'),
        out_cfg=osp.join(out, 'toy_student.py'))


def _student_logits(distill_cfg, ckpt, img_path, options):
    """The distilled student's logits, through the distillation config and
    checkpoint (with i2ckd_mm)."""
    import i2ckd_mm  # noqa: F401
    from mmcv.transforms import Compose
    from mmengine.config import Config, DictAction  # noqa: F401
    from mmengine.registry import init_default_scope
    from mmrazor.registry import MODELS
    cfg = Config.fromfile(distill_cfg)
    cfg.merge_from_dict({
        k: (None if v == 'None' else v)
        for k, v in (o.split('=', 1) for o in options)
        if k.startswith('model.')
    })
    init_default_scope('mmseg')
    algo = MODELS.build(cfg.model)
    from i2ckd_mm.checkpoint import load_checkpoint_file
    state = load_checkpoint_file(ckpt, map_location='cpu')  # weights_only
    algo.load_state_dict(state['state_dict'], strict=True)
    algo.eval()
    pipeline = Compose(
        [t for t in cfg.test_pipeline if t['type'] != 'LoadAnnotations'])
    data = pipeline(dict(img_path=img_path))
    with torch.no_grad():
        result = algo.student.test_step(
            dict(inputs=[data['inputs']], data_samples=[data['data_samples']]))
    return result[0].seg_logits.data.numpy()


def test_plain_mmseg_gives_the_students_logits(exported, distill_run,
                                                toy_root, tmp_path):
    img = osp.join(toy_root, 'img_dir', 'val', '00000.png')
    out = str(tmp_path / 'logits.npy')
    proc = subprocess.run(
        [
            sys.executable, '-c', PLAIN_MMSEG, exported['out_cfg'],
            exported['out_ckpt'], img, out
        ],
        cwd=str(tmp_path),  # not the repo root: i2ckd_mm is not importable
        stdout=subprocess.PIPE,                # from the working dir
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert ("CLASSES ['background', 'disk', 'ring', 'square', 'triangle', "
            "'cross']") in proc.stdout
    plain = np.load(out)
    ref = _student_logits(I2CKD_CFG, exported['ckpt'], img,
                          distill_run['options'])
    assert plain.shape == ref.shape == (6, 64, 64)
    np.testing.assert_allclose(plain, ref, rtol=0, atol=1e-5)
    # a different model would not match: the logits are not degenerate
    assert plain.std() > 1e-3


def test_exported_files_are_plain(exported):
    ckpt = torch.load(exported['out_ckpt'], map_location='cpu',
                      weights_only=True)
    state = ckpt['state_dict']
    assert state and not any(
        k.startswith(('architecture.', 'teacher.', 'distiller.'))
        for k in state)
    from i2ckd_mm.checkpoint import load_checkpoint_file
    full = load_checkpoint_file(exported['ckpt'],
                                map_location='cpu')['state_dict']
    student = {k[len('architecture.'):]: v for k, v in full.items()
               if k.startswith('architecture.')}
    assert state.keys() == student.keys()
    for k in state:
        assert torch.equal(state[k], student[k]), k
    assert ckpt['meta']['dataset_meta']['palette'][1] == [230, 25, 75]
    assert ckpt['meta']['iter'] == 6
    text = open(exported['out_cfg']).read()
    assert 'i2ckd' not in text.lower() and 'mmrazor' not in text
    assert "default_scope = 'mmseg'" in text


def test_export_refuses_a_plain_checkpoint(tmp_path):
    import i2ckd_mm  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from i2ckd_mm.apis import export_student
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(STUDENT_CFG).model)
    plain = str(tmp_path / 'plain.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), plain)
    with pytest.raises(ValueError) as err:
        export_student(plain, I2CKD_CFG, str(tmp_path / 'out'))
    msg = str(err.value)
    assert 'not a distillation checkpoint' in msg
    assert 'backbone.*' in msg and 'decode_head.*' in msg
    assert not osp.exists(str(tmp_path / 'out'))
    with pytest.raises(KeyError, match='not a distillation config'):
        export_student(plain, STUDENT_CFG, str(tmp_path / 'out'))
    with pytest.raises(FileNotFoundError, match='no_such.pth'):
        export_student(str(tmp_path / 'no_such.pth'), I2CKD_CFG,
                       str(tmp_path / 'out'))


def test_export_refuses_a_mismatched_student(distill_run, tmp_path):
    import i2ckd_mm  # noqa: F401
    from mmengine.config import Config

    from i2ckd_mm.apis import export_student
    cfg = Config.fromfile(I2CKD_CFG)
    cfg.model.architecture.decode_head.channels = 48  # not what was trained
    with pytest.raises(ValueError, match='do not fit'):
        export_student(
            osp.join(distill_run['work_dir'], 'iter_6.pth'), cfg,
            str(tmp_path / 'out'))



def test_student_config_from_an_mmrazor_cfg_path():
    """architecture=dict(cfg_path='mmseg::...') resolves through MMEngine's
    public mmengine.hub.get_config, as MMRazor itself resolves it."""
    from mmengine.config import Config

    from i2ckd_mm.apis import student_config
    cfg = Config(dict(
        model=dict(
            type='I2CKDDistill',
            architecture=dict(
                cfg_path='mmseg::deeplabv3/'
                'deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py',
                pretrained=False)),
        test_pipeline=[dict(type='LoadImageFromFile')]))
    plain = student_config(cfg)
    assert plain.model.type == 'EncoderDecoder'
    assert plain.model.backbone.depth == 18
    assert plain.model.backbone.init_cfg is None
    assert plain.model.data_preprocessor.type == 'SegDataPreProcessor'
    with pytest.raises(FileNotFoundError):
        cfg.model.architecture.cfg_path = 'mmseg::no/such_config.py'
        student_config(cfg)
