"""Write the ToyShapes synthetic segmentation dataset to disk.

    python tools/make_toy_data.py [--out data/toyshapes] [--num-train 300]
        [--num-val 60] [--size 64] [--seed 0]

Layout (MMSeg custom dataset, read by ``ToyShapesDataset``)::

    OUT/img_dir/{train,val}/00000.png  OUT/ann_dir/{train,val}/00000.png
"""
import argparse

from i2ckd_mm.toy import make_toy_shapes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/toyshapes',
                        help='dataset root (created)')
    parser.add_argument('--num-train', type=int, default=300)
    parser.add_argument('--num-val', type=int, default=60)
    parser.add_argument('--size', type=int, default=64,
                        help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    counts = make_toy_shapes(args.out, args.num_train, args.num_val,
                             args.size, args.seed)
    print(f'ToyShapes written to {args.out}: {counts}')


if __name__ == '__main__':
    main()
