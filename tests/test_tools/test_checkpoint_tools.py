"""The command-line tools refuse a checkpoint whose unpickling would run code
(the payload never runs), name the file and ``--trust-checkpoint``, and
unpickle it when the user opts in for that file. MMEngine's own run
checkpoints need no opt-in (tools/test.py below, the export tests, --resume
in conftest's ``distill_run``). tools/train.py --resume PATH is the Runner's
resume, refused in tests/test_checkpoint.py."""
import os.path as osp

import pytest
import torch

from tool_helpers import I2CKD_CFG, STUDENT_CFG, TOOLS, run_tool, tiny_options
from toy.runs import run_tool as run_tool_unchecked


class _Payload:
    """Unpickling this writes ``marker``: stands for any code in a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def _payload_ckpt(tmp_path, state_dict=None):
    marker = tmp_path / 'PAYLOAD_RAN'
    path = str(tmp_path / 'payload.pth')
    torch.save(dict(state_dict=state_dict or dict(w=torch.ones(1)),
                    meta=dict(x=_Payload(str(marker)))), path)
    return path, marker


def _refused(proc, path):
    out = proc.stdout
    assert proc.returncode != 0, out[-3000:]
    assert 'UntrustedCheckpointError' in out, out[-3000:]
    assert f'{path}: refusing to unpickle' in out, out[-3000:]
    assert f'--trust-checkpoint {path}' in out or \
        '--trust-checkpoint to tools/export_student.py' in out, out[-3000:]


def test_tools_test_refuses_a_payload(tmp_path, toy_root):
    path, marker = _payload_ckpt(tmp_path)
    proc = run_tool_unchecked(
        'test.py', [STUDENT_CFG, path, '--work-dir', str(tmp_path / 'w'),
                    '--cfg-options'] + tiny_options(toy_root, 1,
                                                    teacher=False),
        timeout=300, check=False)
    _refused(proc, path)
    assert not marker.exists()


def test_tools_test_runs_a_trusted_file(tmp_path, toy_root, distill_run):
    """``--trust-checkpoint PATH`` unpickles exactly that file: a real run
    checkpoint with a payload added in its meta evaluates, and the payload
    ran (the file was fully unpickled)."""
    from i2ckd_mm.checkpoint import load_checkpoint_file
    run_ckpt = load_checkpoint_file(
        osp.join(distill_run['work_dir'], 'iter_6.pth'), map_location='cpu')
    student = {k[len('architecture.'):]: v
               for k, v in run_ckpt['state_dict'].items()
               if k.startswith('architecture.')}
    path, marker = _payload_ckpt(tmp_path, student)
    proc = run_tool([
        osp.join(TOOLS, 'test.py'), STUDENT_CFG, path, '--work-dir',
        str(tmp_path / 'w'), '--trust-checkpoint', path, '--cfg-options'
    ] + tiny_options(toy_root, 1, teacher=False))
    assert 'mIoU' in proc.stdout
    assert marker.exists()


def test_export_refuses_a_payload_and_opts_in(tmp_path):
    path, marker = _payload_ckpt(tmp_path)
    out = str(tmp_path / 'out')
    proc = run_tool_unchecked('export_student.py', [I2CKD_CFG, path, out],
                              timeout=300, check=False)
    _refused(proc, path)
    assert not marker.exists() and not osp.exists(out)
    # opting in (the tool's --trust-checkpoint is trusted=True) unpickles it:
    # the payload runs; export then refuses the contents
    from i2ckd_mm.apis import export_student
    with pytest.raises(ValueError, match='not a distillation checkpoint'):
        export_student(path, I2CKD_CFG, out, trusted=True)
    assert marker.exists()
