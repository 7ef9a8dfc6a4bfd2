"""The student's (and Depth Anything teachers') architecture, built the same way by every stage,
and where a checkpoint's files come from (`source`: a directory or a hub id)."""
