//! Request bodies, read only when the handler decides to, and bounded three ways: in size
//! (413 before a byte is read when `Content-Length` says too much), in time (the whole body
//! within `body_timeout_secs`, else 408), and in total: a body holds the memory it actually
//! takes from a budget as its bytes arrive, so a crowd of clients cannot make the collector
//! hold more than the budget in bodies at once (503 with `Retry-After` when it is spent: a
//! real, transient overload). A declared length reserves nothing: a client that sends
//! headers and stalls holds no budget.
//!
//! The collector keeps two budgets: one for clients that proved who they are (agents with
//! a credential, dashboard users with a session), one small one for strangers (enrolment,
//! the login form), which also bounds what each source address may hold. Strangers can
//! therefore never spend the agents' budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The strangers' budget: bodies sent before any credential (enrolment, the login form),
/// 4 MiB in all and 64 KiB per source address.
pub const STRANGERS_KIB: usize = 4096;
pub const STRANGERS_PER_SOURCE_KIB: u32 = 64;

/// The two budgets of a collector process.
#[derive(Debug, Clone)]
pub struct Budgets {
    /// Clients that proved who they are: `max_inflight_body_mib`.
    pub members: Budget,
    /// Everybody else.
    pub strangers: Budget,
}

impl Budgets {
    pub fn new(members_mib: usize, timeout: Duration) -> Budgets {
        Budgets {
            members: Budget::new(members_mib, timeout),
            strangers: Budget::with_kib(STRANGERS_KIB, Some(STRANGERS_PER_SOURCE_KIB), timeout),
        }
    }
}

/// KiB held per source address.
type Shares = Arc<Mutex<HashMap<IpAddr, u32>>>;

/// A budget of body bytes being read or held, in KiB.
#[derive(Debug, Clone)]
pub struct Budget {
    kib: Arc<Semaphore>,
    total_kib: u32,
    /// KiB each source may hold at once, and what each holds now.
    per_source: Option<(u32, Shares)>,
    pub timeout: Duration,
}

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Over the limit (bytes): 413.
    TooLarge { limit: usize },
    /// Not all there within the timeout: 408.
    TimedOut { secs: u64 },
    /// The budget (or this source's share of it) is spent: 503, retry later.
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
    _share: Share,
}

/// What a body holds of a budget; given back when dropped.
#[derive(Debug, Default)]
struct Share {
    permit: Option<OwnedSemaphorePermit>,
    source: Option<(IpAddr, u32, Shares)>,
}

impl Drop for Share {
    fn drop(&mut self) {
        if let Some((ip, kib, map)) = self.source.take() {
            let mut m = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(held) = m.get_mut(&ip) {
                *held = held.saturating_sub(kib);
                if *held == 0 {
                    m.remove(&ip);
                }
            }
        }
    }
}

impl Budget {
    pub fn new(total_mib: usize, timeout: Duration) -> Budget {
        Budget::with_kib(total_mib.saturating_mul(1024), None, timeout)
    }

    /// A budget of `total_kib`, of which each source address may hold `per_source_kib`.
    pub fn with_kib(total_kib: usize, per_source_kib: Option<u32>, timeout: Duration) -> Budget {
        let total_kib = u32::try_from(total_kib).unwrap_or(u32::MAX).max(1);
        Budget {
            kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            per_source: per_source_kib.map(|k| (k, Arc::new(Mutex::new(HashMap::new())))),
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

    /// Takes `kib` more of the budget (and of the source's share), at once or not at all.
    fn take(&self, kib: u32, source: Option<IpAddr>, share: &mut Share) -> Result<(), BodyError> {
        if kib == 0 {
            return Ok(());
        }
        if kib > self.total_kib {
            return Err(BodyError::Busy);
        }
        if let (Some((cap, map)), Some(ip)) = (&self.per_source, source) {
            let mut m = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let held = m.entry(ip).or_insert(0);
            if held.saturating_add(kib) > *cap {
                if *held == 0 {
                    m.remove(&ip);
                }
                return Err(BodyError::Busy);
            }
            *held += kib;
            match &mut share.source {
                Some((_, k, _)) => *k += kib,
                None => share.source = Some((ip, kib, map.clone())),
            }
        }
        let more = self
            .kib
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| BodyError::Busy)?;
        match &mut share.permit {
            Some(p) => p.merge(more),
            None => share.permit = Some(more),
        }
        Ok(())
    }

    /// Reads a whole body of at most `limit` bytes within the timeout, charging the memory
    /// it takes as it arrives (to `source`'s share too, if the budget has shares).
    ///
    /// A body a little over the limit (by at most [`DRAIN_MAX`]) is read to its end and
    /// dropped before the 413, so that a client still sending it reads the answer instead
    /// of a reset connection; a bigger one is refused at once.
    pub async fn read(
        &self,
        headers: &HeaderMap,
        body: Body,
        limit: usize,
        source: Option<IpAddr>,
    ) -> Result<Held, BodyError> {
        let declared = declared_length(headers);
        if let Some(n) = declared
            && n > limit as u64
        {
            if n <= (limit + DRAIN_MAX) as u64 {
                self.drain(body, n as usize).await;
            }
            return Err(BodyError::TooLarge { limit });
        }
        let source = source.map(source_key);
        let mut share = Share::default();
        let mut charged_kib = 0;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut body = body;
        let mut buf: Vec<u8> = Vec::new();
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
                drop(share);
                self.drain_rest(body, seen, limit + DRAIN_MAX, deadline).await;
                return Err(BodyError::TooLarge { limit });
            }
            // Grow to what is declared (if it is within the limit) or by doubling, and pay
            // for the memory taken before taking it.
            let want = buf.len() + data.len();
            if want > buf.capacity() {
                let target = match declared {
                    Some(n) if n as usize >= want => n as usize,
                    _ => want.max(buf.capacity() * 2).min(limit),
                };
                let need = kib_of(target);
                if need > charged_kib {
                    self.take(need - charged_kib, source, &mut share)?;
                    charged_kib = need;
                }
                buf.reserve_exact(target - buf.len());
            }
            buf.extend_from_slice(&data);
        }
        Ok(Held {
            bytes: Bytes::from(buf),
            _share: share,
        })
    }
}

/// A source address as the limits count it: an IPv6 address by its /64 (one host can
/// hold a whole /64), an IPv4-mapped one as IPv4.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
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
            .read(&headers(Some(5000)), Body::from(vec![b' '; 10]), 4096, None)
            .await
            .expect_err("too large");
        assert_eq!(e, BodyError::TooLarge { limit: 4096 });
        assert_eq!(b.available_kib(), 1024, "nothing held");
    }

    #[tokio::test]
    async fn bodies_hold_the_budget_until_dropped_and_the_spent_budget_says_busy() {
        let b = Budget::new(1, Duration::from_secs(1));
        let one = b
            .read(
                &headers(Some(600 * 1024)),
                Body::from(vec![b'x'; 600 * 1024]),
                1 << 20,
                None,
            )
            .await
            .expect("fits");
        assert_eq!(one.bytes.len(), 600 * 1024);
        assert_eq!(b.available_kib(), 424);
        let e = b
            .read(
                &headers(Some(600 * 1024)),
                Body::from(vec![b'x'; 600 * 1024]),
                1 << 20,
                None,
            )
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
            .read(&headers(None), Body::from(vec![b'x'; 5000]), 4096, None)
            .await
            .expect_err("over the limit");
        assert_eq!(e, BodyError::TooLarge { limit: 4096 });
        let ok = b
            .read(&headers(None), Body::from(vec![b'x'; 3000]), 4096, None)
            .await
            .expect("fits");
        assert_eq!(b.available_kib(), 1024 - 3);
        drop(ok);
    }

    #[tokio::test(start_paused = true)]
    async fn headers_that_declare_a_body_and_stall_hold_nothing() {
        let b = Budget::new(1, Duration::from_secs(5));
        let stalled = Body::new(Stalls(None));
        let reading = tokio::spawn({
            let b = b.clone();
            async move { b.read(&headers(Some(600 * 1024)), stalled, 1 << 20, None).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(b.available_kib(), 1024, "a declared length reserves nothing");
        assert_eq!(
            reading.await.expect("task").expect_err("stalls"),
            BodyError::TimedOut { secs: 5 }
        );
    }

    #[tokio::test]
    async fn each_source_holds_at_most_its_share_of_a_strangers_budget() {
        let b = Budget::with_kib(1024, Some(64), Duration::from_secs(1));
        let a = IpAddr::from([192, 0, 2, 1]);
        let one = b
            .read(
                &headers(Some(40 * 1024)),
                Body::from(vec![b'x'; 40 * 1024]),
                64 * 1024,
                Some(a),
            )
            .await
            .expect("within the share");
        let e = b
            .read(
                &headers(Some(40 * 1024)),
                Body::from(vec![b'x'; 40 * 1024]),
                64 * 1024,
                Some(a),
            )
            .await
            .expect_err("the source's share is spent");
        assert_eq!(e, BodyError::Busy);
        let other = IpAddr::from([192, 0, 2, 2]);
        assert!(
            b.read(
                &headers(Some(40 * 1024)),
                Body::from(vec![b'x'; 40 * 1024]),
                64 * 1024,
                Some(other)
            )
            .await
            .is_ok(),
            "another source has its own share"
        );
        drop(one);
        assert!(
            b.read(
                &headers(Some(40 * 1024)),
                Body::from(vec![b'x'; 40 * 1024]),
                64 * 1024,
                Some(a)
            )
            .await
            .is_ok(),
            "the share came back"
        );
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64_and_a_mapped_address_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key("2001:db8:1:3::1".parse().expect("ip")));
        assert_eq!(
            source_key("::ffff:192.0.2.7".parse().expect("ip")),
            IpAddr::from([192, 0, 2, 7])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_times_out_and_gives_the_budget_back() {
        let b = Budget::new(1, Duration::from_secs(5));
        let stalled = Body::new(Stalls(Some(Bytes::from_static(b"{"))));
        let e = b
            .read(&headers(Some(100)), stalled, 4096, None)
            .await
            .expect_err("stalls");
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
