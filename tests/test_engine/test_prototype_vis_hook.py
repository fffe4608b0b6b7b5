"""PrototypeVisHook on a tiny I2CKDDistill (two 32x32 DeepLabV3s on CPU).

The saved similarity matrix is checked against the loop reference
(tools/toy/reference_i2ckd.py) on the recorded features, the
hook is shown to change no state (BN connector statistics, modes, grads),
to unwrap a model wrapper, and to run inside a real Runner.
"""
import os
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import i2ckd_mm  # noqa: F401  (compat shims before mmseg/mmrazor)
from mmengine.dataset import pseudo_collate
from mmengine.logging import MessageHub
from mmengine.registry import MODEL_WRAPPERS
from mmengine.structures import PixelData
from mmrazor.registry import HOOKS
from mmseg.structures import SegDataSample

from toy import reference_i2ckd as ref
from i2ckd_mm.engine.hooks import PrototypeVisHook
from i2ckd_mm.models.losses import I2CKDLoss
from i2ckd_mm.visualization import batch_prototypes, pca_2d
from tiny_models import tiny_distill, tiny_segmentor

SIZE, K = 32, 4


def _segmentor(width):
    """ResNetV1c-18-D8 at 1/8 (teacher) or 1/16 (student) width + ASPP."""
    return tiny_segmentor(width, K, size=SIZE, head='aspp', dropout_ratio=0.1,
                          std=(255., ) * 3)


def build_algorithm(connector_norm=False):
    torch.manual_seed(0)
    return tiny_distill(
        student=_segmentor(8), teacher=_segmentor(16), num_classes=K,
        source='decode_head.bottleneck', connector=(8, 16),
        connector_norm=connector_norm)


def make_batch(n=2, seed=0, size=SIZE):
    """Blocky labels (8x8 regions of classes 0..K-1, a strip ignored)."""
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        blocks = torch.randint(0, K, (1, 1, size // 8, size // 8),
                               generator=g).float()
        gt = F.interpolate(blocks, size=(size, size))[0].long()
        gt[:, :2] = 255
        s = SegDataSample(gt_sem_seg=PixelData(data=gt))
        s.set_metainfo(dict(img_shape=(size, size), ori_shape=(size, size)))
        samples.append(s)
        inputs.append(torch.randint(0, 256, (3, size, size),
                                    dtype=torch.uint8, generator=g))
    return dict(inputs=inputs, data_samples=samples)


def fake_runner(model, work_dir, it=0):
    return SimpleNamespace(
        model=model, iter=it, work_dir=str(work_dir),
        message_hub=MessageHub.get_instance('test_prototype_vis_hook'),
        train_dataloader=None, logger=SimpleNamespace(warning=print))


def direct_similarity(alg, batch):
    """Independent reference: the loop reference's nearest label resize
    and batch prototypes (tools/toy/reference_i2ckd.py), numpy cosine."""
    d = alg.distiller
    with torch.no_grad():
        fs = d.connectors['sfeat'](
            d.student_recorders.get_recorder('feat').get_record_data())
        ft = d.teacher_recorders.get_recorder('feat').get_record_data()
    gt = torch.stack([s.gt_sem_seg.data[0] for s in batch['data_samples']])
    y = ref.resize_labels(gt, tuple(ft.shape[-2:]), K)
    rs, counts = ref.prototypes(fs.double(), y, K, scope='batch')
    rt, _ = ref.prototypes(ft.double(), y, K, scope='batch')
    ps = {k: rs[0, k].numpy() for k in range(K) if counts[0, k] > 0}
    pt = {k: rt[0, k].numpy() for k in range(K) if counts[0, k] > 0}
    sim = np.full((K, K), np.nan)
    for k in ps:
        for j in pt:
            sim[k, j] = ps[k] @ pt[j] / np.linalg.norm(ps[k]) / \
                np.linalg.norm(pt[j])
    return sim, ps, pt


def test_registered():
    hook = HOOKS.build(dict(type='PrototypeVisHook', interval=3))
    assert isinstance(hook, PrototypeVisHook) and hook.interval == 3


@pytest.mark.parametrize('wrapped', [False, True])
def test_saved_matrix_equals_direct_computation(tmp_path, wrapped):
    alg = build_algorithm()
    alg.train()
    batch = make_batch()
    alg(**alg.data_preprocessor(batch, True), mode='loss')
    model = alg
    if wrapped:
        # a registered wrapper exposing .module, like MMDistributedDDP
        @MODEL_WRAPPERS.register_module(force=True)
        class _TestWrapper(nn.Module):

            def __init__(self, module):
                super().__init__()
                self.module = module

        model = _TestWrapper(alg)
    runner = fake_runner(model, tmp_path, it=4)
    hook = PrototypeVisHook(interval=5, class_names=['a', 'b', 'c', 'd'])
    hook.before_train(runner)
    hook.after_train_iter(runner, 0, data_batch=batch)
    vis = tmp_path / 'vis'
    names = sorted(os.listdir(vis))
    assert names == ['proto_pca_iter000005.png', 'proto_sim_iter000005.npy',
                     'proto_sim_iter000005.png']
    for n in names:
        if n.endswith('.png'):
            assert (vis / n).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    saved = np.load(vis / 'proto_sim_iter000005.npy')
    ref, ps, _ = direct_similarity(alg, batch)
    assert len(ps) >= 2  # several classes present: a real matrix
    np.testing.assert_array_equal(np.isnan(saved), np.isnan(ref))
    np.testing.assert_allclose(saved[~np.isnan(ref)], ref[~np.isnan(ref)],
                               rtol=1e-5, atol=1e-6)
    ids = sorted(ps)
    diag = np.mean([ref[k, k] for k in ids])
    hub = runner.message_hub
    assert hub.get_scalar('train/proto_cos_diag').current() == \
        pytest.approx(diag, rel=1e-5)
    off = np.mean([ref[k, j] for k in ids for j in ids if j != k])
    assert hub.get_scalar('train/proto_cos_offdiag').current() == \
        pytest.approx(off, rel=1e-5, abs=1e-6)


def test_hook_uses_the_loss_prototype_path(tmp_path, monkeypatch):
    """The hook asks the loss for its prototypes (scope 'batch': the hook
    runs on the main process only, a 'global' all_reduce would hang) and
    reads the features through MMRazor's public get_record."""
    alg = build_algorithm()
    batch = make_batch()
    alg(**alg.data_preprocessor(batch, True), mode='loss')
    calls, records = [], []
    real = I2CKDLoss.prototypes
    real_get = type(alg.distiller).get_record

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get('scope'))
        return real(self, *args, **kwargs)

    def get_spy(self, *args, **kwargs):
        records.append(kwargs)
        return real_get(self, *args, **kwargs)

    monkeypatch.setattr(I2CKDLoss, 'prototypes', spy)
    monkeypatch.setattr(type(alg.distiller), 'get_record', get_spy)
    alg.distiller.distill_losses['loss_i2ckd'].prototype_scope = 'global'
    PrototypeVisHook(interval=1).after_train_iter(
        fake_runner(alg, tmp_path), 0, data_batch=batch)
    assert calls == ['batch']
    assert sorted(r['from_student'] for r in records) == [False, True]
    assert all('connector' not in r for r in records)  # applied to a copy


def test_batch_prototypes_keep_the_loss_accumulation_dtype():
    # float64 features stay float64 (the old path cast to float32)
    g = torch.Generator().manual_seed(0)
    fs = torch.randn(2, 5, 4, 4, generator=g, dtype=torch.float64)
    ft = torch.randn(2, 5, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 8, 8), generator=g)
    y[0, :2] = 255
    ps, pt, present = batch_prototypes(I2CKDLoss(num_classes=4), fs, ft, y)
    y4 = ref.resize_labels(y, (4, 4), 4)
    rs, counts = ref.prototypes(fs, y4, 4, scope='batch')
    rt, _ = ref.prototypes(ft, y4, 4, scope='batch')
    assert ps.dtype == pt.dtype == torch.float64
    torch.testing.assert_close(ps, rs[0])
    torch.testing.assert_close(pt, rt[0])
    assert present.tolist() == [True, True, True, False]


def test_interval_skips_other_iterations(tmp_path):
    alg = build_algorithm()
    batch = make_batch()
    alg(**alg.data_preprocessor(batch, True), mode='loss')
    hook = PrototypeVisHook(interval=5)
    runner = fake_runner(alg, tmp_path, it=3)  # iteration 4: not saved
    hook.after_train_iter(runner, 0, data_batch=batch)
    assert not (tmp_path / 'vis').exists()


def test_changes_no_training_state(tmp_path):
    alg = build_algorithm(connector_norm=True)  # BN in the connector
    alg.train()
    batch = make_batch()
    losses = alg(**alg.data_preprocessor(batch, True), mode='loss')
    before = {k: v.clone() for k, v in alg.state_dict().items()}
    modes = [m.training for m in alg.modules()]
    raw_labels = [s.gt_sem_seg.data.clone() for s in batch['data_samples']]
    runner = fake_runner(alg, tmp_path)
    hook = PrototypeVisHook(interval=1)
    hook.after_train_iter(runner, 0, data_batch=batch)
    after = alg.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in alg.modules()] == modes
    assert all(p.grad is None for p in alg.parameters())
    for raw, s in zip(raw_labels, batch['data_samples']):
        assert torch.equal(raw, s.gt_sem_seg.data)  # batch not modified
    # training still backpropagates through the recorded graph
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(p.grad is not None
               for p in alg.distiller.connectors['sfeat'].parameters())


def test_pca_recovers_a_known_plane():
    # points on a 2-D plane embedded in 5-D: PCA keeps all the variance
    # and preserves pairwise distances
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(10, 2)) * [3.0, 1.0]
    basis, _ = np.linalg.qr(rng.normal(size=(5, 2)))
    coords, ratio = pca_2d(plane @ basis.T + 7.0)
    assert ratio.sum() == pytest.approx(1.0)
    assert ratio[0] > ratio[1]
    dist = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    ref = np.linalg.norm(plane[:, None] - plane[None], axis=-1)
    np.testing.assert_allclose(dist, ref, atol=1e-9)


def test_bad_setup_errors_clearly(tmp_path):
    runner = fake_runner(nn.Linear(2, 2), tmp_path)
    with pytest.raises(TypeError, match='distillation algorithm'):
        PrototypeVisHook().before_train(runner)
    runner = fake_runner(build_algorithm(), tmp_path)
    with pytest.raises(KeyError, match='loss_cwd'):
        PrototypeVisHook(loss_name='loss_cwd').before_train(runner)
    alg = build_algorithm()
    alg.distiller.distill_losses['loss_i2ckd'] = nn.MSELoss()
    with pytest.raises(TypeError, match='no prototypes'):
        PrototypeVisHook().before_train(fake_runner(alg, tmp_path))
    with pytest.raises(ValueError, match='interval'):
        PrototypeVisHook(interval=0)


def test_in_a_real_runner(tmp_path):
    from mmengine.runner import Runner
    from torch.utils.data import DataLoader

    batch = make_batch(n=4, seed=1)
    items = [dict(inputs=i, data_samples=s)
             for i, s in zip(batch['inputs'], batch['data_samples'])]
    loader = DataLoader(items, batch_size=2, collate_fn=pseudo_collate)
    runner = Runner(
        model=build_algorithm(), work_dir=str(tmp_path),
        train_dataloader=loader,
        train_cfg=dict(by_epoch=False, max_iters=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        custom_hooks=[dict(type='PrototypeVisHook', interval=1)],
        default_hooks=dict(checkpoint=None),
        default_scope='mmrazor', experiment_name='vis_hook_test')
    runner.train()
    files = sorted(os.listdir(tmp_path / 'vis'))
    assert files == sorted(
        f'proto_{kind}_iter{i:06d}.{ext}' for i in (1, 2)
        for kind, ext in (('pca', 'png'), ('sim', 'npy'), ('sim', 'png')))
    # iteration 2 saw the second half of the data: check it against it
    saved = np.load(tmp_path / 'vis' / 'proto_sim_iter000002.npy')
    ref, _, _ = direct_similarity(
        runner.model, dict(data_samples=batch['data_samples'][2:]))
    np.testing.assert_allclose(saved, ref, rtol=1e-5, atol=1e-6)
