"""The spec language: pydantic models of the TOML file, and loading with clear errors."""
