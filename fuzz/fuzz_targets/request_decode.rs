//! Fuzz target: the command decoder. Any byte string must decode to a
//! request (which then re-encodes to a decodable request) or fail cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postvault_module::Request;
use postvault_module::session::{RequestFrame, decode};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = Request::decode(data) {
        let again = Request::decode(&req.encode()).expect("a decoded request re-encodes");
        assert_eq!(again, req);
    }
    let _ = decode::<RequestFrame>(data);
});
