"""Running chatstack: the local stack runner, and (later) nginx and compose rendering."""
