"""CPU demo: toy data -> teacher -> I2CKD student -> mIoU table -> export.

    python tools/demo.py [--work-dir work_dirs/toy_demo] [--iters 1000]
        [--teacher-iters 1500] [--skip-student-alone] [--skip-cwd]

Steps (each training/test run is tools/train.py / tools/test.py in a
subprocess, so MMEngine's log with every loss term is shown live):

1. write ToyShapes (tools/make_toy_data.py) to WORK_DIR/data;
2. train the teacher (configs/toy/deeplabv3_r18-d8_...);
3. train the student alone (configs/toy/deeplabv3_r18w16-d8_...), for
   comparison (skip with --skip-student-alone);
4. distill the student with I2CKD (configs/toy/i2ckd_bottleneck_...) and
   with I2CKD + ChannelWiseDivergence logit KD (skip with --skip-cwd);
5. evaluate every model on the val split and print an mIoU table;
6. export the I2CKD student as a plain MMSeg model (tools/export_student.py)
   and run mmseg.apis.inference_model on one val image, saving
   [image | prediction | ground truth] as a coloured PNG.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

from i2ckd_mm.toy import toy_configs

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(HERE)
_TOY = toy_configs()
TEACHER_CFG, STUDENT_CFG = _TOY['teacher'], _TOY['student']
I2CKD_CFG, I2CKD_CWD_CFG = _TOY['i2ckd'], _TOY['i2ckd_cwd']


def data_options(data_root):
    """--cfg-options pointing every dataloader at ``data_root``."""
    return [
        f'{split}_dataloader.dataset.data_root={data_root}'
        for split in ('train', 'val', 'test')
    ]


def schedule_options(iters):
    """--cfg-options for a run of ``iters`` iterations (one val and one
    checkpoint at the end)."""
    return [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'param_scheduler.0.end={iters}',
        f'default_hooks.checkpoint.interval={iters}',
        f'default_hooks.logger.interval={max(1, min(20, iters // 5))}'
    ]


THREADS = {'n': 1}


def run(cmd):
    """Run a tool, streaming its output; fail loudly if it fails."""
    print('\n$ ' + ' '.join(cmd), flush=True)
    t0 = time.time()
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS['n']))
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    return time.time() - t0


def train(cfg, work_dir, iters, options):
    seconds = run([
        sys.executable,
        osp.join(HERE, 'train.py'), cfg, '--work-dir', work_dir,
        '--cfg-options'
    ] + schedule_options(iters) + options)
    ckpt = osp.join(work_dir, f'iter_{iters}.pth')
    if not osp.isfile(ckpt):
        raise FileNotFoundError(f'training did not write {ckpt}')
    return ckpt, seconds


def evaluate(cfg, ckpt, work_dir, options):
    """mIoU of ``ckpt`` on the val split (tools/test.py)."""
    run([
        sys.executable,
        osp.join(HERE, 'test.py'), cfg, ckpt, '--work-dir', work_dir,
        '--cfg-options'
    ] + options)
    # MMEngine's LoggerHook dumps the test metrics to <ts>/<ts>.json
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    if not logs:
        raise FileNotFoundError(f'no metrics json under {work_dir}')
    with open(logs[-1]) as f:
        metrics = json.loads(f.readlines()[-1])
    return float(metrics['mIoU'])


def predict_one(export_cfg, export_ckpt, data_root, out_png):
    """Plain MMSeg inference with the exported student; saves a PNG."""
    import cv2
    import numpy as np
    import i2ckd_mm  # noqa: F401  (mmcv.ops shim under mmcv-lite only)
    from mmseg.apis import inference_model, init_model

    model = init_model(export_cfg, export_ckpt, device='cpu')
    img_path = osp.join(data_root, 'img_dir', 'val', '00000.png')
    gt = cv2.imread(
        osp.join(data_root, 'ann_dir', 'val', '00000.png'),
        cv2.IMREAD_UNCHANGED)
    pred = inference_model(model, img_path).pred_sem_seg.data[0].numpy()
    palette = np.zeros((256, 3), np.uint8)
    palette[:len(model.dataset_meta['palette'])] = model.dataset_meta[
        'palette']
    palette[255] = 255  # ignore: white
    img = cv2.imread(img_path)
    panel = np.concatenate(
        [img, palette[pred][..., ::-1], palette[gt][..., ::-1]], axis=1)
    panel = cv2.resize(
        panel, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(out_png, panel)
    return float((pred[gt != 255] == gt[gt != 255]).mean() * 100)


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
    parser.add_argument(
        '--threads', type=int, default=1,
        help='intra-op threads per run (OMP_NUM_THREADS). 1 by default: on '
        'a 2-core machine shared with other jobs, 2 OpenMP threads spin-'
        'waiting for each other made a step 10-30x slower; use 2+ on an '
        'idle machine')
    args = parser.parse_args(argv)
    THREADS['n'] = args.threads
    t_start = time.time()
    wd = osp.abspath(args.work_dir)
    data_root = osp.join(wd, 'data')
    teacher_iters = args.teacher_iters

    run([
        sys.executable,
        osp.join(HERE, 'make_toy_data.py'), '--out', data_root,
        '--num-train', str(args.num_train), '--num-val',
        str(args.num_val), '--seed', str(args.seed)
    ])
    data = data_options(data_root) + [f'randomness.seed={args.seed}']

    rows = []  # (name, config, checkpoint, train seconds)
    t_ckpt, sec = train(TEACHER_CFG, osp.join(wd, 'teacher'), teacher_iters,
                        data)
    rows.append(('teacher R18-D8 (1/2 width)', TEACHER_CFG, t_ckpt, sec))
    if not args.skip_student_alone:
        ckpt, sec = train(STUDENT_CFG, osp.join(wd, 'student'), args.iters,
                          data)
        rows.append(('student R18-D8 (1/4 width) alone', STUDENT_CFG, ckpt,
                     sec))
    distill = data + [f'model.teacher_ckpt={t_ckpt}']
    runs = [('student + I2CKD (normalised + pull)', I2CKD_CFG, 'i2ckd')]
    if not args.skip_cwd:
        runs.append(('student + I2CKD (normalised + pull) + CWD',
                     I2CKD_CWD_CFG, 'i2ckd_cwd'))
    i2ckd_ckpt = None
    for name, cfg, sub in runs:
        ckpt, sec = train(cfg, osp.join(wd, sub), args.iters, distill)
        rows.append((name, cfg, ckpt, sec))
        i2ckd_ckpt = i2ckd_ckpt or ckpt

    results = []
    for name, cfg, ckpt, sec in rows:
        opts = data + ([f'model.teacher_ckpt={t_ckpt}']
                       if cfg in (I2CKD_CFG, I2CKD_CWD_CFG) else [])
        miou = evaluate(cfg, ckpt,
                        osp.join(wd, 'test', osp.basename(osp.dirname(ckpt))),
                        opts)
        results.append((name, miou, sec))

    export_dir = osp.join(wd, 'export')
    run([
        sys.executable,
        osp.join(HERE, 'export_student.py'), I2CKD_CFG, i2ckd_ckpt,
        export_dir, '--name', 'student_i2ckd'
    ])
    png = osp.join(wd, 'prediction_val_00000.png')
    acc = predict_one(
        osp.join(export_dir, 'student_i2ckd.py'),
        osp.join(export_dir, 'student_i2ckd.pth'), data_root, png)

    print('\n' + '=' * 64)
    print(f'ToyShapes val mIoU ({args.iters} iterations per student run, '
          f'teacher {teacher_iters})')
    print(f'| {"model":<42} | {"mIoU":>6} | {"train s":>7} |')
    print(f"|{'-' * 44}|{'-' * 8}|{'-' * 9}|")
    for name, miou, sec in results:
        print(f'| {name:<42} | {miou:6.2f} | {sec:7.0f} |')
    print(f'exported student: {export_dir}/student_i2ckd.{{py,pth}} '
          '(plain MMSeg)')
    print(f'prediction [image | prediction | ground truth]: {png} '
          f'(pixel accuracy {acc:.1f} %)')
    print(f'demo wall time: {time.time() - t_start:.0f} s')


if __name__ == '__main__':
    main()
