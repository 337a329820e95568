"""The translator head."""
