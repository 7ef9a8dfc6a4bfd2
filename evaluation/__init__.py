"""Zero-shot benchmark scoring of teachers and students with the published protocol."""
