from .gt_aware_distiller import GTAwareDistiller

__all__ = ['GTAwareDistiller']
