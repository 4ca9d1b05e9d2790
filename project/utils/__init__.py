"""Small shared utilities: process-group communication."""
