//! Alerts, kept once per unit and subject: recorded at ingest, read by the dashboard,
//! claimed and given back by the webhook push.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, from_millis, millis};
use crate::alerts::{Alert, AlertKind, OPEN_FOR};

/// A query of alerts, its columns in the order of [`AlertRow`].
macro_rules! select_alerts {
    ($tail:literal) => {
        concat!(
            "SELECT unit_id, key, kind, first_seen, last_seen, detail FROM alerts ",
            $tail
        )
    };
}

type AlertRow = (String, String, String, i64, i64, String);

fn alert((unit_id, key, kind, first_seen, last_seen, detail): AlertRow) -> Alert {
    Alert {
        unit_id,
        key,
        kind: AlertKind::parse(&kind),
        first_seen: from_millis(first_seen),
        last_seen: from_millis(last_seen),
        detail,
    }
}

impl Store {
    /// Records alerts inside an ingest transaction: new ones are inserted (to be
    /// notified), recurring ones get their last-seen time and detail updated.
    pub(super) async fn upsert_alerts(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        alerts: &[Alert],
    ) -> Result<(), StoreError> {
        for a in alerts {
            sqlx::query(
                "INSERT INTO alerts (unit_id, key, kind, first_seen, last_seen, detail) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (unit_id, key) DO UPDATE SET \
                 last_seen = CASE WHEN excluded.last_seen > alerts.last_seen THEN excluded.last_seen ELSE alerts.last_seen END, \
                 first_seen = CASE WHEN alerts.last_seen < excluded.first_seen - $7 THEN excluded.first_seen \
                     WHEN excluded.first_seen < alerts.first_seen THEN excluded.first_seen ELSE alerts.first_seen END, \
                 notified_at = CASE WHEN alerts.last_seen < excluded.first_seen - $7 THEN NULL ELSE alerts.notified_at END, \
                 detail = excluded.detail",
            )
            .bind(&a.unit_id)
            .bind(&a.key)
            .bind(a.kind.as_str())
            .bind(millis(a.first_seen))
            .bind(millis(a.last_seen))
            .bind(&a.detail)
            // Seen again after it had closed: a new occurrence, pushed again.
            .bind(OPEN_FOR.num_milliseconds())
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Alerts seen within [`OPEN_FOR`] of `now`, newest first; all units or the given ones.
    pub async fn open_alerts(&self, units: Option<&[String]>, now: DateTime<Utc>) -> Result<Vec<Alert>, StoreError> {
        let rows: Vec<AlertRow> = sqlx::query_as(select_alerts!(
            "WHERE last_seen >= $1 ORDER BY last_seen DESC, unit_id, key"
        ))
        .bind(millis(now - OPEN_FOR))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(alert)
            .filter(|a| units.is_none_or(|u| u.contains(&a.unit_id)))
            .collect())
    }

    /// Claims up to `limit` alerts not yet pushed to the webhook, marking them sent at
    /// `now`; several collectors never push the same alert twice.
    pub async fn claim_unnotified_alerts(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Alert>, StoreError> {
        let rows: Vec<AlertRow> =
            sqlx::query_as(select_alerts!("WHERE notified_at IS NULL ORDER BY first_seen LIMIT $1"))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::new();
        for a in rows.into_iter().map(alert) {
            let claimed = sqlx::query(
                "UPDATE alerts SET notified_at = $1 WHERE unit_id = $2 AND key = $3 AND notified_at IS NULL",
            )
            .bind(millis(now))
            .bind(&a.unit_id)
            .bind(&a.key)
            .execute(&self.pool)
            .await?;
            if claimed.rows_affected() == 1 {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Gives claimed alerts back (the webhook failed), to be tried again.
    pub async fn unclaim_alerts(&self, alerts: &[Alert]) -> Result<(), StoreError> {
        for a in alerts {
            sqlx::query("UPDATE alerts SET notified_at = NULL WHERE unit_id = $1 AND key = $2")
                .bind(&a.unit_id)
                .bind(&a.key)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}
