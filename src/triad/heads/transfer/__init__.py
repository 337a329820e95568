"""The transfer head."""
