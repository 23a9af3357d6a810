"""Generated from the .proto file beside it by `make proto`; do not edit."""
