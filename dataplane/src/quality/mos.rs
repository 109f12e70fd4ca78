//! E-model MOS (in progress).
