//! `postvault module serve`: one module in its own process behind a Unix
//! socket. Each connection is one host; frames are length-prefixed. When a
//! connection ends, the sessions it opened are dropped and their users
//! logged off.
//!
//! Every answer frame is followed by an **audit trailer** frame: the JSON
//! array of `[seq, json line]` pairs of the audit entries the module stored
//! (in its own `audit.log`, and durably in its NVM until that log is synced)
//! while it handled the request, when the
//! module was opened with a [`Captured`] buffer; `[]` otherwise. A host
//! that keeps the audit elsewhere (the postal server's database) takes them
//! from there, as it does from an in-process module. The trailer is not
//! covered by the secure session; it needs none: each entry is hash-chained
//! to the one before and the chain is signed by the module, so the auditor
//! detects any change (`postvault audit verify`).
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::audit_sink::{Captured, drain};
use crate::client::{read_frame, write_frame};
use crate::module::Module;
use crate::session::{self, ResponseFrame};

/// Binds `socket` (mode 0600) and serves `module` until the process ends.
/// A stale socket file (nobody listening) is replaced; a live one is an error.
/// `captured` is the buffer the module's audit sink fills (a
/// [`crate::audit_sink::CaptureSink`]); each request's entries go back in
/// its trailer.
pub fn serve(
    module: Module,
    socket: &Path,
    captured: Option<Captured>,
    on_ready: impl FnOnce(),
) -> std::io::Result<()> {
    if socket.exists() {
        if UnixStream::connect(socket).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} is already served by another module process",
                    socket.display()
                ),
            ));
        }
        std::fs::remove_file(socket)?;
    }
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    let module = Arc::new(Mutex::new(module));
    on_ready();
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(_) => continue,
        };
        let module = Arc::clone(&module);
        let captured = captured.clone();
        std::thread::spawn(move || serve_connection(module, captured, conn));
    }
    Ok(())
}

fn serve_connection(module: Arc<Mutex<Module>>, captured: Option<Captured>, mut conn: UnixStream) {
    let mut opened = Vec::new();
    while let Ok(Some(frame)) = read_frame(&mut conn) {
        let (answer, audit) = match module.lock() {
            // The entries are taken under the module's lock: they are this
            // request's (and any the module made before it on its own).
            Ok(mut m) => (m.handle(&frame), captured.as_ref().map(drain)),
            Err(_) => break,
        };
        if let Ok(ResponseFrame::Opened { session_id, .. }) =
            session::decode::<ResponseFrame>(&answer)
        {
            opened.push(session_id);
        }
        let trailer = match serde_json::to_vec(&audit.unwrap_or_default()) {
            Ok(t) => t,
            Err(_) => break,
        };
        if write_frame(&mut conn, &answer).is_err() || write_frame(&mut conn, &trailer).is_err() {
            break;
        }
    }
    if let Ok(mut m) = module.lock() {
        for sid in opened {
            m.drop_session(sid);
        }
    }
}
