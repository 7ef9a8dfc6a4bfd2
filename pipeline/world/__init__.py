"""A procedural world with exact depth: scenes, a ray caster, and rendered splits on disk.

- `generate.make_scene(seed, split, index)`: a scene (camera, sun, shapes), a pure function;
- `render.render(scene, height, width, box)`: RGB, exact z-depth and validity of any view;
- `files.render_world(out, images, settings)`: a split folder (`pipeline world render`);
- `scene`, `shapes`, `textures`, `camera`: the data and the maths they are made of.

Depth is z-depth in metres (along the optical axis) everywhere; see `camera` for conventions.
"""
