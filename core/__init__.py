"""pandanode.core — the pure p2panda 0.8 protocol library (no I/O)."""
