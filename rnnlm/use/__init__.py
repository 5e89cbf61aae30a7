"""Using a trained model: evaluation, scoring, sampling, interpolation, the Python API."""
