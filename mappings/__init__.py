"""mappings package."""
