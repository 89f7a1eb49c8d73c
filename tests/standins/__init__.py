"""Stand-ins of outside systems: real HTTP servers the tests talk to."""
