"""NAT traversal tests: viewer and camera behind two NATs in network namespaces, ivcloud and
coturn on a simulated Internet between them (``netns.py`` builds it)."""
