"""Order-free statistics: rank sketches, value sketches and difficulty from ranks."""
