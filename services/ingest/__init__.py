"""The ingest service: verifies every entry once, appends it to the log store, announces it."""
