"""pandanode.services — the gRPC microservices and their shared runtime."""
