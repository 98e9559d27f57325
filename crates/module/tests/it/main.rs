//! Integration tests of the cryptographic module (one test binary; the
//! topics live in submodules).
mod common;

mod crash;
mod decode;
mod lifecycle;
mod matrix;
