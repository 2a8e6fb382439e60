"""TAXII 1.0/1.1: messages (parse/serialise) and, later, the HTTP client and CLIs."""
