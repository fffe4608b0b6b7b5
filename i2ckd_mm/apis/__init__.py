"""Library functions behind the command-line tools."""
from .export import export_student, student_config
from .toy_data import make_toy_shapes, toy_configs

__all__ = ['export_student', 'make_toy_shapes', 'student_config', 'toy_configs']
