//! How a Kaohe binary runs as a process: the one place that builds its tokio runtime and
//! waits for the signals that stop it. `kaohe-agent`, `kaohe-collector` and `kaohe-lab`
//! all start through here, so a change of thread count or of the signals honoured is made
//! once. [`testing`] holds the one rule for tests that need what a machine may lack.

use std::future::Future;

pub mod testing;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Worker threads of every Kaohe runtime: the agent's work is waiting on the network, the
/// collector's is bounded by the database and the two cores a bureau host or a small
/// provincial server has; more threads only add memory.
pub const WORKER_THREADS: usize = 2;

/// The multi-threaded runtime every Kaohe binary runs on (timers and I/O enabled).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
}

/// Runs `future` to completion on a new [`runtime`]; the error is the runtime's own, when
/// it cannot start (no threads, no file descriptors).
pub fn block_on<F: Future>(future: F) -> std::io::Result<F::Output> {
    Ok(runtime()?.block_on(future))
}

/// The signals that stop a Kaohe process, installed together: SIGTERM (systemd, `kill`),
/// SIGINT (Ctrl-C) and, for interactive tools such as the demo, SIGHUP (the terminal
/// closed). Once installed, none of them takes its default action (ending the process)
/// any more; each arrival is seen by [`StopSignals::recv`].
#[derive(Debug)]
pub struct StopSignals {
    term: Signal,
    int: Signal,
    hup: Option<Signal>,
}

impl StopSignals {
    /// Installs the handlers now (so a signal that arrives before the first `recv` is not
    /// lost and does not kill the process). Must be called inside a tokio runtime.
    pub fn install(with_hangup: bool) -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: if with_hangup {
                Some(signal(SignalKind::hangup())?)
            } else {
                None
            },
        })
    }

    /// Waits for the next stop signal.
    pub async fn recv(&mut self) {
        let hup = async {
            match &mut self.hup {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
            _ = hup => {}
        }
    }
}

/// Resolves when SIGTERM or SIGINT arrives: a service's shutdown. If the handlers cannot
/// be installed (no signal driver), it never resolves, so the caller's other branches decide.
pub async fn stop_signal() {
    match StopSignals::install(false) {
        Ok(mut s) => s.recv().await,
        Err(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_starts_and_runs_a_future() {
        assert_eq!(block_on(async { 40 + 2 }).expect("runtime starts"), 42);
    }

    #[test]
    fn a_sigterm_to_this_process_ends_the_wait_and_a_sighup_too_when_asked() {
        let rt = runtime().expect("runtime starts");
        rt.block_on(async {
            let pid = std::process::id().to_string();
            for (name, hangup) in [("-TERM", false), ("-HUP", true)] {
                let mut stop = StopSignals::install(hangup).expect("handlers install");
                let sent = std::process::Command::new("kill").args([name, &pid]).status();
                assert!(sent.expect("kill runs").success());
                tokio::time::timeout(std::time::Duration::from_secs(5), stop.recv())
                    .await
                    .unwrap_or_else(|_| panic!("{name} ends the wait"));
            }
        });
    }

    #[test]
    fn stop_signal_resolves_on_sigint() {
        let rt = runtime().expect("runtime starts");
        rt.block_on(async {
            // Installed first, so the SIGINT never takes its default action however late
            // the task below first runs; stop_signal's own handler sees a later one.
            let _guard = StopSignals::install(false).expect("handlers install");
            let mut waiting = tokio::spawn(stop_signal());
            let pid = std::process::id().to_string();
            for _ in 0..50 {
                let sent = std::process::Command::new("kill").args(["-INT", &pid]).status();
                assert!(sent.expect("kill runs").success());
                let wait = tokio::time::timeout(std::time::Duration::from_millis(100), &mut waiting);
                if let Ok(done) = wait.await {
                    done.expect("task ran");
                    return;
                }
            }
            panic!("five seconds of SIGINT did not end stop_signal");
        });
    }
}
