//! How a Kaohe binary runs as a process: the one place that builds its tokio runtime and
//! waits for the signals that stop it. `kaohe-agent`, `kaohe-collector` and `kaohe-lab`
//! all start through here, so a change of thread count or of the signals honoured is made
//! once.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};

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

/// The signals that stop a Kaohe service: SIGTERM (systemd, `kill`) and SIGINT (Ctrl-C).
pub const STOP_SIGNALS: &[&str] = &["SIGTERM", "SIGINT"];

/// Resolves when SIGTERM or SIGINT arrives. A signal that cannot be watched (no signal
/// driver) is waited for as never arriving, so the caller's other branches decide.
pub async fn stop_signal() {
    tokio::select! {
        _ = watch(SignalKind::terminate()) => {}
        _ = watch(SignalKind::interrupt()) => {}
    }
}

/// Resolves when SIGTERM, SIGINT or SIGHUP arrives: for interactive tools (the demo), whose
/// terminal closing must stop them as well.
pub async fn stop_or_hangup_signal() {
    tokio::select! {
        _ = stop_signal() => {}
        _ = watch(SignalKind::hangup()) => {}
    }
}

async fn watch(kind: SignalKind) {
    match signal(kind) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
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
    fn a_sigterm_to_this_process_ends_the_wait() {
        let rt = runtime().expect("runtime starts");
        rt.block_on(async {
            // Installed before the first SIGTERM, so the signal never takes the default
            // action (ending the test process), however late the task below first runs.
            let _guard = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut waiting = tokio::spawn(stop_signal());
            let pid = std::process::id().to_string();
            for _ in 0..50 {
                let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status();
                assert!(sent.expect("kill runs").success());
                let wait = tokio::time::timeout(std::time::Duration::from_millis(100), &mut waiting);
                if let Ok(done) = wait.await {
                    done.expect("task ran");
                    return;
                }
            }
            panic!("five seconds of SIGTERM did not end the wait");
        });
    }
}
