"""Pieces every node shares: the process runtime, JSON logging, durable files, channels."""
