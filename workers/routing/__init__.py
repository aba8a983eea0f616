"""Engine routing: the live view of each engine's workers, strategies, and the router itself.

``snapshot`` is the data a strategy sees, ``strategies`` the pure choice functions,
``live`` reads (and caches) the view from the worker nodes' heartbeats
(``canvasflow.workers.beats``), ``router`` picks the queue of a step when it becomes
ready, ``takeover`` moves the steps of dead or slow engines (one input on every live engine:
``canvasflow.workflows.runtime.parallel``).
"""
