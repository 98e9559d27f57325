//! Seal providers (work in progress).
