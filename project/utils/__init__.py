"""Small shared utilities: process-group communication and the training-metrics storage."""
