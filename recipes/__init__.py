"""YAML recipes and the config loader that maps them onto typed dataclasses."""
