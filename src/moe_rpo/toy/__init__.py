"""The paper's 2-D toy experiments: routing trajectories, expert collapse, the expert weighting
dilemma and the monotonicity barrier. Each module's `run(settings, seed)` returns
(arrays, records): numpy arrays for the figures and flat metric rows for the tables."""
