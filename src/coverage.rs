//! Per-grid coverage figures from image records and the run record. Pure fold, no I/O.
