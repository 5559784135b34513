"""Generated protobuf and gRPC code (do not edit; see proto/generate.py)."""
