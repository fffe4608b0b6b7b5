"""Where the toy CPU configs (``configs/toy``) are, by dataset and role."""
import os.path as osp
from typing import Dict

#: The ToyShapes CPU configs (configs/toy/) by role.
TOY_CONFIG_NAMES = {
    'teacher': 'deeplabv3_r18-d8_1xb8-1500it_toyshapes-64x64.py',
    'student': 'deeplabv3_r18w16-d8_1xb8-1000it_toyshapes-64x64.py',
    'i2ckd': 'i2ckd_bottleneck_deeplabv3_r18-d8_deeplabv3_r18w16-d8_'
    '1xb8-1000it_toyshapes-64x64.py',
    'i2ckd_cwd': 'i2ckd-cwd_bottleneck-logits_deeplabv3_r18-d8_'
    'deeplabv3_r18w16-d8_1xb8-1000it_toyshapes-64x64.py',
}


def toy_configs() -> Dict[str, str]:
    """Absolute paths of the ToyShapes configs, keyed as TOY_CONFIG_NAMES.

    Found in the repository checkout (``configs/toy``) or, for a regular
    install, in the package's ``.mim/configs/toy``.
    """
    pkg = osp.dirname(osp.dirname(osp.abspath(__file__)))
    for root in (osp.join(osp.dirname(pkg), 'configs'),
                 osp.join(pkg, '.mim', 'configs')):
        toy = osp.join(root, 'toy')
        if osp.isdir(toy):
            return {k: osp.join(toy, v) for k, v in TOY_CONFIG_NAMES.items()}
    raise FileNotFoundError(
        f'configs/toy not found next to {pkg} nor in its .mim folder')
