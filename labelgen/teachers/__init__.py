"""Teacher registry and adapters: `load_teacher(parse_teacher_spec("NAME=ADAPTER:SOURCE"))`.

Adapters (registry names): `depth-anything-v2`, `dpt`, `genpercept`, `marigold`, `hf`.
Importing this package registers all of them in `TEACHERS`.
"""

from labelgen.teachers import depth_anything, dpt, genpercept, hf, marigold  # noqa: F401  (register)
from labelgen.teachers.base import TEACHERS, Teacher
from labelgen.teachers.spec import (
    TeacherSpec,
    load_teacher,
    load_teacher_specs_yaml,
    parse_teacher_spec,
    valid_options,
    weights_identity,
)
from labelgen.teachers.tiny import TINY_WRITERS, tiny_spec, write_tiny_checkpoint

__all__ = [
    "TEACHERS",
    "TINY_WRITERS",
    "Teacher",
    "TeacherSpec",
    "load_teacher",
    "load_teacher_specs_yaml",
    "parse_teacher_spec",
    "tiny_spec",
    "valid_options",
    "weights_identity",
    "write_tiny_checkpoint",
]
