"""The discovery service: finds other nodes, keeps the peer table, announces peers on JetStream."""
