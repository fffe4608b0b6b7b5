"""CPU demo: toy data -> teacher -> I2CKD student -> mIoU table -> export.

    python tools/demo.py [--work-dir work_dirs/toy_demo] [--iters 1000]
        [--teacher-iters 1500] [--skip-student-alone] [--skip-cwd]
        [--vis-images 3] [--amp]

Training runs on the GPU when MMEngine finds one (``--amp``: mixed
precision, GPU only); the prediction picture is made on the CPU from the
exported students.

Steps (each training/test run is tools/train.py / tools/test.py in a
subprocess, through ``tools/toy/runs.py``; MMEngine's log with every loss
term is shown live):

1. write ToyShapes (tools/make_toy_data.py) to WORK_DIR/data;
2. train the teacher (configs/toy/deeplabv3_r18-d8_...);
3. train the student alone (configs/toy/deeplabv3_r18w16-d8_...), for
   comparison (skip with --skip-student-alone);
4. distill the student with I2CKD (configs/toy/i2ckd_bottleneck_...) and
   with I2CKD + ChannelWiseDivergence logit KD (skip with --skip-cwd);
5. evaluate every model on the val split and print an mIoU table;
6. export the distilled students as plain MMSeg models
   (tools/export_student.py), run mmseg.apis.inference_model on the first
   val images with them and with the student alone, and save
   WORK_DIR/prediction_val.png: one row per image, columns
   image | student alone | student + I2CKD | student + I2CKD + CWD |
   ground truth, with titles, per-panel pixel accuracy and a class legend
   (white: ignored pixels).
"""
import argparse
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from toy import (data_options, last_metrics, run_tool, schedule_options,
                 toy_configs)

_TOY = toy_configs()
TEACHER_CFG, STUDENT_CFG = _TOY['teacher'], _TOY['student']
I2CKD_CFG, I2CKD_CWD_CFG = _TOY['i2ckd'], _TOY['i2ckd_cwd']
IGNORE_INDEX = 255

THREADS = {'n': 1}
#: Extra tools/train.py flags of every training run (``--amp``).
TRAIN_FLAGS: List[str] = []


def run(tool: str, args: Sequence[str]) -> float:
    """Run ``tools/<tool>``, printing the command and its output live;
    fail loudly if it fails. Returns the wall time in seconds."""
    print(f'\n$ python tools/{tool} ' + ' '.join(args), flush=True)
    t0 = time.time()
    run_tool(tool, args, threads=THREADS['n'], stream=True)
    return time.time() - t0


def train(cfg: str, work_dir: str, iters: int,
          options: List[str]) -> Tuple[str, float]:
    seconds = run('train.py', [cfg, '--work-dir', work_dir] + TRAIN_FLAGS +
                  ['--cfg-options'] + schedule_options(iters) + options)
    ckpt = osp.join(work_dir, f'iter_{iters}.pth')
    if not osp.isfile(ckpt):
        raise FileNotFoundError(f'training did not write {ckpt}')
    return ckpt, seconds


def evaluate(cfg: str, ckpt: str, work_dir: str, options: List[str]) -> float:
    """mIoU of ``ckpt`` on the val split (tools/test.py)."""
    run('test.py', [cfg, ckpt, '--work-dir', work_dir, '--cfg-options'] +
        options)
    metrics = last_metrics(work_dir, 'mIoU')
    if metrics is None:
        raise FileNotFoundError(
            f'tools/test.py wrote no metrics json with mIoU under {work_dir}')
    return float(metrics['mIoU'])


# --------------------------------------------------------------------------
# The prediction picture
# --------------------------------------------------------------------------
#: Pixels between panels and around the picture.
GAP = 8
#: Height of the column titles above the first row.
TITLE_H = 26
#: Height of the per-panel caption line (pixel accuracy) above every row.
CAPTION_H = 18
#: Height of one legend row below the panels.
LEGEND_ROW_H = 24
#: Width reserved per legend entry (text at 10 pt).
LEGEND_ENTRY_W = 118


def panel_scale(height: int, width: int) -> int:
    """Integer upscaling so that a panel is about 256 pixels wide (nearest
    neighbour: every label pixel stays a visible block)."""
    return max(1, int(round(256 / max(width, 1))))


def panel_layout(num_columns: int, num_rows: int, height: int, width: int,
                 num_legend_entries: int) -> Dict:
    """Pixel geometry of the prediction picture.

    Args:
        num_columns (int): Panels per row (image, predictions, ground truth).
        num_rows (int): Images shown.
        height (int): Image height in pixels (before upscaling).
        width (int): Image width in pixels (before upscaling).
        num_legend_entries (int): Classes + 1 for "ignored".

    Returns:
        dict: ``size`` (H, W) of the PNG, ``scale``, ``legend_columns``,
        ``legend_rows`` and ``boxes``: ``{(row, col): (x0, y0, x1, y1)}``,
        the pixel box of every panel in the PNG (origin top left, x1/y1
        exclusive).
    """
    scale = panel_scale(height, width)
    ph, pw = height * scale, width * scale
    total_w = num_columns * pw + (num_columns + 1) * GAP
    legend_cols = max(1, min(num_legend_entries,
                             (total_w - 2 * GAP) // LEGEND_ENTRY_W))
    legend_rows = -(-num_legend_entries // legend_cols)
    boxes = {}
    y = TITLE_H
    for r in range(num_rows):
        y += CAPTION_H
        for c in range(num_columns):
            x = GAP + c * (pw + GAP)
            boxes[(r, c)] = (x, y, x + pw, y + ph)
        y += ph + GAP
    total_h = y + legend_rows * LEGEND_ROW_H + GAP
    return dict(size=(total_h, total_w), scale=scale, boxes=boxes,
                legend_columns=legend_cols, legend_rows=legend_rows)


def colour_labels(label: np.ndarray, palette: Sequence[Sequence[int]],
                  ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """An RGB picture of a label map: ``palette`` per class, white for
    ``ignore_index``; any other id is an error (a silent colour would hide
    a wrong label)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:len(palette)] = np.asarray(palette, np.uint8)
    lut[ignore_index] = 255
    bad = (label >= len(palette)) & (label != ignore_index)
    if bad.any():
        raise ValueError(
            f'label ids {sorted(np.unique(label[bad]).tolist())} have no '
            f'colour: {len(palette)} classes, ignore index {ignore_index}')
    return lut[label]


def draw_prediction_panel(images: Sequence[np.ndarray],
                          ground_truths: Sequence[np.ndarray],
                          predictions: Sequence[Tuple[str,
                                                      Sequence[np.ndarray]]],
                          classes: Sequence[str],
                          palette: Sequence[Sequence[int]],
                          out_png: str,
                          image_names: Optional[Sequence[str]] = None,
                          ignore_index: int = IGNORE_INDEX) -> Dict:
    """Save one row per image: image | one column per model | ground truth,
    with column titles, each prediction's pixel accuracy and a legend.

    Args:
        images (Sequence[np.ndarray]): H x W x 3 uint8 BGR images (cv2).
        ground_truths (Sequence[np.ndarray]): H x W label maps.
        predictions (Sequence[tuple]): ``(column title, [label map per
            image])`` per model, in column order.
        classes (Sequence[str]): Class names, in label order.
        palette (Sequence): One RGB colour per class.
        out_png (str): Where to save the picture.
        image_names (Sequence[str], optional): Shown in the image column's
            caption.
        ignore_index (int): The label drawn white ("ignored").

    Returns:
        dict: :func:`panel_layout` plus ``titles`` (column titles),
        ``legend`` (legend labels as drawn), ``legend_colours`` (their RGB
        colours, 0-255) and ``pixel_accuracy`` (``{title: [% per image]}``).
    """
    import matplotlib
    matplotlib.use('Agg')  # files only; no display needed
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if len(palette) != len(classes):
        raise ValueError(f'{len(classes)} classes but {len(palette)} '
                         'palette colours')
    if len(ground_truths) != len(images) or any(
            len(maps) != len(images) for _, maps in predictions):
        raise ValueError('every model needs one prediction per image and '
                         'every image a ground truth')
    h, w = images[0].shape[:2]
    titles = ['image'] + [t for t, _ in predictions] + ['ground truth']
    legend_labels = list(classes) + [f'ignored ({ignore_index})']
    layout = panel_layout(len(titles), len(images), h, w, len(legend_labels))
    scale, boxes = layout['scale'], layout['boxes']
    total_h, total_w = layout['size']

    dpi = 100
    fig = plt.figure(figsize=(total_w / dpi, total_h / dpi), dpi=dpi)
    fig.patch.set_facecolor('white')

    def put(block, row, col):
        x0, y0, x1, y1 = boxes[(row, col)]
        big = np.repeat(np.repeat(block, scale, 0), scale, 1)
        # figimage places raw pixels (no resampling); origin bottom left
        fig.figimage(big, xo=x0, yo=total_h - y1, origin='upper')

    def text(x, y, s, **kw):
        fig.text(x / total_w, 1 - y / total_h, s, ha='center', va='center',
                 **kw)

    accuracy = {t: [] for t, _ in predictions}
    for r, (img, gt) in enumerate(zip(images, ground_truths)):
        if img.shape[:2] != (h, w) or gt.shape != (h, w):
            raise ValueError(f'image {r}: all images and labels must be '
                             f'{h}x{w}, got {img.shape[:2]} / {gt.shape}')
        cols = [img[..., ::-1]]
        captions = [image_names[r] if image_names else '']
        valid = gt != ignore_index
        for title, maps in predictions:
            acc = float((maps[r][valid] == gt[valid]).mean() * 100)
            accuracy[title].append(acc)
            cols.append(colour_labels(maps[r], palette, ignore_index))
            captions.append(f'pixel acc {acc:.1f} %')
        cols.append(colour_labels(gt, palette, ignore_index))
        captions.append('')
        for c, (block, caption) in enumerate(zip(cols, captions)):
            put(block, r, c)
            x0, y0, x1, _ = boxes[(r, c)]
            if caption:
                text((x0 + x1) / 2, y0 - CAPTION_H / 2, caption, fontsize=9)
            if r == 0:
                text((x0 + x1) / 2, TITLE_H / 2, titles[c], fontsize=11,
                     fontweight='bold')

    colours = [tuple(int(v) for v in c) for c in palette] + [(255, 255, 255)]
    handles = [
        Patch(facecolor=np.array(c) / 255, edgecolor='black', label=label)
        for c, label in zip(colours, legend_labels)
    ]
    legend_top = max(b[3] for b in boxes.values()) + GAP // 2
    legend = fig.legend(
        handles=handles, loc='upper center', ncol=layout['legend_columns'],
        bbox_to_anchor=(0.5, 1 - legend_top / total_h), frameon=False,
        fontsize=10, handlelength=1.4, columnspacing=1.2)
    fig.savefig(out_png, dpi=dpi)
    plt.close(fig)
    layout.update(
        titles=titles,
        legend=[t.get_text() for t in legend.get_texts()],
        legend_colours=[
            tuple(int(round(v * 255)) for v in h.get_facecolor()[:3])
            for h in legend.legend_handles
        ],
        pixel_accuracy=accuracy)
    return layout


def predict_panel(models: Sequence[Tuple[str, str, str]], data_root: str,
                  out_png: str, num_images: int) -> Dict:
    """Plain MMSeg inference (``mmseg.apis``) of every model on the first
    ``num_images`` val images; saves the picture of
    :func:`draw_prediction_panel` and returns its layout.

    Args:
        models (Sequence[tuple]): ``(column title, config, checkpoint)``.
        data_root (str): The ToyShapes root.
        out_png (str): Where to save the picture.
        num_images (int): Rows (val images 00000, 00001, ...).
    """
    import cv2
    import i2ckd_mm  # noqa: F401  (mmcv.ops shim under mmcv-lite only)
    from mmseg.apis import inference_model, init_model

    names = [f'val/{i:05d}.png' for i in range(num_images)]
    img_paths = [osp.join(data_root, 'img_dir', n) for n in names]
    images = [cv2.imread(p) for p in img_paths]
    gts = [
        cv2.imread(osp.join(data_root, 'ann_dir', n), cv2.IMREAD_UNCHANGED)
        for n in names
    ]
    for path, img, gt in zip(img_paths, images, gts):
        if img is None or gt is None:
            raise FileNotFoundError(f'{path} or its label is missing; '
                                    '--vis-images is larger than --num-val?')
    predictions, meta = [], None
    for title, cfg, ckpt in models:
        model = init_model(cfg, ckpt, device='cpu')
        meta = meta or model.dataset_meta
        predictions.append((title, [
            inference_model(model, p).pred_sem_seg.data[0].numpy()
            for p in img_paths
        ]))
    return draw_prediction_panel(images, gts, predictions, meta['classes'],
                                 meta['palette'], out_png, names)


def main(argv=None):
    parser = argparse.ArgumentParser(description='I2CKD CPU demo')
    parser.add_argument('--work-dir', default='work_dirs/toy_demo')
    parser.add_argument('--iters', type=int, default=1000,
                        help='training iterations of every student run')
    parser.add_argument('--teacher-iters', type=int, default=1500,
                        help='teacher iterations')
    parser.add_argument('--num-train', type=int, default=300)
    parser.add_argument('--num-val', type=int, default=60)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--skip-student-alone', action='store_true')
    parser.add_argument('--skip-cwd', action='store_true',
                        help='skip the I2CKD + CWD logit KD run')
    parser.add_argument('--vis-images', type=int, default=3,
                        help='val images (rows) in the prediction picture')
    parser.add_argument(
        '--threads', type=int, default=1,
        help='intra-op threads per run (OMP_NUM_THREADS). 1 by default: on '
        'a 2-core machine shared with other jobs, 2 OpenMP threads spin-'
        'waiting for each other made a step 10-30x slower; use 2+ on an '
        'idle machine')
    parser.add_argument(
        '--amp', action='store_true',
        help='train every model with automatic mixed precision '
        '(tools/train.py --amp; needs a GPU)')
    args = parser.parse_args(argv)
    if not 1 <= args.vis_images <= args.num_val:
        parser.error(f'--vis-images must be in 1..--num-val '
                     f'({args.num_val}), got {args.vis_images}')
    THREADS['n'] = args.threads
    TRAIN_FLAGS[:] = ['--amp'] if args.amp else []
    t_start = time.time()
    wd = osp.abspath(args.work_dir)
    data_root = osp.join(wd, 'data')
    teacher_iters = args.teacher_iters

    run('make_toy_data.py', [
        '--out', data_root, '--num-train',
        str(args.num_train), '--num-val',
        str(args.num_val), '--seed',
        str(args.seed)
    ])
    data = data_options(data_root) + [f'randomness.seed={args.seed}']

    rows = []  # (name, config, checkpoint, train seconds)
    t_ckpt, sec = train(TEACHER_CFG, osp.join(wd, 'teacher'), teacher_iters,
                        data)
    rows.append(('teacher R18-D8 (1/2 width)', TEACHER_CFG, t_ckpt, sec))
    pictured = []  # (column title, plain MMSeg config, checkpoint)
    if not args.skip_student_alone:
        ckpt, sec = train(STUDENT_CFG, osp.join(wd, 'student'), args.iters,
                          data)
        rows.append(('student R18-D8 (1/4 width) alone', STUDENT_CFG, ckpt,
                     sec))
        pictured.append(('student alone', STUDENT_CFG, ckpt))
    distill = data + [f'model.teacher_ckpt={t_ckpt}']
    runs = [('student + I2CKD (normalised + pull)', I2CKD_CFG, 'i2ckd',
             'student + I2CKD')]
    if not args.skip_cwd:
        runs.append(('student + I2CKD (normalised + pull) + CWD',
                     I2CKD_CWD_CFG, 'i2ckd_cwd', 'student + I2CKD + CWD'))
    export_dir = osp.join(wd, 'export')
    exported = []  # (column title, config, checkpoint, run name)
    for name, cfg, sub, title in runs:
        ckpt, sec = train(cfg, osp.join(wd, sub), args.iters, distill)
        rows.append((name, cfg, ckpt, sec))
        exported.append((title, cfg, ckpt, f'student_{sub}'))

    results = []
    for name, cfg, ckpt, sec in rows:
        opts = data + ([f'model.teacher_ckpt={t_ckpt}']
                       if cfg in (I2CKD_CFG, I2CKD_CWD_CFG) else [])
        miou = evaluate(cfg, ckpt,
                        osp.join(wd, 'test', osp.basename(osp.dirname(ckpt))),
                        opts)
        results.append((name, miou, sec))

    for title, cfg, ckpt, export_name in exported:
        run('export_student.py',
            [cfg, ckpt, export_dir, '--name', export_name])
        pictured.append((title, osp.join(export_dir, f'{export_name}.py'),
                         osp.join(export_dir, f'{export_name}.pth')))
    png = osp.join(wd, 'prediction_val.png')
    layout = predict_panel(pictured, data_root, png, args.vis_images)

    print('\n' + '=' * 64)
    print(f'ToyShapes val mIoU ({args.iters} iterations per student run, '
          f'teacher {teacher_iters})')
    print(f'| {"model":<42} | {"mIoU":>6} | {"train s":>7} |')
    print(f"|{'-' * 44}|{'-' * 8}|{'-' * 9}|")
    for name, miou, sec in results:
        print(f'| {name:<42} | {miou:6.2f} | {sec:7.0f} |')
    print(f'exported students: {export_dir}/student_i2ckd*.{{py,pth}} '
          '(plain MMSeg)')
    accs = ', '.join(f'{t} {np.mean(a):.1f} %'
                     for t, a in layout['pixel_accuracy'].items())
    print(f"prediction [{' | '.join(layout['titles'])}] on "
          f'{args.vis_images} val image(s): {png} (pixel accuracy: {accs})')
    print(f'demo wall time: {time.time() - t_start:.0f} s')


if __name__ == '__main__':
    main()
