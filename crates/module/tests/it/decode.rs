//! A short, always-on fuzz of the command decoder and the frame handler
//! (the long runs use the libFuzzer targets in `fuzz/`).
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use crate::common::*;
use postvault_module::session::{RequestFrame, decode};
use postvault_module::{ModuleState, Request};

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Any bytes either decode to a request that round-trips, or fail cleanly.
    #[test]
    fn request_decoder_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(req) = Request::decode(&bytes) {
            prop_assert_eq!(Request::decode(&req.encode()).unwrap(), req);
        }
        let _ = decode::<RequestFrame>(&bytes);
    }
}

#[test]
fn random_frames_never_panic_and_change_nothing() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let before = std::fs::read(f.path().join("module/nvm.sealed")).unwrap();
    let log_len = f.log.lock().unwrap().len();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = proptest::collection::vec(any::<u8>(), 0..512);
    for _ in 0..3000 {
        let bytes = strategy.new_tree(&mut runner).unwrap().current();
        let answer = m.lock().unwrap().handle(&bytes);
        assert!(!answer.is_empty());
    }
    // Mutations of a valid sealed frame are refused too.
    let (frame, _) = c.wrap_raw(&Request::GetStatus, false).unwrap();
    for i in 0..frame.len() {
        let mut bad = frame.clone();
        bad[i] ^= 0x40;
        let answer = c.exchange_raw(&bad).unwrap();
        let decoded: postvault_module::session::ResponseFrame = decode(&answer).unwrap();
        assert!(
            matches!(
                decoded,
                postvault_module::session::ResponseFrame::Refused(_)
            ),
            "byte {i}"
        );
    }
    assert_eq!(
        std::fs::read(f.path().join("module/nvm.sealed")).unwrap(),
        before
    );
    assert_eq!(f.log.lock().unwrap().len(), log_len);
    // The first session's counter moved on with the unsent frame; use a new session.
    let mut c2 = client(&m);
    assert_eq!(status(&mut c2).current_state, ModuleState::Operational);
}
