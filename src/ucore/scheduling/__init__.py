"""The PeriodicTaskScheduler: triggers, stored schedule state, catch-up, one fire per due time
across processes, no overlap (DESIGN.md §4)."""
