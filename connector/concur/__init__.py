"""connector/concur package."""
