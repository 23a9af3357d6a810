"""Tests of the ingest service over gRPC, with a real node (NATS JetStream, RocksDB, gRPC)."""
