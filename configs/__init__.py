"""Training configs (Python files with get_config()); installed so they can import each other."""
