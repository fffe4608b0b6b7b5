"""Write a synthetic segmentation dataset (ToyShapes or ToyStreets) to disk.

    python tools/make_toy_data.py [--dataset toyshapes] [--out DIR]
        [--num-train 300] [--num-val 60] [--num-test 200] [--seed 0]
        [--size 64]                      # ToyShapes: square images
        [--height 128 --width 256]       # ToyStreets

Layout (MMSeg custom dataset, read by ``ToyShapesDataset`` /
``ToyStreetsDataset``); val is for choices, test for reported numbers::

    OUT/img_dir/{train,val,test}/00000.png  OUT/ann_dir/{train,val,test}/...
"""
import argparse

from toy import make_toy_shapes, make_toy_streets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dataset', choices=('toyshapes', 'toystreets'),
                        default='toyshapes')
    parser.add_argument('--out', help='dataset root (created); default '
                        'data/<dataset>')
    parser.add_argument('--num-train', type=int, default=300)
    parser.add_argument('--num-val', type=int, default=60)
    parser.add_argument('--num-test', type=int, default=200)
    parser.add_argument('--size', type=int, default=64,
                        help='ToyShapes image side in pixels')
    parser.add_argument('--height', type=int, default=128,
                        help='ToyStreets image height')
    parser.add_argument('--width', type=int, default=256,
                        help='ToyStreets image width')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    out = args.out or f'data/{args.dataset}'
    if args.dataset == 'toyshapes':
        counts = make_toy_shapes(out, args.num_train, args.num_val,
                                 args.size, args.seed, args.num_test)
    else:
        counts = make_toy_streets(out, args.num_train, args.num_val,
                                  args.height, args.width, args.seed,
                                  args.num_test)
    print(f'{args.dataset} written to {out}: {counts}')


if __name__ == '__main__':
    main()
