//! Units of the hierarchy and their registries (备案).

use std::collections::HashMap;

use chrono::Utc;
use kaohe_rubric::registry::{EntryKind, Registry, RegistryEntry};

use super::{Store, StoreError, check_text, millis, no_such_unit};

/// A unit of the hierarchy: province → city → county bureau → township station, plus
/// units directly under the department.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unit {
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    pub kind: String,
    pub maintainer: Option<String>,
    pub responder: Option<String>,
    pub enrolled: Option<String>,
}

/// A query of units, its columns in the order of [`UnitRow`].
macro_rules! select_units {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, parent, kind, maintainer, responder, enrolled FROM units ",
            $tail
        )
    };
}

type UnitRow = (
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl From<UnitRow> for Unit {
    fn from((id, name, parent, kind, maintainer, responder, enrolled): UnitRow) -> Unit {
        Unit {
            id,
            name,
            parent,
            kind,
            maintainer,
            responder,
            enrolled,
        }
    }
}

/// A query of registry entries, its columns in the order of [`EntryRow`].
macro_rules! select_entries {
    ($tail:literal) => {
        concat!(
            "SELECT unit_id, line, kind, name, ip, mac, user_name, location, machine_room, url FROM registry_entries ",
            $tail
        )
    };
}

type EntryRow = (
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
);

/// A stored registry entry and its unit.
fn registry_entry((unit, line, kind, name, ip, mac, user, location, room, url): EntryRow) -> (String, RegistryEntry) {
    let entry = RegistryEntry {
        line: usize::try_from(line).unwrap_or(0),
        kind: match kind.as_str() {
            "app" => EntryKind::App,
            "portal" => EntryKind::Portal,
            _ => EntryKind::Device,
        },
        name,
        ip: ip.and_then(|i| i.parse().ok()),
        mac,
        user,
        location,
        machine_room: room != 0,
        url,
    };
    (unit, entry)
}

impl Store {
    /// Whether `unit` lies below `ancestor` in the hierarchy (not equal).
    pub async fn is_below(&self, unit: &str, ancestor: &str) -> Result<bool, StoreError> {
        let mut at = self.unit(unit).await?.and_then(|u| u.parent);
        let mut hops = 0;
        while let Some(p) = at {
            if p == ancestor {
                return Ok(true);
            }
            hops += 1;
            if hops > 32 {
                break;
            }
            at = self.unit(&p).await?.and_then(|u| u.parent);
        }
        Ok(false)
    }

    /// Adds a unit. Its parent, if any, must exist.
    pub async fn add_unit(&self, unit: &Unit) -> Result<(), StoreError> {
        for (field, text) in [
            ("id", Some(&unit.id)),
            ("name", Some(&unit.name)),
            ("kind", Some(&unit.kind)),
            ("maintainer", unit.maintainer.as_ref()),
            ("responder", unit.responder.as_ref()),
        ] {
            check_text(field, text.map_or("", String::as_str))?;
        }
        if let Some(p) = &unit.parent
            && self.unit(p).await?.is_none()
        {
            return Err(StoreError::Invalid(format!(
                "上级单位 {p} 不存在, 请先添加 (parent unit does not exist)"
            )));
        }
        let done = sqlx::query(
            "INSERT INTO units (id, name, parent, kind, maintainer, responder, enrolled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&unit.id)
        .bind(&unit.name)
        .bind(unit.parent.as_deref())
        .bind(&unit.kind)
        .bind(unit.maintainer.as_deref())
        .bind(unit.responder.as_deref())
        .bind(unit.enrolled.as_deref())
        .bind(millis(Utc::now()))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Invalid(format!("单位 {} 已存在 (unit exists)", unit.id)));
        }
        Ok(())
    }

    pub async fn unit(&self, id: &str) -> Result<Option<Unit>, StoreError> {
        let row: Option<UnitRow> = sqlx::query_as(select_units!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Unit::from))
    }

    pub async fn units(&self) -> Result<Vec<Unit>, StoreError> {
        let rows: Vec<UnitRow> = sqlx::query_as(select_units!("ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Unit::from).collect())
    }

    /// Fails with "no such unit" unless the unit exists.
    pub(super) async fn require_unit(&self, unit_id: &str) -> Result<(), StoreError> {
        match self.unit(unit_id).await? {
            Some(_) => Ok(()),
            None => Err(no_such_unit(unit_id)),
        }
    }

    /// Sets the profile fields scoring reads (maintainer, responder, enrolment day).
    pub async fn set_unit_profile(
        &self,
        unit_id: &str,
        maintainer: Option<&str>,
        responder: Option<&str>,
        enrolled: Option<&str>,
    ) -> Result<bool, StoreError> {
        check_text("maintainer", maintainer.unwrap_or(""))?;
        check_text("responder", responder.unwrap_or(""))?;
        let r = sqlx::query(
            "UPDATE units SET maintainer = COALESCE($1, maintainer), responder = COALESCE($2, responder), \
             enrolled = COALESCE($3, enrolled) WHERE id = $4",
        )
        .bind(maintainer)
        .bind(responder)
        .bind(enrolled)
        .bind(unit_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Replaces a unit's whole registry in one transaction: all of it or nothing.
    pub async fn replace_registry(&self, unit_id: &str, registry: &Registry) -> Result<usize, StoreError> {
        self.require_unit(unit_id).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM registry_entries WHERE unit_id = $1")
            .bind(unit_id)
            .execute(&mut *tx)
            .await?;
        for e in &registry.entries {
            let kind = match e.kind {
                EntryKind::Device => "device",
                EntryKind::App => "app",
                EntryKind::Portal => "portal",
            };
            sqlx::query(
                "INSERT INTO registry_entries (unit_id, line, kind, name, ip, mac, user_name, location, machine_room, url) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(unit_id)
            .bind(e.line as i64)
            .bind(kind)
            .bind(&e.name)
            .bind(e.ip.map(|ip| ip.to_string()))
            .bind(e.mac.as_deref())
            .bind(e.user.as_deref())
            .bind(e.location.as_deref())
            .bind(i64::from(e.machine_room))
            .bind(e.url.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(registry.entries.len())
    }

    /// A unit's registry as stored.
    pub async fn registry(&self, unit_id: &str) -> Result<Registry, StoreError> {
        let rows: Vec<EntryRow> = sqlx::query_as(select_entries!("WHERE unit_id = $1 ORDER BY line"))
            .bind(unit_id)
            .fetch_all(&self.pool)
            .await?;
        let entries = rows.into_iter().map(|row| registry_entry(row).1).collect();
        Ok(Registry { entries })
    }

    /// Every unit's registry, in one query (ranking).
    pub async fn registries(&self) -> Result<HashMap<String, Registry>, StoreError> {
        let rows: Vec<EntryRow> = sqlx::query_as(select_entries!("ORDER BY unit_id, line"))
            .fetch_all(&self.pool)
            .await?;
        let mut out: HashMap<String, Registry> = HashMap::new();
        for row in rows {
            let (unit, entry) = registry_entry(row);
            out.entry(unit).or_default().entries.push(entry);
        }
        Ok(out)
    }
}
