"""Engine routing: the live view of each engine's workers, strategies, and the router itself.

``snapshot`` is the data a strategy sees, ``strategies`` the pure choice functions,
``live`` reads (and caches) the view from Redis, ``announce`` is the worker side that
writes it, and ``router`` picks the queue of a step when it becomes ready.
"""
