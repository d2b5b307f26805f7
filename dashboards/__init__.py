"""Server-rendered dashboard pages (to come)."""
