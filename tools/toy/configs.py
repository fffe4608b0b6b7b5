"""Where the toy CPU configs (``configs/toy``) are, by dataset and role."""
import os.path as osp
from typing import Dict

#: ``configs/toy`` of the checkout that holds this ``tools/toy``.
TOY_CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'toy')

#: Toy datasets -> (batch size, data part) of their config names.
TOY_DATASETS = {'toyshapes': ('1xb8', 'toyshapes-64x64'),
                'toystreets': ('1xb4', 'toystreets-128x256')}

#: Config file name of each role; ``{gpus}`` and ``{data}`` stand for the
#: dataset's parts in TOY_DATASETS.
TOY_CONFIG_NAMES = {
    'teacher': 'deeplabv3_r18-d8_{gpus}-1500it_{data}.py',
    'student': 'deeplabv3_r18w16-d8_{gpus}-1000it_{data}.py',
    'i2ckd': 'i2ckd_bottleneck_deeplabv3_r18-d8_deeplabv3_r18w16-d8_'
    '{gpus}-1000it_{data}.py',
    'i2ckd_cwd': 'i2ckd-cwd_bottleneck-logits_deeplabv3_r18-d8_'
    'deeplabv3_r18w16-d8_{gpus}-1000it_{data}.py',
    # the other distillation methods alone and with I2CKD (configs/i2ckd/
    # README.md, "Other distillation methods, alone and with I2CKD")
    'kd': 'kd_logits_deeplabv3_r18-d8_'
    'deeplabv3_r18w16-d8_{gpus}-1000it_{data}.py',
    'i2ckd_kd': 'i2ckd-kd_bottleneck-logits_deeplabv3_r18-d8_'
    'deeplabv3_r18w16-d8_{gpus}-1000it_{data}.py',
    'dist': 'dist_logits_deeplabv3_r18-d8_'
    'deeplabv3_r18w16-d8_{gpus}-1000it_{data}.py',
    'i2ckd_dist': 'i2ckd-dist_bottleneck-logits_deeplabv3_r18-d8_'
    'deeplabv3_r18w16-d8_{gpus}-1000it_{data}.py',
    'mgd': 'mgd_layer4_deeplabv3_r18-d8_'
    'deeplabv3_r18w16-d8_{gpus}-1000it_{data}.py',
    'i2ckd_mgd': 'i2ckd-mgd_bottleneck-layer4_deeplabv3_r18-d8_'
    'deeplabv3_r18w16-d8_{gpus}-1000it_{data}.py',
    'cwd': 'cwd_logits_deeplabv3_r18-d8_'
    'deeplabv3_r18w16-d8_{gpus}-1000it_{data}.py',
}


def toy_configs(dataset: str = 'toyshapes') -> Dict[str, str]:
    """Absolute paths of a toy dataset's configs (in :data:`TOY_CONFIG_DIR`),
    keyed as TOY_CONFIG_NAMES.

    Args:
        dataset (str): ``'toyshapes'`` or ``'toystreets'``.
    """
    if dataset not in TOY_DATASETS:
        raise ValueError(f'unknown toy dataset {dataset!r}; known: '
                         f'{sorted(TOY_DATASETS)}')
    gpus, data = TOY_DATASETS[dataset]
    return {k: osp.join(TOY_CONFIG_DIR, v.format(gpus=gpus, data=data))
            for k, v in TOY_CONFIG_NAMES.items()}
