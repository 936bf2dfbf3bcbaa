"""The Project Manager agent (the `pma` role)."""
