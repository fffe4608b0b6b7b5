from .connectors import *  # noqa: F401,F403
