"""The student's (and Depth Anything teachers') architecture, built the same way by every stage."""
