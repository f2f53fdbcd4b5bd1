//! Request bodies, read only when the handler decides to, and bounded three ways: in size
//! (413 before a byte is read when `Content-Length` says too much), in time (the whole body
//! within `body_timeout_secs`, else 408), and in total: every body being read holds its size
//! from one process-wide budget (`max_inflight_body_mib`), so a crowd of clients cannot make
//! the collector hold more than that in bodies at once (503 with `Retry-After` when it is
//! spent: a real, transient overload).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The process-wide budget of body bytes being read or held, in KiB.
#[derive(Debug, Clone)]
pub struct Budget {
    kib: Arc<Semaphore>,
    total_kib: u32,
    pub timeout: Duration,
}

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Over the limit (bytes): 413.
    TooLarge { limit: usize },
    /// Not all there within the timeout: 408.
    TimedOut { secs: u64 },
    /// The budget is spent: 503, retry later.
    Busy,
    /// The connection failed while reading: 400.
    Read(String),
}

impl BodyError {
    /// The status, and the message Chinese first.
    pub fn status_and_message(&self) -> (axum::http::StatusCode, String) {
        use axum::http::StatusCode;
        match self {
            BodyError::TooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "请求体超过上限 {} KiB (body larger than {} KiB)",
                    limit / 1024,
                    limit / 1024
                ),
            ),
            BodyError::TimedOut { secs } => (
                StatusCode::REQUEST_TIMEOUT,
                format!("请求体未在 {secs} 秒内收完 (body not received within {secs} s)"),
            ),
            BodyError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "采集中心繁忙, 请稍后重试 (server busy; retry later)".into(),
            ),
            BodyError::Read(e) => (
                StatusCode::BAD_REQUEST,
                format!("请求体读取失败 (cannot read the body): {e}"),
            ),
        }
    }
}

/// A body that was read, and its share of the budget, held until dropped.
#[derive(Debug)]
pub struct Held {
    pub bytes: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Budget {
    pub fn new(total_mib: usize, timeout: Duration) -> Budget {
        let total_kib = u32::try_from(total_mib.saturating_mul(1024)).unwrap_or(u32::MAX).max(1);
        Budget {
            kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            timeout,
        }
    }

    /// The whole budget, MiB.
    pub fn total_mib(&self) -> u32 {
        self.total_kib / 1024
    }

    /// KiB of the budget free now.
    pub fn available_kib(&self) -> usize {
        self.kib.available_permits()
    }

    /// Takes `kib` more of the budget, at once or not at all.
    fn take(&self, kib: u32, held: &mut Option<OwnedSemaphorePermit>) -> Result<(), BodyError> {
        if kib == 0 {
            return Ok(());
        }
        if kib > self.total_kib {
            return Err(BodyError::Busy);
        }
        let more = self
            .kib
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| BodyError::Busy)?;
        match held {
            Some(p) => p.merge(more),
            None => *held = Some(more),
        }
        Ok(())
    }

    /// Reads a whole body of at most `limit` bytes within the timeout.
    ///
    /// A body a little over the limit (by at most [`DRAIN_MAX`]) is read to its end and
    /// dropped before the 413, so that a client still sending it reads the answer instead
    /// of a reset connection; a bigger one is refused at once.
    pub async fn read(&self, headers: &HeaderMap, body: Body, limit: usize) -> Result<Held, BodyError> {
        let declared = declared_length(headers);
        if let Some(n) = declared
            && n > limit as u64
        {
            if n <= (limit + DRAIN_MAX) as u64 {
                self.drain(body, n as usize).await;
            }
            return Err(BodyError::TooLarge { limit });
        }
        let mut permit = None;
        // A declared length is reserved whole; otherwise the body pays as it grows.
        let mut reserved_kib = declared.map_or(0, |n| kib_of(n as usize));
        self.take(reserved_kib, &mut permit)?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut body = body;
        let mut buf: Vec<u8> = Vec::with_capacity(declared.map_or(0, |n| n as usize));
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    return Err(BodyError::TimedOut {
                        secs: self.timeout.as_secs(),
                    });
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(BodyError::Read(e.to_string())),
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else { continue };
            if buf.len() + data.len() > limit {
                let seen = buf.len() + data.len();
                drop(buf);
                drop(permit);
                self.drain_rest(body, seen, limit + DRAIN_MAX, deadline).await;
                return Err(BodyError::TooLarge { limit });
            }
            buf.extend_from_slice(&data);
            let need = kib_of(buf.len());
            if need > reserved_kib {
                self.take(need - reserved_kib, &mut permit)?;
                reserved_kib = need;
            }
        }
        Ok(Held {
            bytes: Bytes::from(buf),
            _permit: permit,
        })
    }
}

/// How far over its limit a body is still read (and dropped) before the 413.
pub const DRAIN_MAX: usize = 1 << 20;

impl Budget {
    /// Reads and drops a body of `declared` bytes, within the timeout.
    async fn drain(&self, body: Body, declared: usize) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        self.drain_rest(body, 0, declared, deadline).await;
    }

    /// Reads and drops the rest of a body, while the total stays within `max` bytes.
    async fn drain_rest(&self, mut body: Body, mut seen: usize, max: usize, deadline: tokio::time::Instant) {
        while seen <= max {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(f))) => seen += f.data_ref().map_or(0, |d| d.len()),
                _ => return,
            }
        }
    }
}

fn kib_of(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// The `Content-Length` a request declares, if any.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(len: Option<u64>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(n) = len {
            h.insert(header::CONTENT_LENGTH, n.to_string().parse().expect("value"));
        }
        h
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let b = Budget::new(1, Duration::from_secs(1));
        let e = b
            .read(&headers(Some(5000)), Body::from(vec![b' '; 10]), 4096)
            .await
            .expect_err("too large");
        assert_eq!(e, BodyError::TooLarge { limit: 4096 });
        assert_eq!(b.available_kib(), 1024, "nothing held");
    }

    #[tokio::test]
    async fn bodies_hold_the_budget_until_dropped_and_the_spent_budget_says_busy() {
        let b = Budget::new(1, Duration::from_secs(1));
        let one = b
            .read(&headers(Some(600 * 1024)), Body::from(vec![b'x'; 600 * 1024]), 1 << 20)
            .await
            .expect("fits");
        assert_eq!(one.bytes.len(), 600 * 1024);
        assert_eq!(b.available_kib(), 424);
        let e = b
            .read(&headers(Some(600 * 1024)), Body::from(vec![b'x'; 600 * 1024]), 1 << 20)
            .await
            .expect_err("budget spent");
        assert_eq!(e, BodyError::Busy);
        drop(one);
        assert_eq!(b.available_kib(), 1024);
    }

    #[tokio::test]
    async fn an_undeclared_body_pays_as_it_grows_and_stops_at_the_limit() {
        let b = Budget::new(1, Duration::from_secs(1));
        let e = b
            .read(&headers(None), Body::from(vec![b'x'; 5000]), 4096)
            .await
            .expect_err("over the limit");
        assert_eq!(e, BodyError::TooLarge { limit: 4096 });
        let ok = b
            .read(&headers(None), Body::from(vec![b'x'; 3000]), 4096)
            .await
            .expect("fits");
        assert_eq!(b.available_kib(), 1024 - 3);
        drop(ok);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_times_out_and_gives_the_budget_back() {
        let b = Budget::new(1, Duration::from_secs(5));
        let stalled = Body::new(Stalls(Some(Bytes::from_static(b"{"))));
        let e = b.read(&headers(Some(100)), stalled, 4096).await.expect_err("stalls");
        assert_eq!(e, BodyError::TimedOut { secs: 5 });
        assert_eq!(b.available_kib(), 1024, "the budget came back");
    }

    /// A body that sends one chunk and then nothing, forever.
    struct Stalls(Option<Bytes>);

    impl hyper::body::Body for Stalls {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
            match self.0.take() {
                Some(b) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(b)))),
                None => std::task::Poll::Pending,
            }
        }
    }
}
