from .metrics import CLASS_KEY, ClassIoUMetric

__all__ = ['CLASS_KEY', 'ClassIoUMetric']
