"""Teacher registry and adapters: `load_teacher(parse_teacher_spec("NAME=ADAPTER:SOURCE"))`.

Adapters (registry names): `depth-anything-v2`, `dpt`, `genpercept`, `marigold`, `hf`.
Importing this package registers all of them in `TEACHERS`.

Modules, from the leaves up: `spec` (the spec value and its syntax), `source` (where weights
come from), `base` (the `Teacher` interface and the registry), the adapters, `factory` (checks
a spec against the registry, loads it) and `checkpoints` (random checkpoints of each adapter's
architecture, at every size).
"""

from labelgen.teachers import depth_anything, dpt, genpercept, hf, marigold  # noqa: F401  (register)
from labelgen.teachers.base import TEACHERS, Teacher
from labelgen.teachers.checkpoints import (
    WRITERS,
    tiny_spec,
    write_checkpoint,
    write_tiny_checkpoint,
)
from labelgen.teachers.factory import (
    input_interpolation,
    load_teacher,
    load_teacher_specs_yaml,
    parse_teacher_spec,
    valid_options,
    weights_identity,
)
from labelgen.teachers.spec import TeacherSpec

__all__ = [
    "TEACHERS",
    "WRITERS",
    "Teacher",
    "TeacherSpec",
    "input_interpolation",
    "load_teacher",
    "load_teacher_specs_yaml",
    "parse_teacher_spec",
    "tiny_spec",
    "valid_options",
    "weights_identity",
    "write_checkpoint",
    "write_tiny_checkpoint",
]
