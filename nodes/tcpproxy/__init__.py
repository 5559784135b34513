"""A fault-injecting TCP proxy for protocols that are not gRPC (NATS, MQTT): Toxiproxy's model.

    proxy.py     the listener, its connections, the down switch
    link.py      one connection: two streams (upstream, downstream), reader + writer each
    table.py     the toxic table: validation, add / remove / heal, per-connection decisions
    toxic.py     the toxic interface (and the stream state a toxic sees)
    toxics/      one toxic per module, registered in toxics/__init__.py
    control.py   the ProxyControl servicer (the gRPC proxy's API, reused)
    __main__.py  ``python -m nodes.tcpproxy``
"""
