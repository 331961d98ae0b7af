"""Rollouts: the lab run as Agent Lightning rollouts, traced, rewarded and stored."""
