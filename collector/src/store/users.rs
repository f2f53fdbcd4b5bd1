//! Dashboard users and their sessions. Passwords arrive hashed (argon2id, `web::auth`);
//! a session is stored as its token's SHA-256 hash with its CSRF token.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Store, StoreError, check_text, from_millis, hash_secret, millis};

/// The longest a login lasts, however active (the idle expiry slides within it).
pub const MAX_SESSION: chrono::Duration = chrono::Duration::days(7);

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

    /// Rank for withdrawing entries: an entry may be withdrawn by its author's level or
    /// higher (province > city > reviewer > unit).
    pub fn level(self) -> u8 {
        match self {
            Role::Province => 3,
            Role::City => 2,
            Role::Reviewer => 1,
            Role::Unit => 0,
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

/// A logged-in request: the user and its session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub token_hash: String,
    pub csrf_token: String,
}

/// A query of users, its columns in the order of [`UserRow`] and then the password hash.
macro_rules! select_users {
    ($tail:literal) => {
        concat!(
            "SELECT name, role, unit_id, display_name, created_at, disabled_at, password_hash FROM users ",
            $tail
        )
    };
}

type UserRow = (String, String, Option<String>, Option<String>, i64, Option<i64>, String);

/// A stored user and its password hash.
fn user((name, role, unit_id, display_name, created_at, disabled_at, hash): UserRow) -> (User, String) {
    let user = User {
        name,
        // An unknown role in the database gets the least rights.
        role: Role::parse(&role).unwrap_or(Role::Unit),
        unit_id,
        display_name,
        created_at: from_millis(created_at),
        disabled_at: disabled_at.map(from_millis),
    };
    (user, hash)
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
        check_text("display_name", display_name.unwrap_or(""))?;
        if name.trim().is_empty()
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
            || name.chars().count() > 64
        {
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
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Invalid(format!("用户 {name} 已存在 (user exists)")));
        }
        Ok(())
    }

    pub async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(select_users!("WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| user(r).0))
    }

    /// The user and its password hash, if it exists and is not disabled.
    pub async fn login_user(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(select_users!("WHERE name = $1 AND disabled_at IS NULL"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(user))
    }

    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = sqlx::query_as(select_users!("ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| user(r).0).collect())
    }

    /// Sets a new password and ends the user's sessions. False if no such user.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        let change = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(password_hash)
            .bind(name);
        self.change_user(name, change).await
    }

    /// Disables a user and ends its sessions. False if no such active user.
    pub async fn disable_user(&self, name: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let change = sqlx::query("UPDATE users SET disabled_at = $1 WHERE name = $2 AND disabled_at IS NULL")
            .bind(millis(now))
            .bind(name);
        self.change_user(name, change).await
    }

    /// Runs `change` on a user and ends the user's sessions, in one transaction; whether
    /// the change found its user.
    async fn change_user(
        &self,
        name: &str,
        change: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = change.execute(&mut *tx).await?;
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
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_name, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash_secret(token))
        .bind(user_name)
        .bind(csrf_token)
        .bind(millis(now))
        .bind(millis(expires))
        .execute(&self.pool)
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
        // The user's columns as in `select_users!`, the session's CSRF token last.
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT u.name, u.role, u.unit_id, u.display_name, u.created_at, u.disabled_at, s.csrf_token \
             FROM sessions s JOIN users u ON u.name = s.user_name \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.created_at > $3 AND u.disabled_at IS NULL",
        )
        .bind(&token_hash)
        .bind(millis(now))
        // However active, a login lasts at most MAX_SESSION.
        .bind(millis(now - MAX_SESSION))
        .fetch_optional(&self.pool)
        .await?;
        let Some((user, csrf_token)) = row.map(user) else {
            return Ok(None);
        };
        let session = Session {
            user,
            csrf_token,
            token_hash: token_hash.clone(),
        };
        sqlx::query("UPDATE sessions SET expires_at = $1 WHERE token_hash = $2")
            .bind(millis(extend_to))
            .bind(&token_hash)
            .execute(&self.pool)
            .await?;
        Ok(Some(session))
    }

    /// Ends a session.
    pub async fn end_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
