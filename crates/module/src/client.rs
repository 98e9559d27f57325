//! The host side: [`ModuleClient`] talks to an in-process module or to a
//! module daemon through the same API and the same secure session.
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::ModuleError;
use crate::module::Module;
use crate::protocol::{Password, Reply, Request, Response};
use crate::session::{self, ClientSession, PendingOpen, ResponseFrame, SessionError};
use crate::types::Role;

/// Largest frame accepted on a socket (16 MiB).
pub const MAX_FRAME: usize = 16 << 20;

/// Why a call did not produce a module answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Socket error.
    #[error("connection to the module failed: {0}")]
    Io(std::io::Error),
    /// Session-level failure on our side (bad MAC on the response, ...).
    #[error("secure session: {0}")]
    Session(SessionError),
    /// The module refused the frame (session-level).
    #[error("the module refused the message: {0}")]
    Refused(String),
    /// The module executed the command and returned an error.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// The answer did not make sense.
    #[error("protocol error: {0}")]
    Protocol(String),
}

// Hand-written so the cause is part of the message but not also reported as
// a `source` (which would print it twice in an error chain).
impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<SessionError> for ClientError {
    fn from(e: SessionError) -> Self {
        ClientError::Session(e)
    }
}

/// Carries frames to a module and back.
pub trait Transport: Send {
    /// Sends one request frame and returns the response frame.
    fn exchange(&mut self, frame: &[u8]) -> Result<Vec<u8>, ClientError>;
    /// Takes the audit entries, `(seq, json line)`, that came back with the
    /// exchanges so far (a daemon's audit trailers); an in-process module
    /// has none to give (its host reads its audit sink).
    fn take_audit(&mut self) -> Vec<(u64, String)> {
        Vec::new()
    }
}

/// A module in this process.
#[derive(Clone)]
pub struct LocalTransport(pub Arc<Mutex<Module>>);

impl Transport for LocalTransport {
    fn exchange(&mut self, frame: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut m = self
            .0
            .lock()
            .map_err(|_| ClientError::Protocol("module lock poisoned".into()))?;
        Ok(m.handle(frame))
    }
}

/// A module daemon behind a Unix socket (`postvault module serve`).
pub struct SocketTransport {
    stream: UnixStream,
    /// Audit entries from the daemon's trailers, not yet taken.
    audit: Vec<(u64, String)>,
}

impl SocketTransport {
    /// Connects to the daemon's socket.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let s = UnixStream::connect(path).map_err(|e| {
            ClientError::Io(std::io::Error::new(
                e.kind(),
                format!(
                    "{}: {e} (is `postvault module serve --socket {}` running?)",
                    path.display(),
                    path.display()
                ),
            ))
        })?;
        Ok(Self {
            stream: s,
            audit: Vec::new(),
        })
    }
}

/// Writes one length-prefixed frame.
pub fn write_frame(w: &mut impl Write, frame: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(frame.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(frame)?;
    w.flush()
}

/// Reads one length-prefixed frame; `Ok(None)` on a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

impl Transport for SocketTransport {
    fn exchange(&mut self, frame: &[u8]) -> Result<Vec<u8>, ClientError> {
        let closed = || ClientError::Protocol("the module closed the connection".into());
        write_frame(&mut self.stream, frame)?;
        let answer = read_frame(&mut self.stream)?.ok_or_else(closed)?;
        // Every answer is followed by its audit trailer (see `daemon`).
        let trailer = read_frame(&mut self.stream)?.ok_or_else(closed)?;
        let entries: Vec<(u64, String)> = serde_json::from_slice(&trailer).map_err(|e| {
            ClientError::Protocol(format!("the module's audit trailer is malformed: {e}"))
        })?;
        self.audit.extend(entries);
        Ok(answer)
    }

    fn take_audit(&mut self) -> Vec<(u64, String)> {
        std::mem::take(&mut self.audit)
    }
}

/// A secure session with one module.
pub struct ModuleClient {
    transport: Box<dyn Transport>,
    session: ClientSession,
}

impl ModuleClient {
    /// Opens a secure session over `transport`.
    pub fn connect(mut transport: Box<dyn Transport>) -> Result<Self, ClientError> {
        let (pending, frame) = PendingOpen::start()?;
        let answer = transport.exchange(&session::encode(&frame))?;
        let answer: ResponseFrame = session::decode(&answer)?;
        if let ResponseFrame::Refused(why) = &answer {
            return Err(ClientError::Refused(why.clone()));
        }
        let session = pending.finish(&answer)?;
        Ok(Self { transport, session })
    }

    /// Opens a session with an in-process module.
    pub fn local(module: Arc<Mutex<Module>>) -> Result<Self, ClientError> {
        Self::connect(Box::new(LocalTransport(module)))
    }

    /// Opens a session with a module daemon.
    pub fn socket(path: &Path) -> Result<Self, ClientError> {
        Self::connect(Box::new(SocketTransport::connect(path)?))
    }

    /// Session ID.
    pub fn session_id(&self) -> u64 {
        self.session.session_id()
    }

    /// Sends a command, encrypted, and returns the reply, whose result may
    /// be a module error. Every request is encrypted, not only those that
    /// carry a secret: an encrypted frame is authenticated by its AES-256-GCM
    /// tag, which costs less than the HMAC-SHA-256 of a frame in the clear
    /// (a Create Indicia batch runs to hundreds of kilobytes each way).
    pub fn call(&mut self, req: &Request) -> Result<Reply, ClientError> {
        self.call_with(req, true)
    }

    /// Like [`Self::call`] with explicit choice of encryption.
    pub fn call_with(&mut self, req: &Request, encrypted: bool) -> Result<Reply, ClientError> {
        let (frame, counter) = self.session.wrap(&req.encode(), encrypted)?;
        let answer = self.transport.exchange(&session::encode(&frame))?;
        self.read_reply(&answer, counter)
    }

    /// Checks and decodes a response frame to request `counter`.
    fn read_reply(&self, answer: &[u8], counter: u64) -> Result<Reply, ClientError> {
        match session::decode::<ResponseFrame>(answer)? {
            ResponseFrame::Sealed(f) => {
                let plain = self.session.unwrap(f, counter)?;
                Ok(Reply::decode(plain.expose_secret())?)
            }
            ResponseFrame::Refused(why) => Err(ClientError::Refused(why)),
            ResponseFrame::Opened { .. } => Err(ClientError::Protocol(
                "unexpected Open Session answer".into(),
            )),
        }
    }

    /// Takes the audit entries, `(seq, json line)`, that a module daemon
    /// sent back with the answers so far (empty for an in-process module,
    /// whose host reads its audit sink instead).
    pub fn take_audit(&mut self) -> Vec<(u64, String)> {
        self.transport.take_audit()
    }

    /// Sends raw frame bytes and returns the raw answer (tests of the session layer).
    pub fn exchange_raw(&mut self, frame: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.transport.exchange(frame)
    }

    /// Protects a request without sending it (tests of replay and tampering).
    pub fn wrap_raw(
        &mut self,
        req: &Request,
        encrypted: bool,
    ) -> Result<(Vec<u8>, u64), ClientError> {
        let (frame, counter) = self.session.wrap(&req.encode(), encrypted)?;
        Ok((session::encode(&frame), counter))
    }

    /// Decodes an answer to a request made with [`Self::wrap_raw`].
    pub fn unwrap_raw(&self, answer: &[u8], counter: u64) -> Result<Reply, ClientError> {
        self.read_reply(answer, counter)
    }

    /// Sends a command and returns its response, turning a module error into `Err`.
    pub fn run(&mut self, req: &Request) -> Result<Response, ClientError> {
        Ok(self.call(req)?.result?)
    }

    /// Logs on; returns the role.
    pub fn logon(&mut self, user_id: &str, password: &Password) -> Result<Role, ClientError> {
        match self.run(&Request::Logon {
            user_id: user_id.into(),
            password: password.clone(),
        })? {
            Response::Role(r) => Ok(r),
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to Logon: {other:?}"
            ))),
        }
    }

    /// Logs off.
    pub fn logoff(&mut self) -> Result<(), ClientError> {
        self.run(&Request::Logoff).map(|_| ())
    }

    /// Closes the session.
    pub fn close(mut self) -> Result<(), ClientError> {
        self.run(&Request::CloseSession).map(|_| ())
    }
}
