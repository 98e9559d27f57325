//! The cryptographic module (work in progress).
