"""Real parts for the end-to-end tests: HTTPS receivers, an SMTP server, the operator process."""
