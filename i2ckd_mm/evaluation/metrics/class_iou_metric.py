"""``ClassIoUMetric``: MMSeg's IoUMetric that also returns each class's IoU.

MMSeg's ``IoUMetric`` prints the per-class table to the log but returns only
the means; this metric also returns each class's IoU as numbers (they go to
the JSON MMEngine writes, e.g. for a per-class table). Use it in a config
with ``custom_imports = dict(imports=['i2ckd_mm'])`` and
``test_evaluator = dict(type='ClassIoUMetric', iou_metrics=['mIoU'])``.
"""
from typing import Dict

import numpy as np
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import METRICS

#: Prefix of the per-class keys: ``'IoU.<class name>'``.
CLASS_KEY = 'IoU.'


@METRICS.register_module()
class ClassIoUMetric(IoUMetric):
    """IoUMetric plus ``IoU.<class>`` (percent, 2 decimals; NaN where the
    class is in neither the labels nor the predictions)."""

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = super().compute_metrics(results)
        if self.format_only or not results:
            return metrics
        inter = sum(r[0] for r in results)
        union = sum(r[1] for r in results)
        iou = inter.double().numpy() / np.maximum(union.double().numpy(), 1)
        iou = np.where(union.numpy() > 0, iou, np.nan)
        for name, v in zip(self.dataset_meta['classes'], iou):
            metrics[CLASS_KEY + name] = float(np.round(v * 100, 2))
        return metrics
