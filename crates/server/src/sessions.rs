//! Recently checked bearer sessions, kept in memory for a moment so that a
//! busy client (a print every few milliseconds) does not cost a store read
//! per request.
//!
//! A copy is served for at most [`FRESH_FOR`] after it was read from the
//! store; then the store is read again. So this process sees its own
//! logoffs and lock-outs at once (it forgets the copies), and another
//! server process's logoff or lock-out on a shared store within
//! [`FRESH_FOR`]. A copy that looks idle beyond the timeout is read again
//! before the session is expired, because another server may have
//! recorded activity since. The map holds token hashes, never tokens, and
//! accounts without their password hashes (`api::read_session` drops
//! them).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postvault_store::{Account, Session};

/// How long a session read from the store is used without reading it again.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(1);

/// At most this many sessions are kept (stale copies are dropped when it
/// is full, then everything if need be).
const MAX_ENTRIES: usize = 65_536;

/// One kept session and its account, as read at `read_at`.
struct Entry {
    session: Session,
    account: Account,
    read_at: Instant,
}

/// The kept sessions, by token hash.
#[derive(Default)]
pub(crate) struct SessionCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl SessionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session and account for `token_hash`, if read less than
    /// [`FRESH_FOR`] ago.
    pub(crate) fn get(&self, token_hash: &[u8; 32]) -> Option<(Session, Account)> {
        let entries = self.lock();
        let e = entries.get(token_hash)?;
        (e.read_at.elapsed() < FRESH_FOR).then(|| (e.session.clone(), e.account.clone()))
    }

    /// Keeps what was just read from the store.
    pub(crate) fn put(&self, token_hash: [u8; 32], session: Session, account: Account) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&token_hash) {
            // Copies older than FRESH_FOR are never served: drop those
            // first, and everything only if all are fresh.
            entries.retain(|_, e| e.read_at.elapsed() < FRESH_FOR);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            token_hash,
            Entry {
                session,
                account,
                read_at: Instant::now(),
            },
        );
    }

    /// Records that the session's activity was written to the store (the
    /// copy's age is unchanged: it is still re-read on time).
    pub(crate) fn touched(&self, token_hash: &[u8; 32], last_active: i64) {
        if let Some(e) = self.lock().get_mut(token_hash) {
            e.session.last_active = e.session.last_active.max(last_active);
        }
    }

    /// Forgets one session (logoff, expiry).
    pub(crate) fn forget(&self, token_hash: &[u8; 32]) {
        self.lock().remove(token_hash);
    }

    /// Forgets every session of an account (it was just locked).
    pub(crate) fn forget_login(&self, login: &str) {
        self.lock().retain(|_, e| e.account.login != login);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(login: &str, last_active: i64) -> (Session, Account) {
        (
            Session {
                token_hash: vec![1; 32],
                login: login.into(),
                created: 0,
                last_active,
            },
            Account {
                login: login.into(),
                password_hash: String::new(),
                role: "customer".into(),
                failed_logons: 0,
                locked: false,
                created: 0,
            },
        )
    }

    #[test]
    fn a_copy_is_served_until_forgotten_and_touches_move_its_activity() {
        let cache = SessionCache::default();
        let (s, a) = session("alice", 100);
        cache.put([1; 32], s, a);
        assert_eq!(cache.get(&[1; 32]).unwrap().0.last_active, 100);
        assert!(cache.get(&[2; 32]).is_none());
        cache.touched(&[1; 32], 160);
        assert_eq!(cache.get(&[1; 32]).unwrap().0.last_active, 160);
        cache.touched(&[1; 32], 120);
        assert_eq!(cache.get(&[1; 32]).unwrap().0.last_active, 160);
        cache.forget(&[1; 32]);
        assert!(cache.get(&[1; 32]).is_none());
    }

    #[test]
    fn locking_an_account_forgets_all_its_sessions_only() {
        let cache = SessionCache::default();
        let (s, a) = session("alice", 1);
        cache.put([1; 32], s.clone(), a.clone());
        cache.put([2; 32], s, a);
        let (s, a) = session("bob", 1);
        cache.put([3; 32], s, a);
        cache.forget_login("alice");
        assert!(cache.get(&[1; 32]).is_none());
        assert!(cache.get(&[2; 32]).is_none());
        assert_eq!(cache.get(&[3; 32]).unwrap().1.login, "bob");
    }

    #[test]
    fn a_copy_older_than_fresh_for_is_not_served() {
        let cache = SessionCache::default();
        let (s, a) = session("alice", 1);
        cache.put([1; 32], s, a);
        cache.lock().get_mut(&[1; 32]).unwrap().read_at = Instant::now() - FRESH_FOR;
        assert!(cache.get(&[1; 32]).is_none());
    }

    #[test]
    fn a_full_map_drops_stale_copies_first() {
        let cache = SessionCache::default();
        let (s, a) = session("alice", 1);
        {
            let mut entries = cache.lock();
            let old = Instant::now() - FRESH_FOR;
            for i in 0..MAX_ENTRIES as u32 - 1 {
                let mut key = [0u8; 32];
                key[..4].copy_from_slice(&i.to_be_bytes());
                let entry = Entry {
                    session: s.clone(),
                    account: a.clone(),
                    read_at: old,
                };
                entries.insert(key, entry);
            }
        }
        cache.put([0xff; 32], s.clone(), a.clone());
        assert_eq!(cache.lock().len(), MAX_ENTRIES);
        // Full: the next one makes room by dropping the stale copies only.
        cache.put([0xfe; 32], s, a);
        assert_eq!(cache.lock().len(), 2);
        assert!(cache.get(&[0xff; 32]).is_some());
        assert!(cache.get(&[0xfe; 32]).is_some());
    }
}
