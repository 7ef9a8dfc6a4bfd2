"""Stage 1: teachers and label generation (writes label columns into a dataset directory)."""
