//! Group commit for ingest: reports that arrive while a commit is in flight are stored
//! together in the next transaction, so one fsync (SQLite) or one round of commits
//! (PostgreSQL) serves many agents. Each handler still answers only after its report's
//! transaction committed.
//!
//! A unit's reports always go to the same writer (by a hash of the unit id), so roll-up
//! and alert rows are never contended between writers of one process; a batch is sorted
//! by unit, agent and sequence so that collectors sharing PostgreSQL lock rows in one
//! order. If a batch fails (or panics), its reports are retried one by one, so one bad
//! report cannot hold back the others; a report the database refuses for its content (or
//! that panics alone) is a [`WriteError::Permanent`], which the agent is told not to retry.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::Utc;
use kaohe_rubric::Report;
use tokio::sync::{mpsc, oneshot};

use crate::store::{Backend, Store, StoreError, Stored};

/// The most reports one transaction takes.
const MAX_BATCH: usize = 256;

/// Why a report was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The database refuses this report's content and always will (a data or constraint
    /// error, or storing it panics): the agent must not retry it.
    #[error("{0}")]
    Permanent(String),
    /// Anything else: the database is away, busy, or the writer stopped; retry later.
    #[error("{0}")]
    Transient(String),
}

impl WriteError {
    fn of(e: &StoreError) -> WriteError {
        if permanent(e) {
            WriteError::Permanent(e.to_string())
        } else {
            WriteError::Transient(e.to_string())
        }
    }

    fn panicked() -> WriteError {
        WriteError::Permanent("内部错误 (internal error while storing this report)".into())
    }
}

type Item = (Arc<Report>, Arc<str>);
type Outcome = Result<Stored, WriteError>;

struct Job {
    item: Item,
    reply: oneshot::Sender<Outcome>,
}

/// The ingest writers of one collector process.
#[derive(Debug, Clone)]
pub struct Writer {
    senders: Vec<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("report", &self.item.0.report_id).finish()
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
    pub async fn store(&self, report: Report, body: impl Into<Arc<str>>) -> Outcome {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        report.unit_id.hash(&mut h);
        let i = (h.finish() % self.senders.len() as u64) as usize;
        let (reply, answer) = oneshot::channel();
        let stopped = || WriteError::Transient("ingest writer stopped".into());
        self.senders[i]
            .send(Job {
                item: (Arc::new(report), body.into()),
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
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
        jobs.sort_by(|a, b| {
            let (a, b) = (&a.item.0, &b.item.0);
            (&a.unit_id, &a.agent_id, a.sequence).cmp(&(&b.unit_id, &b.agent_id, b.sequence))
        });
        let items: Vec<Item> = jobs.iter().map(|j| j.item.clone()).collect();
        // In a task of its own, so that a panic while storing fails this batch and not
        // the writer.
        let results = match tokio::spawn(store_batch(store.clone(), items)).await {
            Ok(results) => results,
            Err(e) if jobs.len() > 1 => {
                tracing::error!(error = %e, reports = jobs.len(), "storing a batch panicked; storing its reports one by one");
                let mut out = Vec::with_capacity(jobs.len());
                for j in &jobs {
                    out.push(alone(&store, j.item.clone()).await);
                }
                out
            }
            Err(_) => {
                let r = &jobs[0].item.0;
                tracing::error!(report = %r.report_id, agent = %r.agent_id, unit = %r.unit_id, "storing this report panics; it can never be stored");
                vec![Err(WriteError::panicked())]
            }
        };
        for (job, result) in jobs.into_iter().zip(results) {
            let _ = job.reply.send(result);
        }
    }
}

/// Stores one report in a task of its own.
async fn alone(store: &Store, item: Item) -> Outcome {
    let s = store.clone();
    let report = item.0.clone();
    match tokio::spawn(async move { s.insert_report(&item.0, &item.1, Utc::now()).await }).await {
        Ok(r) => r.map_err(|e| {
            let e = WriteError::of(&e);
            tracing::error!(report = %report.report_id, agent = %report.agent_id, unit = %report.unit_id, error = %e, "report not stored");
            e
        }),
        Err(_) => {
            tracing::error!(report = %report.report_id, agent = %report.agent_id, unit = %report.unit_id, "storing this report panics; it can never be stored");
            Err(WriteError::panicked())
        }
    }
}

/// Stores a sorted batch; one result per report, in order.
async fn store_batch(store: Store, items: Vec<Item>) -> Vec<Outcome> {
    let now = Utc::now();
    let batch: Vec<(&Report, &str)> = items.iter().map(|(r, b)| (&**r, &**b)).collect();
    match store.insert_reports(&batch, now).await {
        Ok(results) => results.into_iter().map(Ok).collect(),
        // A report that breaks the batch: store the others one by one. Not when the
        // database itself is away — then every one would wait for it again.
        Err(e) if items.len() > 1 && !e.is_unreachable() => {
            tracing::warn!(error = %e, reports = items.len(), "batch not stored; storing its reports one by one");
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                // Once the database fails for want of itself (not this report), the rest
                // would only wait for it one by one: they are told to retry.
                let r = match out.last() {
                    Some(Err(e @ WriteError::Transient(_))) => Err(e.clone()),
                    _ => alone(&store, item).await,
                };
                out.push(r);
            }
            out
        }
        Err(e) => {
            tracing::error!(error = %e, reports = items.len(), "batch not stored; agents will retry");
            let e = WriteError::of(&e);
            items.iter().map(|_| Err(e.clone())).collect()
        }
    }
}

/// Whether the database refuses the report itself, so that trying again cannot help
/// ([`StoreError::is_permanent`]).
pub fn permanent(e: &StoreError) -> bool {
    e.is_permanent()
}
