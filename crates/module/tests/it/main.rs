//! Integration tests of the cryptographic module (one test binary; the
//! topics live in submodules).
mod common;

mod access;
mod audit;
mod crash;
mod decode;
mod keys;
mod lifecycle;
mod matrix;
mod nvm;
mod psd;
mod psd_ca;
mod psd_checkpoint;
mod psd_indicium;
mod psd_lifecycle;
mod psd_property;
mod psd_refund;
mod psd_users;
mod selftest;
mod session;
