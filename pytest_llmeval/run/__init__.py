"""Running items (the worker side): collection into items, the batching engine, the generation
cache, energy meters, GPU pinning and xdist scheduling. The only folder besides the top-level
plugin modules that imports pytest.
"""
