//! The postvault command line.
fn main() {}
