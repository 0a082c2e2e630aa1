"""The MaintenanceService and the six maintenance tasks (DESIGN.md §6), one module each."""
