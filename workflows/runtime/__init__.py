"""The step-graph runtime: compile, dispatch, journal."""
