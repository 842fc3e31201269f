"""Pieces shared by several builders (no builder lives here)."""
