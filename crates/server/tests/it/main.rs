//! Bad input to the postal server's API (issue 4, item 10), and a failed
//! store commit (item 1): every kind of refusal gets a clear 4xx with a
//! message (a failed commit, a 500), changes nothing, and has a test
//! here. The server runs in-process ([`postvault_server::Server`])
//! over real HTTPS on 127.0.0.1 port 0; the customer side uses
//! `postvault-client` (the typed client with the certificate pinned, and
//! its customer-side crypto), and raw `reqwest` requests send what the
//! typed client cannot (malformed bodies, wrong content types).
//!
//! Each test asserts the status, the message text, and that nothing
//! changed: the meter's registers through the GET routes and its row,
//! ledger and money rows read from the store (a second handle on the same
//! SQLite file). The tests of a topic share one server (see `common`).
//!
//! Topics: `body` (malformed, unknown, missing, mistyped, oversized
//! bodies), `amounts` (purchase and postage amounts), `fields` (ZIPs,
//! dates, categories, hex), `auth` (passwords, tokens, expired sessions,
//! roles), `meters` (unknown meters, another customer's meter,
//! registration), `print` (replays, altered requests, stale challenges,
//! insufficient postage), `provider` (signatures, sequences, control
//! totals, refunds), `commit` (a store commit that fails: the client
//! gets a 500, nothing changed, and the next print recovers), `modules`
//! (a module that cannot write its NVM is taken out of service) and
//! `queue` (a full print queue: 503, nothing changed).

mod common;

mod amounts;
mod auth;
mod body;
mod commit;
mod fields;
mod meters;
mod modules;
mod print;
mod provider;
mod queue;
