"""Stage 3, gate: the Great Expectations checkpoints on the raw tables; a failed gate stops the run before
anything is built or published."""
