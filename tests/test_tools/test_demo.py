"""tools/demo.py end to end at toy size (data, teacher, I2CKD student, mIoU
table, export, prediction picture), and the prediction picture itself:
panels, titles, pixel content and legend."""
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest

from tool_helpers import TOOLS, run_tool
from load_file import load_file
from i2ckd_mm.datasets.toy import TOY_CLASSES, TOY_PALETTE


demo = load_file('_tool_demo', osp.join(TOOLS, 'demo.py'))


def _crop(png, box):
    x0, y0, x1, y1 = box
    return png[y0:y1, x0:x1]


def _big(rgb, scale):
    return np.repeat(np.repeat(rgb, scale, 0), scale, 1)


def _read_rgb(path):
    return cv2.imread(path)[..., ::-1]


@pytest.fixture
def toy_picture_inputs():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
              for _ in range(2)]
    gts = [rng.integers(0, 6, (16, 16)).astype(np.uint8) for _ in range(2)]
    for gt in gts:
        gt[0, :] = 255  # an ignored border row
    alone = [(gt + 1) % 6 for gt in gts]  # wrong everywhere
    distilled = [gt.copy() for gt in gts]
    distilled[0][1:5] = (gts[0][1:5] + 1) % 6  # 4 of 15 labelled rows wrong
    distilled[0][0, :] = 0  # predictions at ignored pixels do not count
    return images, gts, alone, distilled


@pytest.mark.parametrize('with_cwd', [False, True])
def test_prediction_picture(tmp_path, toy_picture_inputs, with_cwd):
    images, gts, alone, distilled = toy_picture_inputs
    predictions = [('student alone', alone), ('student + I2CKD', distilled)]
    if with_cwd:
        predictions.append(('student + I2CKD + CWD', gts))
    out = str(tmp_path / 'p.png')
    layout = demo.draw_prediction_panel(images, gts, predictions,
                                        TOY_CLASSES, TOY_PALETTE, out,
                                        ['a.png', 'b.png'])
    png = _read_rgb(out)
    ncols = 2 + len(predictions)
    assert layout['titles'] == ['image'] + [t for t, _ in predictions] + [
        'ground truth'
    ]
    # the picture's width is the panels' (16 px shown 16x) plus the gaps
    scale = layout['scale']
    assert scale == 16
    assert png.shape[:2] == layout['size']
    assert png.shape[1] == ncols * 16 * scale + (ncols + 1) * demo.GAP
    assert len(layout['boxes']) == 2 * ncols
    # every panel holds exactly what it says
    for r in range(2):
        assert np.array_equal(
            _crop(png, layout['boxes'][(r, 0)]),
            _big(images[r][..., ::-1], scale)), f'row {r} image'
        for c, (title, maps) in enumerate(predictions, 1):
            assert np.array_equal(
                _crop(png, layout['boxes'][(r, c)]),
                _big(demo.colour_labels(maps[r], TOY_PALETTE), scale)), title
        gt_panel = _crop(png, layout['boxes'][(r, ncols - 1)])
        assert np.array_equal(
            gt_panel, _big(demo.colour_labels(gts[r], TOY_PALETTE), scale))
        # ignored pixels are white, labelled ones never are
        assert (gt_panel[:scale] == 255).all()
    acc = layout['pixel_accuracy']
    assert acc['student alone'] == [0.0, 0.0]
    assert acc['student + I2CKD'] == pytest.approx([100 * 11 / 15, 100.0])
    # the legend: every class and "ignored", in the palette's colours
    assert layout['legend'] == list(TOY_CLASSES) + ['ignored (255)']
    assert layout['legend_colours'] == [tuple(c) for c in TOY_PALETTE] + [
        (255, 255, 255)
    ]
    # ... and drawn inside the picture, below the panels
    below = png[max(b[3] for b in layout['boxes'].values()):]
    for colour in TOY_PALETTE:
        assert (below == colour).all(-1).sum() > 20, colour


def test_colour_labels_refuses_unknown_ids():
    with pytest.raises(ValueError, match=r'\[7\] have no colour'):
        demo.colour_labels(np.array([[0, 7]], np.uint8), TOY_PALETTE)


def test_demo_runs_end_to_end(tmp_path):
    wd = str(tmp_path / 'demo')
    proc = run_tool([
        osp.join(TOOLS, 'demo.py'), '--work-dir', wd, '--iters', '2',
        '--teacher-iters', '2', '--num-train', '8', '--num-val', '2',
        '--vis-images', '2', '--skip-student-alone', '--skip-cwd'
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
    assert 'prediction [image | student + I2CKD | ground truth]' in out
    # 2 rows of [image | student + I2CKD | ground truth], 64x64 shown 4x
    png = _read_rgb(osp.join(wd, 'prediction_val.png'))
    layout = demo.panel_layout(3, 2, 64, 64, len(TOY_CLASSES) + 1)
    assert png.shape[:2] == layout['size']
    assert png.shape[1] == 3 * 256 + 4 * demo.GAP
    gt = cv2.imread(osp.join(wd, 'data', 'ann_dir', 'val', '00001.png'),
                    cv2.IMREAD_UNCHANGED)
    assert np.array_equal(
        _crop(png, layout['boxes'][(1, 2)]),
        _big(demo.colour_labels(gt, TOY_PALETTE), 4))


def test_amp_flag_reaches_every_training_run(tmp_path, monkeypatch):
    """--amp is passed to tools/train.py of every run (teacher, students);
    test.py, export and the toy-data tool get no such flag."""
    calls = []

    class _Stop(Exception):
        """Ends the demo at its first evaluation: every training is done."""

    def fake_run_tool(tool, args, **kwargs):
        calls.append((tool, list(args)))
        if tool == 'test.py':
            raise _Stop
        if tool == 'train.py':
            wd = args[args.index('--work-dir') + 1]
            iters = [a for a in args if a.startswith('train_cfg.max_iters=')]
            os.makedirs(wd, exist_ok=True)
            open(osp.join(wd, f'iter_{iters[0].split("=")[1]}.pth'),
                 'w').close()

    monkeypatch.setattr(demo, 'run_tool', fake_run_tool)
    monkeypatch.setattr(demo, 'TRAIN_FLAGS', [])
    for amp in (True, False):
        calls.clear()
        argv = ['--work-dir', str(tmp_path / str(amp)), '--iters', '3',
                '--teacher-iters', '4'] + (['--amp'] if amp else [])
        with pytest.raises(_Stop):
            demo.main(argv)
        trains = [a for t, a in calls if t == 'train.py']
        # teacher, student alone, I2CKD, I2CKD + CWD
        assert len(trains) == 4
        assert all(('--amp' in a) == amp for a in trains)
        assert all(a.index('--amp') < a.index('--cfg-options')
                   for a in trains if amp)
        assert all('--amp' not in a for t, a in calls if t != 'train.py')
