"""The ``canvasflow`` command: ``main`` builds the parser from one module per command group."""
