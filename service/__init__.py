"""The lead-enrichment API (the system under test), re-created from the Rust original."""

SERVICE_NAME = "c2s-enrichment-api"
__version__ = "0.1.0"
