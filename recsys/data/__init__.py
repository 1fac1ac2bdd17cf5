"""Data: the schema, readers of raw files, cleaning and storage of interaction events."""
