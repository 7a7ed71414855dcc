//! Who may open the `/admin` namespace: the credentials of `--admin-username`
//! and `--admin-password` (a bcrypt hash, or the password itself), or a login
//! session a previous connection with them was given.
//!
//! The UI sends `{"username", "password"}` from its login form, and
//! `{"sessionId"}` when it reconnects by itself after a reload. Node's
//! `instrument` only takes bcrypt hashes; a plain password is accepted here
//! too (compared in constant time) and warned about at startup.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::AdminAuth;

/// The refusal's message, which the UI compares exactly (it then shows
/// "Invalid credentials").
pub(crate) const INVALID_CREDENTIALS: &str = "invalid credentials";

/// Login sessions kept at once; the oldest goes first.
const MAX_SESSIONS: usize = 256;

/// How long a login session lets a reconnecting UI in (Node's Redis store's TTL).
const SESSION_TTL: Duration = Duration::from_secs(24 * 3600);

/// The configured credentials.
pub(crate) struct Credentials {
    /// `None`: anyone.
    basic: Option<(String, Secret)>,
    /// Held while a bcrypt hash is computed (tens of milliseconds at cost 10,
    /// on the connection's task): a second attempt meanwhile is refused rather
    /// than made to wait, so that a flood of CONNECTs cannot occupy every
    /// worker thread of the runtime.
    verifying: Mutex<()>,
}

enum Secret {
    Bcrypt(String),
    Plain(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.basic.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

/// Whether `password` is a bcrypt hash (`$2a$`, `$2b$`, `$2y$`, cost, salt and
/// hash: 60 characters), as opposed to the password itself.
pub(crate) fn is_bcrypt_hash(password: &str) -> bool {
    let bytes = password.as_bytes();
    bytes.len() == 60
        && ["$2a$", "$2b$", "$2y$"]
            .iter()
            .any(|prefix| password.starts_with(prefix))
        && bytes[4..6].iter().all(u8::is_ascii_digit)
        && bytes[6] == b'$'
}

impl Credentials {
    pub(crate) fn new(auth: &AdminAuth) -> Credentials {
        let basic = match auth {
            AdminAuth::None => None,
            AdminAuth::Basic { username, password } => {
                let secret = if is_bcrypt_hash(password) {
                    Secret::Bcrypt(password.clone())
                } else {
                    Secret::Plain(password.clone())
                };
                Some((username.clone(), secret))
            }
        };
        Credentials {
            basic,
            verifying: Mutex::new(()),
        }
    }

    /// Whether anyone may come in.
    pub(crate) fn open(&self) -> bool {
        self.basic.is_none()
    }

    /// Whether the password is compared as plain text.
    pub(crate) fn plain_text(&self) -> bool {
        matches!(self.basic, Some((_, Secret::Plain(_))))
    }

    /// Whether the CONNECT payload `auth` carries the right user name and
    /// password (always, without credentials configured).
    pub(crate) fn check(&self, auth: &Value) -> bool {
        let Some((username, secret)) = &self.basic else {
            return true;
        };
        let (Some(given_user), Some(given_password)) = (
            auth.get("username").and_then(Value::as_str),
            auth.get("password").and_then(Value::as_str),
        ) else {
            return false;
        };
        if !constant_time_eq(given_user.as_bytes(), username.as_bytes()) {
            return false;
        }
        match secret {
            Secret::Plain(password) => {
                constant_time_eq(given_password.as_bytes(), password.as_bytes())
            }
            Secret::Bcrypt(hash) => {
                let Ok(_busy) = self.verifying.try_lock() else {
                    tracing::info!("admin login refused: another one is being verified");
                    return false;
                };
                bcrypt::verify(given_password, hash).unwrap_or(false)
            }
        }
    }
}

/// Compares without stopping at the first difference (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Login sessions: ids handed to a UI that logged in with the credentials,
/// which it sends back (`auth.sessionId`) when it reconnects after a reload.
#[derive(Default)]
pub(crate) struct Sessions {
    /// Oldest first, with when each was made.
    ids: Mutex<VecDeque<(String, Instant)>>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Sessions").field("count", &count).finish()
    }
}

impl Sessions {
    /// A fresh session id (16 hex characters, as Node's), valid from `now`.
    pub(crate) fn create(&self, now: Instant) -> String {
        let mut bytes = [0u8; 8];
        // The OS random source failing is not something a server can work around.
        getrandom::fill(&mut bytes).expect("the operating system provides randomness");
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if ids.len() >= MAX_SESSIONS {
            ids.pop_front();
        }
        ids.push_back((id.clone(), now));
        id
    }

    /// Whether the CONNECT payload `auth` names a session still valid at `now`.
    pub(crate) fn check(&self, auth: &Value, now: Instant) -> bool {
        let Some(given) = auth.get("sessionId").and_then(Value::as_str) else {
            return false;
        };
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.retain(|(_, made)| now.saturating_duration_since(*made) < SESSION_TTL);
        ids.iter().fold(false, |found, (id, _)| {
            found | constant_time_eq(id.as_bytes(), given.as_bytes())
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn basic(password: &str) -> Credentials {
        Credentials::new(&AdminAuth::Basic {
            username: "admin".into(),
            password: password.into(),
        })
    }

    /// bcryptjs's hash of "changeit" (cost 4), as Node's `instrument` takes it
    /// (`require("bcryptjs").hashSync("changeit", 4)`).
    const NODE_HASH: &str = "$2a$04$W1GrbMEfi7hEx.ZVYANowOqE./FgTdN2PZeFVcjzghSoMwXxxjULC";

    #[test]
    fn a_hash_made_by_bcryptjs_checks() {
        let creds = basic(NODE_HASH);
        assert!(creds.check(&json!({"username": "admin", "password": "changeit"})));
        assert!(!creds.check(&json!({"username": "admin", "password": "changeIt"})));
    }

    #[test]
    fn bcrypt_hashes_are_told_from_passwords() {
        assert!(is_bcrypt_hash(NODE_HASH));
        let node = NODE_HASH;
        assert!(is_bcrypt_hash(&node.replacen("$2a$", "$2y$", 1)));
        assert!(!is_bcrypt_hash("changeit"));
        assert!(!is_bcrypt_hash(&node[..59]));
        assert!(!is_bcrypt_hash(&node.replacen("$2a$", "$3a$", 1)));
    }

    #[test]
    fn a_bcrypt_hash_checks_the_password() {
        let hash = bcrypt::hash_with_salt("s3cret", 4, [7; 16])
            .expect("hash")
            .format_for_version(bcrypt::Version::TwoB);
        let creds = basic(&hash);
        assert!(!creds.plain_text());
        assert!(creds.check(&json!({"username": "admin", "password": "s3cret"})));
        assert!(!creds.check(&json!({"username": "admin", "password": "s3cre"})));
        assert!(!creds.check(&json!({"username": "root", "password": "s3cret"})));
        // The UI's reload without a session, a non-string password (Node never
        // answers that one), nothing at all.
        assert!(!creds.check(&json!({"sessionId": null})));
        assert!(!creds.check(&json!({"username": "admin", "password": 1})));
        assert!(!creds.check(&json!({})));
        // A hash from another implementation's prefix.
        let y = hash.replacen("$2b$", "$2y$", 1);
        assert!(basic(&y).check(&json!({"username": "admin", "password": "s3cret"})));
    }

    #[test]
    fn a_plain_password_is_compared_as_is() {
        let creds = basic("changeit");
        assert!(creds.plain_text());
        assert!(creds.check(&json!({"username": "admin", "password": "changeit"})));
        assert!(!creds.check(&json!({"username": "admin", "password": "changei"})));
        assert!(!creds.check(&json!({"username": "admin", "password": ""})));
    }

    #[test]
    fn no_auth_lets_anything_in() {
        let creds = Credentials::new(&AdminAuth::None);
        assert!(creds.open());
        assert!(creds.check(&json!({"sessionId": null})));
        assert!(creds.check(&json!({})));
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let id = sessions.create(t0);
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(sessions.check(&json!({ "sessionId": id }), t0));
        assert!(!sessions.check(&json!({"sessionId": "0000000000000000"}), t0));
        assert!(!sessions.check(&json!({"sessionId": null}), t0));
        assert!(!sessions.check(&json!({ "sessionId": id }), t0 + SESSION_TTL));

        let first = sessions.create(t0);
        for _ in 0..MAX_SESSIONS {
            sessions.create(t0);
        }
        assert!(
            !sessions.check(&json!({ "sessionId": first }), t0),
            "evicted"
        );
    }

    #[test]
    fn credentials_do_not_show_in_debug_output() {
        let text = format!("{:?}", basic("changeit"));
        assert!(!text.contains("changeit"), "{text}");
        let auth = AdminAuth::Basic {
            username: "admin".into(),
            password: "changeit".into(),
        };
        assert!(!format!("{auth:?}").contains("changeit"));
    }
}
