//! Group commit for ingest: reports that arrive while a commit is in flight are stored
//! together in the next transaction, so one fsync (SQLite) or one round of commits
//! (PostgreSQL) serves many agents. Each handler still answers only after its report's
//! transaction committed.
//!
//! A unit's reports always go to the same writer (by a hash of the unit id), so roll-up
//! and alert rows are never contended between writers of one process; a batch is sorted
//! by unit, agent and sequence so that collectors sharing PostgreSQL lock rows in one
//! order. If a batch fails, its reports are retried one by one, so one bad report cannot
//! hold back the others.

use std::hash::{Hash, Hasher};

use chrono::Utc;
use kaohe_rubric::Report;
use tokio::sync::{mpsc, oneshot};

use crate::store::{Backend, Store, StoreError, Stored};

/// The most reports one transaction takes.
const MAX_BATCH: usize = 256;

struct Job {
    report: Report,
    body: String,
    reply: oneshot::Sender<Result<Stored, String>>,
}

/// The ingest writers of one collector process.
#[derive(Debug, Clone)]
pub struct Writer {
    senders: Vec<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("report", &self.report.report_id).finish()
    }
}

impl Writer {
    /// Starts the writer tasks: one for SQLite (one writer at a time anyway), four for
    /// PostgreSQL. Needs a Tokio runtime.
    pub fn start(store: Store) -> Writer {
        let n = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        let senders = (0..n)
            .map(|_| {
                let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
                tokio::spawn(run(store.clone(), rx));
                tx
            })
            .collect();
        Writer { senders }
    }

    /// Stores a report; returns once it is committed (or failed).
    pub async fn store(&self, report: Report, body: String) -> Result<Stored, String> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        report.unit_id.hash(&mut h);
        let i = (h.finish() % self.senders.len() as u64) as usize;
        let (reply, answer) = oneshot::channel();
        self.senders[i]
            .send(Job { report, body, reply })
            .await
            .map_err(|_| "ingest writer stopped".to_string())?;
        answer.await.map_err(|_| "ingest writer stopped".to_string())?
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // In a task of its own, so that a panic while storing fails this batch (its
        // agents get 503 and retry) and not the writer.
        if let Err(e) = tokio::spawn(store_batch(store.clone(), jobs)).await {
            tracing::error!(error = %e, "a batch of reports failed; its agents will retry");
        }
    }
}

async fn store_batch(store: Store, mut jobs: Vec<Job>) {
    jobs.sort_by(|a, b| {
        (&a.report.unit_id, &a.report.agent_id, a.report.sequence).cmp(&(
            &b.report.unit_id,
            &b.report.agent_id,
            b.report.sequence,
        ))
    });
    let now = Utc::now();
    let batch: Vec<(&Report, &str)> = jobs.iter().map(|j| (&j.report, j.body.as_str())).collect();
    match store.insert_reports(&batch, now).await {
        Ok(results) => {
            for (job, stored) in jobs.into_iter().zip(results) {
                let _ = job.reply.send(Ok(stored));
            }
        }
        // A report that breaks the batch: store the others one by one. Not when the
        // database itself is away — then every one would wait for it again.
        Err(e) if jobs.len() > 1 && !unreachable(&e) => {
            tracing::warn!(error = %e, reports = jobs.len(), "batch not stored; storing its reports one by one");
            for job in jobs {
                let r = store
                    .insert_report(&job.report, &job.body, Utc::now())
                    .await
                    .map_err(|e| e.to_string());
                let _ = job.reply.send(r);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, reports = jobs.len(), "batch not stored; agents will retry");
            for job in jobs {
                let _ = job.reply.send(Err(e.to_string()));
            }
        }
    }
}

/// Whether the error says the database cannot be reached (rather than that a statement
/// failed).
fn unreachable(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Db(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_))
    )
}
