"""The feed manager's web layer: REST API (and, later, console pages), thin over feeds/."""
