"""What the canary router process and the engine that starts it agree on, without
importing the router (``reconciler.runtime.router`` imports aiohttp, about 0.2 s, which
every ``modelops`` command paid through ``reconciler.engine.routing``)."""

ROUTER_ID_ENV = "MODELOPS_ROUTER_ID"
"""In the router process: its id (``<deployment>-router-<hex>``); identifies it."""
STATUS_PATH = "/-/router"
"""The router's own status endpoint (JSON: backends, weights, counters)."""
