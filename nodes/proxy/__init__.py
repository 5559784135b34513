"""The fault-injecting gRPC proxy (one per link): forwarding, faults, control API.

Read in this order: links (what a proxy sits on), fault (the interface),
faults/ (one kind per module, registered in faults.FAULTS), table (the shared
wrapper: probability, count, after_calls, the seeded generator), history
(faults.jsonl), forwarder (raw-bytes unary forwarding), control
(ProxyControl servicer), __main__ (the process).
"""
