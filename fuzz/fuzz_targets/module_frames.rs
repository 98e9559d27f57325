//! Fuzz target: whole frames into a live, initialized module. The module must
//! answer every frame (usually "refused") and never panic.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use postvault_module::{ManualClock, Module, ModuleClient, ModuleConfig, Request};
use postvault_seal::{SealConfig, open_provider};

struct Live {
    _dir: tempfile::TempDir,
    module: Arc<Mutex<Module>>,
}

fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let seal = open_provider(&SealConfig::File { key_path: dir.path().join("seal.key") }, true).unwrap();
        let mut cfg = ModuleConfig::new(&dir.path().join("m"), seal, Arc::new(ManualClock::new(1_790_000_000)));
        cfg.argon2 = postvault_crypto::password::Argon2Params::TEST;
        let module = Arc::new(Mutex::new(Module::open(cfg).unwrap()));
        let mut c = ModuleClient::local(module.clone()).unwrap();
        c.run(&Request::StartInitialization { time: 1_790_000_000 }).unwrap();
        Live { _dir: dir, module }
    })
}

fuzz_target!(|data: &[u8]| {
    let answer = live().module.lock().unwrap().handle(data);
    assert!(!answer.is_empty());
});
