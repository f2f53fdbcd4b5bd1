//! For tests that run the workspace's binaries or need what a machine may lack.
//!
//! - [`built_binary`]: a binary built from the current sources. The first call in a
//!   test process runs `cargo build` for the workspace's binaries (same profile, same
//!   target dir as the test), so a test never runs a stale `kaohe-agent`.
//! - [`require`]: a test that cannot do its real part (no root, no PostgreSQL) skips
//!   and says so; with `CI=true` it fails instead, naming what is missing, so a CI run
//!   that lost root or PostgreSQL is not green.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The packages whose binaries tests run: the agent, the collector and `kaohe-lab`.
const BINARY_PACKAGES: [&str; 3] = ["kaohe-agent", "kaohe-collector", "kaohe-lab"];

pub use kaohe_process::testing::{in_ci, require};

/// [`require`] for root, which the lab needs (network namespaces, veth, sysctl).
pub fn require_root(test: &str) -> bool {
    require(test, crate::is_root(), "root (network namespaces)")
}

/// A workspace binary (`kaohe-agent`, `kaohe-collector`, `kaohe-lab`) built from the
/// current sources into the running test's target dir. The first call in a process
/// builds them all (`cargo build --bins`, a no-op when nothing changed); it panics with
/// cargo's output when the build fails.
pub fn built_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, BuildError>> = OnceLock::new();
    match BUILT.get_or_init(build_binaries) {
        Ok(dir) => dir.join(name),
        Err(e) => panic!("{e}"),
    }
}

/// Why the workspace's binaries could not be built for a test (cargo's own output included).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(String);

impl From<String> for BuildError {
    fn from(s: String) -> Self {
        BuildError(s)
    }
}

/// Builds the binaries with the profile and target dir of the running test executable
/// (`TARGET/PROFILE/deps/TEST-HASH`); returns `TARGET/PROFILE`.
fn build_binaries() -> Result<PathBuf, BuildError> {
    let exe = std::env::current_exe().map_err(|e| format!("the test executable: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in TARGET/PROFILE/deps", exe.display()))?;
    let target_dir = profile_dir
        .parent()
        .filter(|t| t.join("CACHEDIR.TAG").exists())
        .ok_or_else(|| format!("no cargo target dir above {}", profile_dir.display()))?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => return Err(format!("{} has no profile name", profile_dir.display()).into()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--quiet", "--bins", "--profile", profile])
        .arg("--manifest-path")
        .arg(&workspace)
        .arg("--target-dir")
        .arg(target_dir);
    for p in BINARY_PACKAGES {
        cmd.args(["-p", p]);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("running {}: {e}", cargo.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "building the workspace's binaries failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(profile_dir.to_path_buf())
}
