"""Other toolkits' files."""
