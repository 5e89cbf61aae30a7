"""Training: the epoch loop and its schedule, the batch step, the thread pool."""
