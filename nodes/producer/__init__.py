"""The producer node: the application that emits orders into the broker.

Read in this order: ``workload`` (which orders exist), ``history`` (Jepsen's
invoke/ok/fail/info record), ``state`` (the persisted source position and the
idempotent producer's id/epoch/sequences), ``attempt`` (one recorded Produce
attempt), ``strategies`` (what each delivery mode persists when, and whether
it retries), ``producer`` (the batch loop), ``__main__`` (the click CLI and the
node shell).
"""
