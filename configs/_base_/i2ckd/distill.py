# The distillation algorithm that every distillation config of configs/i2ckd/
# and configs/toy/ wraps its student in; not a config to train. Alone it holds
# no loss: a method's block adds its recorders, connectors, losses and
# mappings to the distiller (i2ckd_bottleneck.py, cwd_logits.py,
# kd_logits.py, mgd_layer4.py, dist_logits.py in this folder).
#
# I2CKDDistill, not MMRazor's SingleTeacherDistill, for every method: the
# teacher stays frozen and fully in eval mode, and the student starts from
# the weights it has when trained alone (same seed). A method alone and its
# combination with I2CKD so run the same algorithm and differ only in their
# losses. A plain method's config (e.g. kd_logits_*) is its I2CKD config with
# the distiller replaced by this one plus the method's block:
#
#   model = dict(distiller=dict(_base_.distill.distiller, _delete_=True,
#                               **_base_.kd))
distill = dict(
    _delete_=True,  # replaces the student recipe's model
    _scope_='mmrazor',
    type='I2CKDDistill',
    distiller=dict(type='GTAwareDistiller'))  # lets a loss take the labels

find_unused_parameters = True
# Batch 16 in every config (the paper family's); no automatic LR scaling.
auto_scale_lr = dict(enable=False, base_batch_size=16)
