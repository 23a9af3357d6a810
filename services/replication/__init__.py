"""Replication: nodes sync their logs with each other (spec §8) and push new entries live."""
