"""Real datasets read from a local root (filled in below)."""
