"""tools/pretrain_toy_backbone.py: which backbone it pretrains, and that
its checkpoint is what the toy configs load (one short in-process run)."""
import json
import os.path as osp

import torch

from toy import toy_configs
from load_file import load_file

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
tool = load_file('_tool_pretrain_toy_backbone',
                 osp.join(ROOT, 'tools', 'pretrain_toy_backbone.py'))


def test_backbone_of_each_role_and_override():
    cfgs = toy_configs('toyshapes')
    assert tool.backbone_of(cfgs['student'], 'student')['base_channels'] == 16
    assert tool.backbone_of(cfgs['teacher'], 'teacher')['base_channels'] == 32
    # a distillation config: its student's backbone
    assert tool.backbone_of(cfgs['i2ckd'], 'model')['base_channels'] == 16
    deep = tool.backbone_of(cfgs['teacher'], 'teacher', depth=50,
                            base_channels=64)
    assert (deep['depth'], deep['base_channels'],
            deep['stem_channels']) == (50, 64, 64)


def test_main_writes_a_weights_only_backbone_checkpoint(tmp_path, capsys):
    out = str(tmp_path / 'b.pth')
    tool.main([toy_configs('toyshapes')['student'], out, '--iters', '1',
               '--batch-size', '2', '--size', '32', '--seed', '3'])
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats['out'] == out
    ckpt = torch.load(out, weights_only=True)
    assert ckpt['meta']['seed'] == 3 and ckpt['meta']['base_channels'] == 16
    assert ckpt['state_dict']['stem.0.weight'].shape[0] == 8  # 16 // 2
