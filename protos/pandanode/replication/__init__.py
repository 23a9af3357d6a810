"""Generated protobuf code of the pandanode API (see the .proto files beside it)."""
