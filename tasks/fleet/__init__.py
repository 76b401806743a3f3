"""Batches of checkpoints: what a SOURCE names, the items that travel to workers, and the cluster they run on."""
