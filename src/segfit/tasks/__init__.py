"""What each CLI command does, as plain functions over a loaded spec (the CLI only parses and calls these)."""
