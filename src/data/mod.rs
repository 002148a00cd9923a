//! Data sets: the 2D toy sets of the reference workflow (more to come).
