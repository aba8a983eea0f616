"""The header a compensation message carries: ``{"run", "unit", "gen", "round"}``.

Its own module (importing nothing), so the decorator, the rollback that publishes the
message and the delivery that claims it share the name without importing each other.
"""

COMP_HEADER = "canvasflow_comp"
