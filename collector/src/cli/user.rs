//! `kaohe-collector user`: dashboard users — add, list, new password, disable.

use std::io::Write;

use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::{CliError, cli_actor, with_store};
use crate::config::CollectorConfig;
use crate::store::Store;
use crate::web::auth::{Role, argon2_hash};

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// 添加用户; 密码取自环境变量 KAOHE_PASSWORD, 否则在终端输入两次 (不回显), 非终端时读标准输入一行
    /// (add a user; password from KAOHE_PASSWORD, else asked twice on the terminal, else one line of stdin)
    Add {
        /// 登录名 (login name)
        name: String,
        /// province (省级管理员) | city (市级管理员) | unit (单位人员) | reviewer (评审人)
        #[arg(long)]
        role: String,
        /// 所属单位, city 与 unit 角色必填 (the user's unit; required for city and unit)
        #[arg(long)]
        unit: Option<String>,
        /// 显示名称, 如 张三 (shown and prefilled as reviewer)
        #[arg(long)]
        display_name: Option<String>,
    },
    /// 列出用户 (list users)
    List,
    /// 修改密码, 并结束该用户的所有会话 (set a new password; ends the user's sessions)
    Passwd { name: String },
    /// 停用用户, 并结束其会话 (disable a user and end its sessions)
    Disable { name: String },
}

impl UserAction {
    pub(super) fn run(self, config: &CollectorConfig, now: DateTime<Utc>, out: &mut dyn Write) -> Result<(), CliError> {
        // The password is read before the store is opened, as a person types it.
        let password = match &self {
            UserAction::Add { .. } | UserAction::Passwd { .. } => Some(read_new_password()?),
            _ => None,
        };
        with_store(
            config,
            |store| async move { self.apply(&store, password, now, out).await },
        )
    }

    async fn apply(
        self,
        store: &Store,
        password: Option<String>,
        now: DateTime<Utc>,
        out: &mut dyn Write,
    ) -> Result<(), CliError> {
        let hashed = |p: Option<String>| argon2_hash(&p.unwrap_or_default()).map_err(|e| CliError::Hash(Box::new(e)));
        match self {
            UserAction::Add {
                name,
                role,
                unit,
                display_name,
            } => {
                let role = Role::parse(role.trim()).ok_or_else(|| {
                    CliError::Usage(format!(
                        "角色 {role} 无法识别, 应为 province (省级管理员)、city (市级管理员)、unit (单位人员) 或 reviewer (评审人) (unknown role)"
                    ))
                })?;
                let hash = hashed(password)?;
                store
                    .add_user(&name, &hash, role, unit.as_deref(), display_name.as_deref(), now)
                    .await?;
                let detail = serde_json::json!({ "user": name, "role": role.as_str(), "unit": unit }).to_string();
                store
                    .audit(now, &cli_actor(), "user.add", unit.as_deref(), &detail)
                    .await?;
                let _ = writeln!(
                    out,
                    "已添加用户 (user added): {name} ({} {})",
                    role.label_zh(),
                    role.as_str()
                );
            }
            UserAction::List => {
                let users = store.users().await?;
                if users.is_empty() {
                    let _ = writeln!(out, "尚无用户; 用 user add 添加第一个省级管理员 (no users yet)");
                }
                for u in users {
                    let state = if u.disabled_at.is_some() {
                        "已停用 disabled"
                    } else {
                        "有效 active"
                    };
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{state}",
                        u.name,
                        u.role.as_str(),
                        u.unit_id.as_deref().unwrap_or("-"),
                        u.display_name.as_deref().unwrap_or("-")
                    );
                }
            }
            UserAction::Passwd { name } => {
                let hash = hashed(password)?;
                if !store.set_password(&name, &hash).await? {
                    return Err(CliError::Usage(format!("用户 {name} 不存在 (no such user)")));
                }
                let detail = serde_json::json!({ "user": name }).to_string();
                store.audit(now, &cli_actor(), "user.passwd", None, &detail).await?;
                let _ = writeln!(
                    out,
                    "已修改密码, 该用户需重新登录 (password set; sessions ended): {name}"
                );
            }
            UserAction::Disable { name } => {
                if !store.disable_user(&name, now).await? {
                    return Err(CliError::Usage(format!(
                        "没有可停用的用户 {name} (no such active user)"
                    )));
                }
                let detail = serde_json::json!({ "user": name }).to_string();
                store.audit(now, &cli_actor(), "user.disable", None, &detail).await?;
                let _ = writeln!(out, "已停用用户 (user disabled): {name}");
            }
        }
        Ok(())
    }
}

/// A new password: `KAOHE_PASSWORD`, else asked twice on the terminal without echo (via
/// `stty`), else one line of standard input.
fn read_new_password() -> Result<String, CliError> {
    use std::io::{BufRead, IsTerminal};
    let password = if let Ok(p) = std::env::var("KAOHE_PASSWORD") {
        p
    } else if std::io::stdin().is_terminal() {
        let first = prompt_hidden("新密码 (new password): ")?;
        let second = prompt_hidden("再次输入 (again): ")?;
        if first != second {
            return Err(CliError::Usage("两次输入的密码不一致 (the passwords differ)".into()));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(unreadable)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    crate::web::auth::check_password(&password).map_err(|e| CliError::WeakPassword(Box::new(e)))?;
    Ok(password)
}

fn unreadable(e: std::io::Error) -> CliError {
    CliError::Usage(format!("无法读取密码 (cannot read the password): {e}"))
}

fn prompt_hidden(prompt: &str) -> Result<String, CliError> {
    use std::io::BufRead;
    eprint!("{prompt}");
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
            .is_ok_and(|s| s.success())
    };
    let hidden = stty("-echo");
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if hidden {
        stty("echo");
    }
    eprintln!();
    read.map_err(unreadable)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
