"""Interop tests: pandanode's protocol core against the real p2panda-js 0.8.1 (spec §11.8)."""
