"""Stage 2: the student model, cross-context losses and training from cached label shards."""
