"""The world study: the paper's ablations end to end on the procedural world, beside the priors
that ignore the image (`pipeline bench world`, `evaluation/bench/world.py`).

- `plan.py`: scales, student configurations, the bar the teachers must clear;
- `run.py`: the steps, each a command a user runs;
- `priors.py`: a constant, the image-blind ramp and the token-grid ceiling, scored like models;
- `report.py`: the verdict on the teachers and the tables.
"""
