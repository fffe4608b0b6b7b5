"""Export the student of a distillation run as a plain MMSeg model.

    python tools/export_student.py CONFIG CHECKPOINT OUT_DIR [--name student]
        [--trust-checkpoint]

Writes OUT_DIR/NAME.pth (student weights, ``architecture.`` removed, plain
metadata: loads with ``torch.load(weights_only=True)``) and OUT_DIR/NAME.py
(student model + test pipeline, MMSeg types only). Use them with
``mmseg.apis.init_model(NAME.py, NAME.pth)`` or MMSeg's tools/test.py, with
no i2ckd_mm installed.
"""
import argparse

import i2ckd_mm  # noqa: F401,I001  (compat shims + registrations first)
from i2ckd_mm.apis import export_student


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a distilled student as a plain MMSeg model')
    parser.add_argument('config', help='the distillation config of the run')
    parser.add_argument('checkpoint', help='the distillation checkpoint')
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument('--name', default='student',
                        help='file stem of the outputs')
    parser.add_argument(
        '--trust-checkpoint', action='store_true',
        help='unpickle CHECKPOINT fully (torch.load(weights_only=False)). '
        'Not needed for MMEngine run checkpoints, which load with '
        'weights_only=True; only for a file from a source you trust: '
        'unpickling can run code')
    args = parser.parse_args(argv)
    ckpt, cfg = export_student(args.checkpoint, args.config, args.out_dir,
                               args.name, trusted=args.trust_checkpoint)
    print(f'exported student: {ckpt} + {cfg}')


if __name__ == '__main__':
    main()
