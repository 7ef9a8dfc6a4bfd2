"""General tools the stages share and that know nothing of depth: atomic files, hashing, tar I/O,
registries, settings, work assignment across ranks and devices, and command-line helpers."""
