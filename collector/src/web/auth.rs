//! Dashboard users, passwords (argon2id), sessions, CSRF tokens, roles and what each role
//! may see and do.
//!
//! - A session is a random token in an `HttpOnly; Secure; SameSite=Strict` cookie; the
//!   database keeps only its SHA-256 hash. It lasts `session_hours` after the last request
//!   (sliding).
//! - Each session has a CSRF token: every POST carries it (form field `csrf` or header
//!   `X-CSRF-Token`), compared in constant time.
//! - Logins are limited in this process by [`LoginLimiter`]: per user name and source
//!   address (exponential back-off after 5 failures in a row), per source address (a budget
//!   of failures, so spraying many names is throttled), and overall (a rate of password
//!   checks); its memory is bounded whatever names are sent.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::Unit;
pub use crate::store::{MAX_SESSION, Role, Session, User};
use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "__Host-kaohe_session";

/// Shortest password accepted for a new password.
pub const MIN_PASSWORD_CHARS: usize = 10;

impl User {
    /// The name to show and to prefill as reviewer.
    pub fn shown_name(&self) -> &str {
        self.display_name
            .as_deref()
            .filter(|d| !d.trim().is_empty())
            .unwrap_or(&self.name)
    }

    /// The units this user may see, from all units.
    pub fn visible_units(&self, all: &[Unit]) -> Vec<Unit> {
        match (self.role, self.unit_id.as_deref()) {
            (Role::Province | Role::Reviewer, _) => all.to_vec(),
            (Role::Unit, Some(own)) => all.iter().filter(|u| u.id == own).cloned().collect(),
            (Role::City, Some(root)) => all.iter().filter(|u| in_subtree(all, &u.id, root)).cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the user may enter an entry of this kind (scope is checked apart).
    pub fn may_enter(&self, kind: crate::review::EntryKind) -> bool {
        use crate::review::EntryKind;
        match self.role {
            Role::Province => true,
            Role::City | Role::Reviewer => kind == EntryKind::Review,
            Role::Unit => false,
        }
    }
}

/// Whether `id` is `root` or below it, following parents through `all`.
pub fn in_subtree(all: &[Unit], id: &str, root: &str) -> bool {
    let mut at = Some(id.to_string());
    let mut steps = 0;
    while let Some(cur) = at {
        if cur == root {
            return true;
        }
        steps += 1;
        if steps > 64 {
            return false;
        }
        at = all.iter().find(|u| u.id == cur).and_then(|u| u.parent.clone());
    }
    false
}

/// Why a password is refused or cannot be hashed; the message is Chinese first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("密码至少 {MIN_PASSWORD_CHARS} 个字符 (the password needs at least {MIN_PASSWORD_CHARS} characters)")]
    TooShort,
    #[error("密码不能全是空白 (the password cannot be only whitespace)")]
    Blank,
    #[error("密码不能是同一个字符重复 (the password cannot be one character repeated)")]
    Repeated,
    #[error("密码过于常见, 请换一个 (this password is too common; choose another)")]
    Common,
    /// argon2's own error (its `password_hash::Error` is not a `std` error here, so it is
    /// kept as the value, not as a source).
    #[error("无法计算密码散列 (cannot hash the password): {0}")]
    Hash(argon2::password_hash::Error),
}

/// Hashes a password with argon2id (default parameters) into a PHC string.
pub fn argon2_hash(password: &str) -> Result<String, PasswordError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(PasswordError::Hash)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(PasswordError::Hash)
}

/// Checks a password against a stored PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// A hash that matches no password, verified when the user does not exist so that a wrong
/// name takes as long as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| argon2_hash(&crate::ingest::random_secret()).unwrap_or_default())
}

/// The most common passwords (and the shapes people give them), refused as new passwords.
const COMMON_PASSWORDS: &[&str] = &[
    "1234567890",
    "0123456789",
    "12345678910",
    "123456789a",
    "a123456789",
    "1234567890a",
    "qwertyuiop",
    "1q2w3e4r5t",
    "1qaz2wsx3edc",
    "qazwsxedc123",
    "password12",
    "password123",
    "password1234",
    "passw0rd123",
    "p@ssw0rd123",
    "admin12345",
    "admin123456",
    "administrator",
    "abc1234567",
    "abcd123456",
    "abcdefghij",
    "woaini1314",
    "woaini520",
    "iloveyou12",
    "1234qwerasdf",
    "qwer123456",
    "qwerty1234",
    "qwerty12345",
    "asdfghjkl1",
    "zxcvbnm123",
    "1111111111",
    "0000000000",
    "8888888888",
    "6666666666",
    "5201314520",
    "1314520520",
    "123123123123",
    "1234512345",
    "9876543210",
    "12344321ab",
    "aa12345678",
    "123456789abc",
    "changeme123",
    "welcome123",
    "letmein123",
    "sunshine12",
    "football12",
    "computer12",
    "kaohe12345",
    "kaohe123456",
    "sifating123",
    "admin@123456",
    "Admin@123",
    "admin888888",
];

/// Checks a new password: at least [`MIN_PASSWORD_CHARS`] characters, not only
/// whitespace, not one character repeated, not a common password.
pub fn check_password(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort);
    }
    if password.trim().is_empty() {
        return Err(PasswordError::Blank);
    }
    let mut chars = password.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return Err(PasswordError::Repeated);
    }
    let lower = password.to_lowercase();
    if COMMON_PASSWORDS.iter().any(|p| p.to_lowercase() == lower) {
        return Err(PasswordError::Common);
    }
    Ok(())
}

/// Constant-time equality of two strings (their lengths are not secret).
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a login attempt is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This name from this source failed too often: back off.
    NameBackoff { retry_after: Duration },
    /// This source spent its budget of failed logins.
    SourceBudget { retry_after: Duration },
    /// Too many password checks in the whole process.
    Global { retry_after: Duration },
}

impl Refusal {
    pub fn retry_after(self) -> Duration {
        match self {
            Refusal::NameBackoff { retry_after }
            | Refusal::SourceBudget { retry_after }
            | Refusal::Global { retry_after } => retry_after,
        }
    }

    /// Which limit, for the log.
    pub fn limit(self) -> &'static str {
        match self {
            Refusal::NameBackoff { .. } => "name+source back-off",
            Refusal::SourceBudget { .. } => "source budget",
            Refusal::Global { .. } => "global rate",
        }
    }
}

/// Failed logins in a row (per name and source) before the back-off starts.
pub const FREE_FAILURES: u32 = 5;
/// The first back-off; it doubles with each further failure, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Failed logins a source may spend at once, and how fast its budget comes back.
pub const SOURCE_BUDGET: f64 = 20.0;
pub const SOURCE_REFILL_PER_SEC: f64 = 1.0 / 30.0;
/// Password checks the whole process allows: a burst and a sustained rate.
pub const GLOBAL_BURST: f64 = 100.0;
pub const GLOBAL_PER_SEC: f64 = 20.0;
/// Failures of a name from a source are forgotten only after this long without one (a
/// success forgets them at once), so waiting out the longest back-off does not bring
/// back the free attempts.
pub const FORGIVE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Entries each table keeps at most (about 100 bytes each, whatever the names).
pub const MAX_ENTRIES: usize = 50_000;

/// A user name as the limiter keys it: a hash, so a 60,000-character name costs what a
/// short one does.
type NameKey = [u8; 16];

/// A short tag of a user name for the log (8 hex digits of its SHA-256): lines of the
/// same name can be matched without the name itself, which may be a mistyped password.
pub fn name_tag(name: &str) -> String {
    name_key(name)[..4].iter().map(|b| format!("{b:02x}")).collect()
}

fn name_key(name: &str) -> NameKey {
    let d = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d.as_ref()[..16]);
    k
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Instant,
    last: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: capacity,
            at: now,
        }
    }

    fn refill(&mut self, capacity: f64, per_sec: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * per_sec).min(capacity);
        self.at = now;
    }

    /// Time until one token is there.
    fn wait(&self, per_sec: f64) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens).max(0.0) / per_sec).ceil().max(1.0))
    }
}

#[derive(Debug)]
struct Limits {
    pairs: HashMap<(NameKey, IpAddr), Backoff>,
    sources: HashMap<IpAddr, Bucket>,
    global: Bucket,
}

/// Login limits of this process (see the module doc), and a bound on password checks
/// running at once (each argon2 check takes ~19 MiB and a core for a moment).
#[derive(Debug)]
pub struct LoginLimiter {
    limits: Mutex<Limits>,
    /// Password verifications allowed at once.
    pub verifying: tokio::sync::Semaphore,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter {
            limits: Mutex::new(Limits {
                pairs: HashMap::new(),
                sources: HashMap::new(),
                global: Bucket::full(GLOBAL_BURST, Instant::now()),
            }),
            verifying: tokio::sync::Semaphore::new(2),
        }
    }
}

impl LoginLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Limits> {
        self.limits.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts an attempt of `name` from `source` before its password is checked (so that
    /// parallel attempts cannot all slip past a limit), or says which limit refuses it.
    /// A success gives the source its token back ([`LoginLimiter::succeeded`]).
    pub fn attempt(&self, name: &str, source: IpAddr, now: Instant) -> Result<(), Refusal> {
        let source = crate::bodies::source_key(source);
        let key = (name_key(name), source);
        let mut l = self.lock();
        if let Some(b) = l.pairs.get(&key)
            && b.until > now
        {
            return Err(Refusal::NameBackoff {
                retry_after: (b.until - now).max(Duration::from_secs(1)),
            });
        }
        l.global.refill(GLOBAL_BURST, GLOBAL_PER_SEC, now);
        if l.global.tokens < 1.0 {
            return Err(Refusal::Global {
                retry_after: l.global.wait(GLOBAL_PER_SEC),
            });
        }
        if l.sources.len() >= MAX_ENTRIES && !l.sources.contains_key(&source) {
            prune_sources(&mut l.sources, now);
        }
        let bucket = l
            .sources
            .entry(source)
            .or_insert_with(|| Bucket::full(SOURCE_BUDGET, now));
        bucket.refill(SOURCE_BUDGET, SOURCE_REFILL_PER_SEC, now);
        if bucket.tokens < 1.0 {
            return Err(Refusal::SourceBudget {
                retry_after: bucket.wait(SOURCE_REFILL_PER_SEC),
            });
        }
        bucket.tokens -= 1.0;
        l.global.tokens -= 1.0;
        Ok(())
    }

    /// The password was wrong: one more failure for the name from this source; past
    /// [`FREE_FAILURES`] the back-off doubles.
    pub fn failed(&self, name: &str, source: IpAddr, now: Instant) {
        let source = crate::bodies::source_key(source);
        let key = (name_key(name), source);
        let mut l = self.lock();
        if l.pairs.len() >= MAX_ENTRIES && !l.pairs.contains_key(&key) {
            prune_pairs(&mut l.pairs, now);
        }
        let b = l.pairs.entry(key).or_insert(Backoff {
            failures: 0,
            until: now,
            last: now,
        });
        // A day without failures forgives the past.
        if now.saturating_duration_since(b.last) > FORGIVE_AFTER {
            b.failures = 0;
        }
        b.failures += 1;
        b.last = now;
        if b.failures >= FREE_FAILURES {
            let doublings = (b.failures - FREE_FAILURES).min(20);
            let wait = FIRST_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF);
            b.until = now + wait;
        }
    }

    /// The password was right: the name's failures from this source are forgotten and the
    /// source's token comes back.
    pub fn succeeded(&self, name: &str, source: IpAddr, now: Instant) {
        let source = crate::bodies::source_key(source);
        let mut l = self.lock();
        l.pairs.remove(&(name_key(name), source));
        if let Some(b) = l.sources.get_mut(&source) {
            b.refill(SOURCE_BUDGET, SOURCE_REFILL_PER_SEC, now);
            b.tokens = (b.tokens + 1.0).min(SOURCE_BUDGET);
        }
    }

    /// Entries held (pairs, sources), to test that memory stays bounded.
    pub fn entries(&self) -> (usize, usize) {
        let l = self.lock();
        (l.pairs.len(), l.sources.len())
    }
}

/// Drops back-offs that are over and forgiven; if that is not enough, the oldest half.
fn prune_pairs(pairs: &mut HashMap<(NameKey, IpAddr), Backoff>, now: Instant) {
    pairs.retain(|_, b| b.until > now || now.saturating_duration_since(b.last) < FORGIVE_AFTER);
    if pairs.len() >= MAX_ENTRIES {
        let mut ages: Vec<Instant> = pairs.values().map(|b| b.last).collect();
        ages.sort_unstable();
        let cut = ages[ages.len() / 2];
        pairs.retain(|_, b| b.last > cut);
    }
}

/// Drops full buckets (nothing to remember); if that is not enough, the oldest half.
fn prune_sources(sources: &mut HashMap<IpAddr, Bucket>, now: Instant) {
    sources.retain(|_, b| {
        b.refill(SOURCE_BUDGET, SOURCE_REFILL_PER_SEC, now);
        b.tokens < SOURCE_BUDGET
    });
    if sources.len() >= MAX_ENTRIES {
        let mut ages: Vec<Instant> = sources.values().map(|b| b.at).collect();
        ages.sort_unstable();
        let cut = ages[ages.len() / 2];
        sources.retain(|_, b| b.at > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_name_backs_off_per_source_doubling_and_forgets_after_success() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert!(l.attempt("admin", ip(1), t0).is_ok());
            l.failed("admin", ip(1), t0);
        }
        let e = l.attempt("admin", ip(1), t0).expect_err("backing off");
        assert_eq!(e.retry_after(), Duration::from_secs(1));
        assert!(l.attempt("admin", ip(2), t0).is_ok(), "another source is not affected");
        let t1 = t0 + Duration::from_secs(1);
        assert!(l.attempt("admin", ip(1), t1).is_ok(), "the back-off is over");
        l.failed("admin", ip(1), t1);
        assert_eq!(
            l.attempt("admin", ip(1), t1).expect_err("longer").retry_after(),
            Duration::from_secs(2),
            "it doubles"
        );
        let t2 = t1 + Duration::from_secs(2);
        assert!(l.attempt("admin", ip(1), t2).is_ok());
        l.succeeded("admin", ip(1), t2);
        assert!(l.attempt("admin", ip(1), t2).is_ok(), "a success forgets the failures");
    }

    #[test]
    fn the_back_off_never_exceeds_its_cap() {
        let l = LoginLimiter::default();
        let mut t = Instant::now();
        for _ in 0..60 {
            // Each attempt after the back-off ends, from a fresh source budget's view.
            l.failed("admin", ip(1), t);
            t += Duration::from_secs(1);
        }
        let wait = l.attempt("admin", ip(1), t).expect_err("locked").retry_after();
        assert!(wait <= MAX_BACKOFF, "{wait:?}");
        let after = t + MAX_BACKOFF;
        assert!(l.attempt("admin", ip(1), after).is_ok(), "never indefinitely");
        // Waiting out the cap does not bring back the free attempts: one more failure and
        // the name backs off the longest again.
        l.failed("admin", ip(1), after);
        assert_eq!(
            l.attempt("admin", ip(1), after)
                .expect_err("still backing off")
                .retry_after(),
            MAX_BACKOFF
        );
    }

    #[test]
    fn spraying_many_names_from_one_source_spends_its_budget() {
        let l = LoginLimiter::default();
        let t = Instant::now();
        let mut allowed = 0;
        for i in 0..1761 {
            let name = format!("user{i}");
            if l.attempt(&name, ip(7), t).is_ok() {
                allowed += 1;
                l.failed(&name, ip(7), t);
            }
        }
        assert_eq!(allowed, SOURCE_BUDGET as usize, "throttled after the budget");
        let e = l.attempt("user0", ip(8), t);
        assert!(e.is_ok(), "another source has its own budget");
        let later = t + Duration::from_secs(31);
        assert!(l.attempt("someone", ip(7), later).is_ok(), "the budget comes back");
    }

    #[test]
    fn the_whole_process_has_a_rate_of_password_checks() {
        let l = LoginLimiter::default();
        let t = Instant::now();
        let ok = (0..1000u32)
            .filter(|i| {
                let source = IpAddr::from(i.to_be_bytes());
                l.attempt("x", source, t).is_ok()
            })
            .count();
        assert_eq!(ok, GLOBAL_BURST as usize);
        assert!(
            l.attempt("x", ip(200), t + Duration::from_secs(1)).is_ok(),
            "it refills"
        );
    }

    #[test]
    fn memory_stays_bounded_whatever_names_and_sources_are_sent() {
        let l = LoginLimiter::default();
        let long = "x".repeat(60_000);
        let mut t = Instant::now();
        for i in 0..(2 * MAX_ENTRIES as u32 + 10) {
            let source = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            // A few enormous names, then many short ones: each costs one fixed-size entry.
            let name = if i < 500 { format!("{long}{i}") } else { format!("n{i}") };
            let _ = l.attempt(&name, source, t);
            l.failed(&name, source, t);
            t += Duration::from_millis(1);
        }
        let (pairs, sources) = l.entries();
        assert!(pairs <= MAX_ENTRIES && sources <= MAX_ENTRIES, "{pairs} {sources}");
    }

    #[test]
    fn weak_new_passwords_are_refused_with_the_reason() {
        for (pw, why) in [
            ("12345678", "至少 10"),
            ("          ", "空白"),
            ("aaaaaaaaaaaa", "同一个字符"),
            ("1234567890", "常见"),
            ("Password123", "常见"),
        ] {
            let e = check_password(pw).expect_err(pw).to_string();
            assert!(e.contains(why), "{pw}: {e}");
        }
        assert!(check_password("correct horse battery").is_ok());
    }
}
