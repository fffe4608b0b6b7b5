from .distill_loss_weight_hook import DistillLossWeightScheduleHook  # noqa: F401
from .prototype_vis_hook import PrototypeVisHook  # noqa: F401
