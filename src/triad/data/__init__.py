"""Shared data-step helpers: fetching with checksums, and validation that names what is wrong."""
