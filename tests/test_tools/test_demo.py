"""tools/demo.py end to end at toy size: data, teacher, I2CKD student,
mIoU table, export, coloured prediction."""
import os.path as osp
import re

import cv2

from conftest import TOOLS, run_tool


def test_demo_runs_end_to_end(tmp_path):
    wd = str(tmp_path / 'demo')
    proc = run_tool([
        osp.join(TOOLS, 'demo.py'), '--work-dir', wd, '--iters', '2',
        '--teacher-iters', '2', '--num-train', '8', '--num-val', '2',
        '--skip-student-alone', '--skip-cwd'
    ], timeout=600)
    out = proc.stdout
    # per-term losses are logged live
    for key in ('decode.loss_ce', 'aux.loss_ce', 'distill.loss_i2ckd'):
        assert key in out, key
    rows = re.findall(r'^\| (teacher|student)[^|]*\|\s+([\d.]+) \|', out,
                      re.M)
    assert [r[0] for r in rows] == ['teacher', 'student']
    assert all(0 <= float(v) <= 100 for _, v in rows)
    assert osp.isfile(osp.join(wd, 'export', 'student_i2ckd.pth'))
    png = cv2.imread(osp.join(wd, 'prediction_val_00000.png'))
    # [image | prediction | ground truth], 64x64 each, shown 4x
    assert png.shape == (256, 768, 3)
