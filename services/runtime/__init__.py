"""The shared runtime: settings, server lifecycle, NATS, error mapping, events and logging."""
