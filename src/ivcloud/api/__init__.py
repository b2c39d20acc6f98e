"""HTTP + WebSocket edge: console API now; App API, push and media in later issues."""
