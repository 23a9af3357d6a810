"""Examples of pandanode.client: run them against `make run`."""
