"""The harness: starts the cluster, drives faults, drains the pipeline, audits."""
