from .class_iou_metric import CLASS_KEY, ClassIoUMetric

__all__ = ['CLASS_KEY', 'ClassIoUMetric']
