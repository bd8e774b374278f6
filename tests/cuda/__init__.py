"""Tests that need a CUDA device (bf16, real generation, DDP on two GPUs); skipped without one."""
