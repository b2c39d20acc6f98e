"""Clients of ivcloud's HTTP APIs (console now; the App SDK in a later issue)."""
