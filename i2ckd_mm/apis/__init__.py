"""The user-facing API: export a distilled student as a plain MMSeg model."""
from .export import export_student, student_config

__all__ = ['export_student', 'student_config']
