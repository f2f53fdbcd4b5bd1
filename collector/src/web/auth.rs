//! Dashboard users, passwords (argon2id), sessions, CSRF tokens, roles and what each role
//! may see and do.
//!
//! - A session is a random token in an `HttpOnly; Secure; SameSite=Strict` cookie; the
//!   database keeps only its SHA-256 hash. It lasts `session_hours` after the last request
//!   (sliding).
//! - Each session has a CSRF token: every POST carries it (form field `csrf` or header
//!   `X-CSRF-Token`), compared in constant time.
//! - Failed logins are counted per user name in this process: after 5 failures in a row the
//!   name is refused (429) for a minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{Store, StoreError, Unit, from_millis, hash_secret, millis};

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "__Host-kaohe_session";

/// The longest a login lasts, however active (the idle expiry slides within it).
pub const MAX_SESSION: chrono::Duration = chrono::Duration::days(7);

/// Failed logins in a row before a user name is refused for [`LOCKOUT`].
pub const MAX_FAILURES: u32 = 5;

/// How long a user name is refused after [`MAX_FAILURES`] failures.
pub const LOCKOUT: Duration = Duration::from_secs(60);

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Province administrator: every unit; reviews, overrides, waivers; the audit log.
    Province,
    /// City administrator: its unit's subtree; reads and enters reviews.
    City,
    /// Unit staff: its own unit only, read-only.
    Unit,
    /// Reviewer: reads every unit and enters reviews (not overrides or waivers).
    Reviewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "province" => Some(Role::Province),
            "city" => Some(Role::City),
            "unit" => Some(Role::Unit),
            "reviewer" => Some(Role::Reviewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Province => "province",
            Role::City => "city",
            Role::Unit => "unit",
            Role::Reviewer => "reviewer",
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            Role::Province => "省级管理员",
            Role::City => "市级管理员",
            Role::Unit => "单位人员",
            Role::Reviewer => "评审人",
        }
    }

    /// Whether this role is tied to one unit (and its subtree, for a city).
    pub fn needs_unit(self) -> bool {
        matches!(self, Role::City | Role::Unit)
    }
}

/// A dashboard user (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub unit_id: Option<String>,
    pub display_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

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

/// A logged-in request: the user and its session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub token_hash: String,
    pub csrf_token: String,
}

/// Hashes a password with argon2id (default parameters) into a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("无法计算密码散列 (cannot hash the password): {e}"))
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
    DUMMY.get_or_init(|| hash_password(&crate::ingest::random_secret()).unwrap_or_default())
}

/// Checks a new password; the message is Chinese first.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "密码至少 {MIN_PASSWORD_CHARS} 个字符 (the password needs at least {MIN_PASSWORD_CHARS} characters)"
        ));
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

/// Failed logins per user name, in this process, and a bound on password checks running
/// at once (each argon2 check takes ~19 MiB and a core for a moment).
#[derive(Debug)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    /// Password verifications allowed at once.
    pub verifying: tokio::sync::Semaphore,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter {
            failures: Mutex::new(HashMap::new()),
            verifying: tokio::sync::Semaphore::new(2),
        }
    }
}

impl LoginLimiter {
    /// Counts an attempt for `name` before its password is checked, so that parallel
    /// attempts cannot all slip past the limit; false when the name is locked now. A
    /// successful login clears the count ([`LoginLimiter::succeeded`]).
    pub fn attempt(&self, name: &str) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if f.len() > 100_000 {
            f.retain(|_, (_, last)| last.elapsed() < LOCKOUT);
        }
        let slot = f.entry(name.to_string()).or_insert((0, Instant::now()));
        if slot.1.elapsed() >= LOCKOUT {
            *slot = (0, Instant::now());
        }
        if slot.0 >= MAX_FAILURES {
            return false;
        }
        slot.0 += 1;
        slot.1 = Instant::now();
        true
    }

    pub fn succeeded(&self, name: &str) {
        let mut f = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f.remove(name);
    }
}

fn user_from(row: &AnyRow) -> Result<User, sqlx::Error> {
    let role: String = row.try_get("role")?;
    let created: i64 = row.try_get("created_at")?;
    let disabled: Option<i64> = row.try_get("disabled_at")?;
    Ok(User {
        name: row.try_get("name")?,
        // An unknown role in the database gets the least rights.
        role: Role::parse(&role).unwrap_or(Role::Unit),
        unit_id: row.try_get("unit_id")?,
        display_name: row.try_get("display_name")?,
        created_at: from_millis(created),
        disabled_at: disabled.map(from_millis),
    })
}

impl Store {
    /// Adds a dashboard user. City and unit users need an existing unit; others none.
    pub async fn add_user(
        &self,
        name: &str,
        password_hash: &str,
        role: Role,
        unit_id: Option<&str>,
        display_name: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if name.trim().is_empty() || name.chars().any(char::is_whitespace) || name.chars().count() > 64 {
            return Err(StoreError::Invalid(
                "用户名不能为空、不能含空白, 最长 64 个字符 (user name: 1–64 characters, no spaces)".into(),
            ));
        }
        match (role.needs_unit(), unit_id) {
            (true, None) => {
                return Err(StoreError::Invalid(format!(
                    "角色 {} 需要 --unit 指定所属单位 (role {} needs a unit)",
                    role.label_zh(),
                    role.as_str()
                )));
            }
            (false, Some(_)) => {
                return Err(StoreError::Invalid(format!(
                    "角色 {} 不属于某个单位, 请去掉 --unit (role {} takes no unit)",
                    role.label_zh(),
                    role.as_str()
                )));
            }
            (true, Some(u)) if self.unit(u).await?.is_none() => {
                return Err(StoreError::Invalid(format!("单位 {u} 不存在 (no such unit)")));
            }
            _ => {}
        }
        let done = sqlx::query(
            "INSERT INTO users (name, password_hash, role, unit_id, display_name, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(unit_id)
        .bind(display_name)
        .bind(millis(now))
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Invalid(format!("用户 {name} 已存在 (user exists)")));
        }
        Ok(())
    }

    pub async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(user_from).transpose()?)
    }

    /// The user and its password hash, if it exists and is not disabled.
    pub async fn login_user(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE name = $1 AND disabled_at IS NULL")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => {
                let hash: String = r.try_get("password_hash")?;
                Ok(Some((user_from(&r)?, hash)))
            }
            None => Ok(None),
        }
    }

    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(user_from).collect::<Result<_, _>>()?)
    }

    /// Sets a new password and ends the user's sessions. False if no such user.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let r = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(password_hash)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Disables a user and ends its sessions. False if no such active user.
    pub async fn disable_user(&self, name: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let r = sqlx::query("UPDATE users SET disabled_at = $1 WHERE name = $2 AND disabled_at IS NULL")
            .bind(millis(now))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Starts a session: stores the token's hash and its CSRF token.
    pub async fn create_session(
        &self,
        token: &str,
        user_name: &str,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // Old sessions of anyone are cleared now and then.
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(millis(now))
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_name, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash_secret(token))
        .bind(user_name)
        .bind(csrf_token)
        .bind(millis(now))
        .bind(millis(expires))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The live session of a token, its expiry pushed to `extend_to` (sliding).
    pub async fn session(
        &self,
        token: &str,
        now: DateTime<Utc>,
        extend_to: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError> {
        let token_hash = hash_secret(token);
        let row = sqlx::query(
            "SELECT s.csrf_token AS csrf_token, u.* FROM sessions s JOIN users u ON u.name = s.user_name \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.created_at > $3 AND u.disabled_at IS NULL",
        )
        .bind(&token_hash)
        .bind(millis(now))
        // However active, a login lasts at most MAX_SESSION.
        .bind(millis(now - MAX_SESSION))
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let session = Session {
            user: user_from(&row)?,
            csrf_token: row.try_get("csrf_token")?,
            token_hash: token_hash.clone(),
        };
        sqlx::query("UPDATE sessions SET expires_at = $1 WHERE token_hash = $2")
            .bind(millis(extend_to))
            .bind(&token_hash)
            .execute(self.pool())
            .await?;
        Ok(Some(session))
    }

    /// Ends a session.
    pub async fn end_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The unit and kind of a live entry, to check who may withdraw it.
    pub async fn entry_owner(&self, id: &str) -> Result<Option<(String, crate::review::EntryKind)>, StoreError> {
        let row = sqlx::query("SELECT unit_id, kind FROM manual_entries WHERE id = $1 AND withdrawn_at IS NULL")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => {
                let unit: String = r.try_get("unit_id")?;
                let kind: String = r.try_get("kind")?;
                Ok(Some((
                    unit,
                    crate::review::EntryKind::parse(&kind).unwrap_or(crate::review::EntryKind::Override),
                )))
            }
            None => Ok(None),
        }
    }
}
