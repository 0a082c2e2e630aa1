"""The lowest layer: systems lifecycle, roles, config, locations, clock and logging."""
