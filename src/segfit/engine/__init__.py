"""The one training engine: loop, checkpoints, optimizer and schedules, logging. Knows no model family."""
