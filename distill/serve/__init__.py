"""`distillery serve`: an OpenAI-compatible server over our engine (or transformers).

    from distill.serve import ServeConfig, create_app, serve

Files: app.py (config, routes, responses), batcher.py (queue, 429, batching worker),
protocol.py (wire format, streaming text, reasoning split), faults.py (--fault injection).
"""

from distill.serve.app import ServeConfig, create_app, serve

__all__ = ["ServeConfig", "create_app", "serve"]
