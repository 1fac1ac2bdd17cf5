"""Thin Ray entry points: each job parses arguments into a config, calls recsys and writes artifacts."""
