"""Training algorithms for the lab's tiers."""
