"""Model families: each builds its networks, loads weights and prepares inputs exactly as its reference does."""
