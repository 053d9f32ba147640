"""The HTTP API: routes (app), request counting for shutdown (drain) and the access log."""
