//! The pool's integration tests: real modules in temporary directories,
//! cheap Argon2id parameters, a manual clock.
mod common;
mod daemons;
mod faults;
mod flows;
mod waiting;
