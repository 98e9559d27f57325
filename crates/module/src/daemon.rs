//! `postvault module serve`: one module in its own process behind a Unix
//! socket. Each connection is one host; frames are length-prefixed. When a
//! connection ends, the sessions it opened are dropped and their users
//! logged off.
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::client::{read_frame, write_frame};
use crate::module::Module;
use crate::session::{self, ResponseFrame};

/// Binds `socket` (mode 0600) and serves `module` until the process ends.
/// A stale socket file (nobody listening) is replaced; a live one is an error.
pub fn serve(module: Module, socket: &Path, on_ready: impl FnOnce()) -> std::io::Result<()> {
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
        std::thread::spawn(move || serve_connection(module, conn));
    }
    Ok(())
}

fn serve_connection(module: Arc<Mutex<Module>>, mut conn: UnixStream) {
    let mut opened = Vec::new();
    while let Ok(Some(frame)) = read_frame(&mut conn) {
        let answer = match module.lock() {
            Ok(mut m) => m.handle(&frame),
            Err(_) => break,
        };
        if let Ok(ResponseFrame::Opened { session_id, .. }) =
            session::decode::<ResponseFrame>(&answer)
        {
            opened.push(session_id);
        }
        if write_frame(&mut conn, &answer).is_err() {
            break;
        }
    }
    if let Ok(mut m) = module.lock() {
        for sid in opened {
            m.drop_session(sid);
        }
    }
}
