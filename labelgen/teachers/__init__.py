"""Teacher registry and adapters: `load_teacher(parse_teacher_spec("NAME=ADAPTER:SOURCE"))`.

Adapters (registry names): `depth-anything-v2` (relative and metric), `dpt`, `genpercept`,
`marigold`, `zoedepth` and `depth-pro` (metric), `hf`.
Importing this package registers all of them in `TEACHERS`.

Modules, from the leaves up: `spec` (the spec value and its syntax), `source` (where weights
come from: the located `Checkpoint`, and the `ResolvedTeacher` a job resolves once), `base` (the
`Teacher` interface and the registry), the adapters, `factory` (checks a spec against the
registry, resolves and loads it) and `checkpoints` (random checkpoints of each adapter's
architecture, at every size).
"""

from labelgen.teachers import (  # noqa: F401  (register)
    depth_anything,
    depth_pro,
    dpt,
    genpercept,
    hf,
    marigold,
    zoedepth,
)
from labelgen.teachers.base import TEACHERS, Teacher
from labelgen.teachers.checkpoints import (
    WRITERS,
    tiny_spec,
    write_checkpoint,
    write_tiny_checkpoint,
)
from labelgen.teachers.factory import (
    load_teacher,
    load_teacher_specs_yaml,
    parse_teacher_spec,
    resolve_teacher,
    valid_options,
)
from labelgen.teachers.source import ResolvedTeacher
from labelgen.teachers.spec import TeacherSpec

__all__ = [
    "TEACHERS",
    "WRITERS",
    "ResolvedTeacher",
    "Teacher",
    "TeacherSpec",
    "load_teacher",
    "load_teacher_specs_yaml",
    "parse_teacher_spec",
    "resolve_teacher",
    "tiny_spec",
    "valid_options",
    "write_checkpoint",
    "write_tiny_checkpoint",
]
