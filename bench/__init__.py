"""CPU benchmark of the dense and compressed models (``python -m bench.run``); not a unit test."""
