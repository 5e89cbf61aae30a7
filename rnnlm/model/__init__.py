"""What a model is: configuration, parameters and class layout, the model file."""
