"""connector/zoho package."""
