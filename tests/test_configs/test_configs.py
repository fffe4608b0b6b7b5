"""Every config in configs/ loads, builds and runs one tiny step on CPU.

No download happens: student ``pretrained`` is set to None and the
distillation configs are built with ``teacher_ckpt=None`` (the teacher keeps
its random init); that the documented local-checkpoint override reaches the
teacher is tested once, on the CamVid config where it is mandatory (an R101
state dict is ~350 MB, too slow to write for every config). One 32x32
forward per distillation config then checks that the features recorded on
the real models have exactly the connector's in/out channels, and the
configs of the other distillation methods (KD, DIST, MGD, CWD, alone and
with I2CKD) train a step in which every distillation loss reaches the student.
"""
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

import i2ckd_mm  # noqa: F401  (shims + registration before mmseg/mmrazor)
import mmseg
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmrazor.registry import MODELS as RAZOR_MODELS
from mmseg.registry import DATASETS
from mmseg.registry import MODELS as SEG_MODELS
from mmseg.structures import SegDataSample

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / 'configs'
I2CKD_DIR = CONFIG_DIR / 'i2ckd'
MMSEG_CONFIGS = Path(mmseg.__file__).parent / '.mim' / 'configs'

# Runnable configs: everything except _base_ pieces (in any folder).
CONFIGS = sorted(
    p for p in CONFIG_DIR.rglob('*.py')
    if '_base_' not in p.relative_to(CONFIG_DIR).parts)
# The real-data distillation configs of the I2CKD folder: I2CKD (i2ckd*),
# and the other methods alone (kd_*, dist_*, mgd_*, cwd_*) that it is
# compared with.
I2CKD_CONFIGS = sorted(I2CKD_DIR.glob('*.py'))
#: The other distillation methods: their config prefix alone -> with I2CKD.
#: A method alone is its I2CKD combination without the I2CKD term.
METHODS = {'kd_logits': 'i2ckd-kd_bottleneck-logits',
           'dist_logits': 'i2ckd-dist_bottleneck-logits',
           'mgd_layer4': 'i2ckd-mgd_bottleneck-layer4',
           'cwd_logits': 'i2ckd-cwd_bottleneck-logits'}
METHOD_CONFIGS = sorted(
    p for p in CONFIGS
    if p.name.startswith(tuple(METHODS) +
                         ('i2ckd-kd_', 'i2ckd-dist_', 'i2ckd-mgd_')))
ALONE_CONFIGS = sorted(p for p in CONFIGS if p.name.startswith(tuple(METHODS)))


def _ids(paths):
    return [str(p.relative_to(CONFIG_DIR)) for p in paths]


def _load(path: Path) -> Config:
    # Freshly parsed each time: MMSeg's EncoderDecoder writes into the model
    # config it is built from, so a config object is built only once.
    return Config.fromfile(str(path))


def _train_dataset(cfg):
    ds = cfg.train_dataloader.dataset
    if ds.type == 'ConcatDataset':  # VOC aug = train + aug sets
        ds = ds.datasets[0]
    return ds


def _crop_size(cfg):
    crops = [
        t.crop_size for t in _train_dataset(cfg).pipeline
        if t.type == 'RandomCrop'
    ]
    return tuple(crops[0]) if crops else None


def _dataset_classes(cfg) -> int:
    ds_cls = DATASETS.get(_train_dataset(cfg).type)
    assert ds_cls is not None, f'dataset {_train_dataset(cfg).type} unknown'
    return len(ds_cls.METAINFO['classes'])


def _pearson(a, b, dims):
    """Pearson correlation of a and b along ``dims`` (eps 1e-8 as DIST)."""
    a = a - a.mean(dim=dims, keepdim=True)
    b = b - b.mean(dim=dims, keepdim=True)
    return (a * b).sum(dim=dims) / (
        a.square().sum(dim=dims).sqrt() * b.square().sum(dim=dims).sqrt() +
        1e-8)


def _is_distill(cfg) -> bool:
    return cfg.model.get('type') == 'I2CKDDistill'


def _tiny_batch(num_classes: int, n: int = 2, size: int = 32):
    """Inputs N x 3 x size x size and labels with four classes per image
    (quadrants: 0, 1, 2 and the last class) and an ignored first row."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=g)
    h = size // 2
    samples = []
    for _ in range(n):
        gt = torch.zeros(1, size, size, dtype=torch.long)
        gt[:, :h, h:] = 1
        gt[:, h:, :h] = 2
        gt[:, h:, h:] = num_classes - 1
        gt[:, 0, :] = 255
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=gt)
        s.set_metainfo(
            dict(img_shape=(size, size), pad_shape=(size, size),
                 ori_shape=(size, size)))
        samples.append(s)
    return x, samples


def test_configs_found():
    names = {p.name for p in I2CKD_CONFIGS}
    # the shipped pairs: Cityscapes (DeepLabV3, PSPNet, MobileNetV2),
    # VOC, CamVid, ADE20K
    for part in ('deeplabv3_r18-d8_8xb2-40k_cityscapes', 'i2ckd-cwd_',
                 'voc12aug-512x512', 'camvid-360x360', 'ade20k-512x512',
                 'pspnet_r101-d8_pspnet_r18-d8', 'mobilenet-v2'):
        assert any(part in n for n in names), f'no config with {part!r}'
    # each other method alone and with I2CKD, on Cityscapes DL-R101 -> R18
    # and on the three toy pairs
    pair = 'deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024'
    toy = {p.name for p in CONFIGS if p.parent.name == 'toy'}
    for alone, combined in METHODS.items():
        for prefix in (alone, combined):
            assert f'{prefix}_{pair}.py' in names, prefix
            assert sum(n.startswith(prefix + '_') for n in toy) == 3, prefix


@pytest.mark.parametrize('path', CONFIGS, ids=_ids(CONFIGS))
def test_config_builds_and_runs(path):
    cfg = _load(path)
    num_classes = _dataset_classes(cfg)
    crop = _crop_size(cfg)
    init_default_scope('mmseg')
    torch.manual_seed(0)

    if not _is_distill(cfg):
        # A plain MMSeg recipe (a baseline/teacher to train first).
        cfg.model.pretrained = None
        assert cfg.model.decode_head.num_classes == num_classes
        if crop is not None:
            assert tuple(cfg.model.data_preprocessor.size) == crop
        model = SEG_MODELS.build(cfg.model).eval()
        x, samples = _tiny_batch(num_classes, n=1)
        with torch.no_grad():
            out = model(x, samples, mode='tensor')
        assert out.shape == (1, num_classes, 4, 4)  # output stride 8
        return

    mcfg = cfg.model
    student_cfg = mcfg.architecture
    student_cfg.pretrained = None
    # The data preprocessor pads every batch to the training crop.
    if crop is not None:
        assert tuple(student_cfg.data_preprocessor.size) == crop
    assert student_cfg.decode_head.num_classes == num_classes
    losses_cfg = mcfg.distiller.distill_losses
    for loss_cfg in losses_cfg.values():
        if loss_cfg.type == 'I2CKDLoss':
            if I2CKD_DIR in path.parents:
                # written once, in the student: the algorithm fills it in
                assert 'num_classes' not in loss_cfg
            elif loss_cfg.get('num_classes') is not None:
                assert loss_cfg.num_classes == num_classes

    mcfg.teacher_ckpt = None  # no download; see the module docstring
    algo = RAZOR_MODELS.build(mcfg)
    assert algo.teacher.decode_head.num_classes == num_classes
    for name, loss_cfg in losses_cfg.items():
        if loss_cfg.type == 'I2CKDLoss':
            assert algo.distiller.distill_losses[name].num_classes == \
                num_classes
    if path in ALONE_CONFIGS:
        # A method alone is its I2CKD config without the I2CKD term
        # (test_method_alone_is_its_i2ckd_config_without_i2ckd), which runs
        # below with the same method entries; the CPU toy ones also train a
        # step (test_method_config_trains_a_step). Built, not run again.
        return

    algo.train()
    x, samples = _tiny_batch(num_classes)
    with torch.no_grad():
        losses = algo.loss(x, samples)
    assert torch.isfinite(losses['student.decode.loss_ce'])

    dist = algo.distiller
    for loss_name, mapping in mcfg.distiller.loss_forward_mappings.items():
        assert torch.isfinite(losses[f'distill.{loss_name}']), loss_name
        # the student's and the teacher's entry (preds_S / preds_T, or
        # DISTLoss's logits_S / logits_T)
        s_map, t_map = (
            next(v for v in mapping.values()
                 if 'from_data' not in v and v.from_student == side)
            for side in (True, False))
        s_rec = dist.student_recorders.get_recorder(
            s_map.recorder).get_record_data()
        t_rec = dist.teacher_recorders.get_recorder(
            t_map.recorder).get_record_data()
        connector = s_map.get('connector')
        if connector is not None and mcfg.distiller.connectors[
                connector].type == 'PixelRowsConnector':
            # logits as pixel rows: the same reshape on both sides
            assert t_map.get('connector') == connector
            assert s_rec.shape == t_rec.shape
        elif connector is not None:
            c_cfg = mcfg.distiller.connectors[connector]
            # MMRazor's ConvModuleConnector: in_channel/out_channel; the
            # former I2CKDConnector: in_channels/out_channels; MMRazor's
            # MGDConnector: student_channels/teacher_channels
            c_in, c_out = (next(c_cfg[k] for k in keys if k in c_cfg)
                           for keys in (('in_channel', 'in_channels',
                                         'student_channels'),
                                        ('out_channel', 'out_channels',
                                         'teacher_channels')))
            assert s_rec.shape[1] == c_in, (
                f'{connector}: student feature has {s_rec.shape[1]} '
                f'channels, connector expects {c_in}')
            assert t_rec.shape[1] == c_out, (
                f'{connector}: teacher feature has {t_rec.shape[1]} '
                f'channels, connector gives {c_out}')
        else:
            assert s_rec.shape == t_rec.shape
        if losses_cfg[loss_name].type == 'I2CKDLoss':
            # four classes per image survive at 4x4: triplets exist
            stat = loss_name.replace('loss', '').strip('_')
            assert losses[f'distill.{stat}_triplets'] > 0
        loss_type = losses_cfg[loss_name].type
        if loss_type in ('ChannelWiseDivergence', 'KLDivergence',
                         'DISTLoss'):
            assert s_rec.shape[1] == num_classes  # logits of conv_seg
        if loss_type == 'DISTLoss':
            # DIST's segmentation loss at DIST's settings
            # (configs/_base_/i2ckd/dist_logits.py: inter 1, intra 1, tau 1,
            # weight 1), computed here on the 4-D logits: 1 - the Pearson
            # correlation over the classes at each pixel, + 1 - that of each
            # class over all the pixels of the batch
            p_s, p_t = s_rec.softmax(dim=1), t_rec.softmax(dim=1)
            expected = sum(
                1 - _pearson(p_s, p_t, dims).mean()
                for dims in ((1, ), (0, 2, 3)))
            torch.testing.assert_close(losses[f'distill.{loss_name}'],
                                       expected)
        if loss_type == 'KLDivergence':
            # per-pixel KD at weight 1 (configs/_base_/i2ckd/kd_logits.py):
            # the mean over pixels of KL(teacher || student), computed here
            # on pixels as rows
            tau = losses_cfg[loss_name].tau
            rows_s, rows_t = (r.permute(0, 2, 3, 1).reshape(-1, num_classes)
                              for r in (s_rec, t_rec))
            expected = F.kl_div(
                F.log_softmax(rows_s / tau, dim=1),
                F.softmax(rows_t / tau, dim=1),
                reduction='batchmean') * tau**2
            torch.testing.assert_close(losses[f'distill.{loss_name}'],
                                       expected)
        if loss_type == 'MGDLoss':
            # MGD's weight per layer4 element: 2e-5 for 2048 x 64 x 64 of
            # them (its Cityscapes 512x512 crops), whatever the crop here
            h, w = (c * f // 32 for c, f in zip(crop, t_rec.shape[-2:]))
            assert losses_cfg[loss_name].alpha_mgd * t_rec.shape[1] * h * w \
                == pytest.approx(2e-5 * 2048 * 64 * 64)


def _mmseg_entry(teacher_cfg_path: str) -> dict:
    """MMSeg's metafile entry (Weights, Results) of an ``mmseg::`` config."""
    rel = teacher_cfg_path.split('::', 1)[1]
    folder = rel.split('/')[0]
    meta = yaml.safe_load(
        (MMSEG_CONFIGS / folder / 'metafile.yaml').read_text())
    for m in meta['Models']:
        if m['Config'] == f'configs/{rel}':
            return m
    raise AssertionError(f'{teacher_cfg_path} not in MMSeg metafile')


@pytest.mark.parametrize('path', I2CKD_CONFIGS, ids=_ids(I2CKD_CONFIGS))
def test_teacher_checkpoint_is_mmseg_model_zoo_or_required(path):
    cfg = _load(path)
    teacher, ckpt = cfg.model.teacher, cfg.model.teacher_ckpt
    if 'cfg_path' in teacher:
        # never an invented URL: exactly the one MMSeg publishes for the
        # teacher config that is built
        assert ckpt == _mmseg_entry(teacher.cfg_path)['Weights']
    else:
        # no published teacher (CamVid): the placeholder must not be a
        # file or URL, so that training stops until the user passes one
        assert not str(ckpt).startswith('http')
        assert not Path(ckpt).exists()


def test_camvid_without_teacher_ckpt_fails_clearly():
    path = next(p for p in I2CKD_CONFIGS if 'camvid' in p.name)
    cfg = _load(path)
    cfg.model.architecture.pretrained = None
    with pytest.raises(FileNotFoundError,
                       match='teacher checkpoint not found'):
        RAZOR_MODELS.build(cfg.model)


def test_local_teacher_checkpoint_override(tmp_path):
    """``--cfg-options model.teacher_ckpt=PATH`` loads a local teacher file
    (the CamVid case, where no model-zoo teacher exists)."""
    path = next(p for p in I2CKD_CONFIGS if 'camvid' in p.name)
    cfg = _load(path)
    cfg.merge_from_dict({'model.teacher_ckpt': None,
                         'model.architecture.pretrained': None})
    first = RAZOR_MODELS.build(cfg.model)
    # a teacher state dict that differs from any fresh random init
    g = torch.Generator().manual_seed(1)
    state = {
        k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v)
        for k, v in first.teacher.state_dict().items()
    }
    ckpt = tmp_path / 'camvid_teacher.pth'
    torch.save(dict(state_dict=state, meta=dict(iter=40000)), ckpt)
    del first

    cfg = _load(path)
    # exactly what tools/train.py does with --cfg-options
    cfg.merge_from_dict({'model.teacher_ckpt': str(ckpt),
                         'model.architecture.pretrained': None})
    algo = RAZOR_MODELS.build(cfg.model)
    loaded = algo.teacher.state_dict()
    assert loaded.keys() == state.keys()
    for key in ('backbone.stem.0.weight', 'decode_head.conv_seg.weight',
                'decode_head.bottleneck.bn.running_var'):
        assert torch.equal(loaded[key], state[key]), key
    # init_weights() (which the Runner calls) must not undo the loading
    algo.teacher.init_weights()
    key = 'decode_head.conv_seg.weight'
    assert torch.equal(algo.teacher.state_dict()[key], state[key])


NAME = re.compile(r'^(?P<algo>i2ckd(?:-[a-z]+)?|kd|dist|mgd|cwd)_[a-z0-9-]+_'
                  r'(?P<teacher>[\w.-]+?)_'
                  r'(?P<student>[\w.-]+?)_(?P<gpus>\d+)xb(?P<batch>\d+)-'
                  r'(?P<iters>\d+)k_(?P<data>[a-z0-9]+)-(?P<h>\d+)x(?P<w>\d+)'
                  r'\.py$')


@pytest.mark.parametrize('path', I2CKD_CONFIGS, ids=_ids(I2CKD_CONFIGS))
def test_name_matches_config(path):
    """The OpenMMLab-style name states what the config does."""
    m = NAME.match(path.name)
    assert m, f'{path.name} does not follow {{algo}}_{{where}}_{{teacher}}_' \
        '{student}_{gpus}xb{batch}-{iters}_{data}-{crop}.py'
    cfg = _load(path)
    assert cfg.train_dataloader.batch_size == int(m['batch'])
    assert int(m['gpus']) * int(m['batch']) == 16  # the paper family's batch
    assert cfg.train_cfg.max_iters == int(m['iters']) * 1000
    assert _crop_size(cfg) == (int(m['h']), int(m['w']))
    for sched in cfg.param_scheduler:
        assert sched.end == cfg.train_cfg.max_iters


def test_metafile_and_model_index():
    index = yaml.safe_load((REPO / 'model-index.yml').read_text())
    assert 'configs/i2ckd/metafile.yml' in index['Import']
    meta = yaml.safe_load((I2CKD_DIR / 'metafile.yml').read_text())
    listed = {m['Config'] for m in meta['Models']}
    assert listed == {str(p.relative_to(REPO)) for p in I2CKD_CONFIGS}
    readme = (I2CKD_DIR / 'README.md').read_text()
    collections = {c['Name'] for c in meta['Collections']}
    for m in meta['Models']:
        path = REPO / m['Config']
        assert m['Name'] == path.stem
        # an I2CKD config (with or without another method) is in I2CKD's
        # collection, a method alone in its own
        algo = NAME.match(path.name)['algo'].split('-')[0]
        assert m['In Collection'] == algo.upper() and algo.upper() in \
            collections
        assert path.name in readme, f'{path.name} not in the README'
        cfg = _load(path)
        teacher = m['Metadata']['Teacher']
        if 'cfg_path' in cfg.model.teacher:
            assert teacher['Config'] == cfg.model.teacher.cfg_path
            assert teacher['Weights'] == cfg.model.teacher_ckpt
            # the teacher's mIoU is MMSeg's published one
            zoo = _mmseg_entry(cfg.model.teacher.cfg_path)
            assert teacher['Metrics']['mIoU'] == zoo['Results']['Metrics'][
                'mIoU']
        else:
            assert 'Weights' not in teacher and 'Metrics' not in teacher
            assert (REPO / teacher['Config']).is_file()
        # no invented metrics: nothing measured on real data yet
        assert 'Results' not in m


# The CPU toy pairs (the GPU study's full-width R50 -> R18 pair has the same
# blocks; it is built and run by test_config_builds_and_runs)
CPU_TOY_METHOD_CONFIGS = [
    p for p in METHOD_CONFIGS
    if p.parent.name == 'toy' and '-gpu_' not in p.name
]


@pytest.mark.parametrize('path', CPU_TOY_METHOD_CONFIGS,
                         ids=_ids(CPU_TOY_METHOD_CONFIGS))
def test_method_config_trains_a_step(path):
    """A toy config of another method (alone or with I2CKD) trains a step
    with its own optimizer, and every distillation loss in it reaches the
    student down to its first convolution."""
    cfg = _load(path)
    num_classes = _dataset_classes(cfg)
    init_default_scope('mmseg')
    torch.manual_seed(0)
    cfg.model.teacher_ckpt = None  # no file: see the module docstring
    algo = RAZOR_MODELS.build(cfg.model).train()

    x, samples = _tiny_batch(num_classes)
    losses = algo.loss(x, samples)
    names = list(cfg.model.distiller.distill_losses)
    assert len(names) == (2 if path.name.startswith('i2ckd-') else 1)
    student = dict(algo.student.named_parameters())
    first_conv = student['backbone.stem.0.weight']
    for name in names:
        loss = losses[f'distill.{name}']
        assert torch.isfinite(loss) and loss > 0, name
        grads = torch.autograd.grad(
            loss, list(student.values()), retain_graph=True,
            allow_unused=True)
        assert all(torch.isfinite(g).all() for g in grads if g is not None)
        grad = dict(zip(student, grads))['backbone.stem.0.weight']
        assert grad is not None and grad.abs().sum() > 0, name

    # the step itself: the config's optimizer on the student and the
    # connectors; the teacher does not move
    optim_wrapper = build_optim_wrapper(algo, cfg.optim_wrapper)
    teacher_before = {
        k: v.clone()
        for k, v in algo.teacher.state_dict().items()
    }
    before = first_conv.detach().clone()
    parsed, _ = algo.parse_losses(losses)
    optim_wrapper.update_params(parsed)
    assert not torch.equal(first_conv, before)
    for k, v in algo.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k


@pytest.mark.parametrize('path', ALONE_CONFIGS, ids=_ids(ALONE_CONFIGS))
def test_method_alone_is_its_i2ckd_config_without_i2ckd(path):
    """KD / DIST / MGD / CWD alone differs from its I2CKD combination only in
    the I2CKD term: same teacher, student, data, schedule and algorithm, the
    method's own entries identical, and the combination holds exactly the
    I2CKD-only config's entries besides them."""
    prefix = next(p for p in METHODS if path.name.startswith(p + '_'))
    rest = path.name[len(prefix):]
    alone = _load(path).to_dict()
    combined = _load(path.with_name(METHODS[prefix] + rest)).to_dict()
    i2ckd = _load(path.with_name('i2ckd_bottleneck' + rest)).to_dict()
    for cfg in (alone, i2ckd):
        assert {k: v for k, v in cfg.items() if k != 'model'} == {
            k: v for k, v in combined.items() if k != 'model' and k in cfg}
        assert {k: v for k, v in cfg['model'].items() if k != 'distiller'
                } == {k: v for k, v in combined['model'].items()
                      if k != 'distiller'}
    d_alone, d_comb, d_i2ckd = (c['model']['distiller']
                                for c in (alone, combined, i2ckd))
    assert d_alone['type'] == d_comb['type'] == d_i2ckd['type']
    for key in ('student_recorders', 'teacher_recorders', 'connectors',
                'distill_losses', 'loss_forward_mappings'):
        method, base = d_alone.get(key, {}), d_i2ckd.get(key, {})
        if key not in ('student_recorders', 'teacher_recorders'):
            assert not set(method) & set(base), key
        assert d_comb.get(key, {}) == {**base, **method}, key
    assert not any(loss['type'] == 'I2CKDLoss'
                   for loss in d_alone['distill_losses'].values())
