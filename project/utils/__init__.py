"""Small shared utilities: process-group communication, the training-metrics storage, file
I/O (``PathManager``, atomic writes) and unwrapping distributed models."""
