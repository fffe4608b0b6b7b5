"""ClassIoUMetric: MMSeg's IoUMetric plus each class's IoU, through the
path a config uses (registry build, ``process``, ``evaluate``)."""
import math

import pytest
import torch

import i2ckd_mm  # noqa: F401  (registers the metric)
from i2ckd_mm.evaluation import CLASS_KEY
from mmseg.registry import METRICS


def sample(pred, gt):
    return dict(pred_sem_seg=dict(data=torch.tensor([pred])),
                gt_sem_seg=dict(data=torch.tensor([gt])))


def test_each_class_iou_by_hand_over_two_images():
    """Image 1 (one ignored pixel, predicted 0): class a intersect 1 of
    union 2+2-1 = 3, class b 2 of 3+3-2 = 4. Image 2: a 1 of 1+2-1 = 2,
    b 2 of 3+2-2 = 3. Summed: a 2/5 = 40 %, b 4/7 = 57.14 %; c is in
    neither labels nor predictions: NaN, and the mean is over a and b
    (48.57, MMSeg's own rounding)."""
    metric = METRICS.build(dict(type='ClassIoUMetric', iou_metrics=['mIoU']))
    metric.dataset_meta = dict(classes=('a', 'b', 'c'))
    metric.process({}, [
        sample([[0, 1, 1], [1, 0, 0]], [[0, 0, 1], [1, 1, 255]]),
        sample([[1, 1], [1, 0]], [[1, 1], [0, 0]]),
    ])
    out = metric.evaluate(2)
    assert out[CLASS_KEY + 'a'] == 40.0
    assert out[CLASS_KEY + 'b'] == 57.14
    assert math.isnan(out[CLASS_KEY + 'c'])
    assert out['mIoU'] == pytest.approx(48.57)
