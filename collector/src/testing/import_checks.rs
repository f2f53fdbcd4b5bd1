//! What every registry import must hold for any bytes at all, shared by the seeded
//! mutation test (`tests/hostile_imports.rs`) and the cargo-fuzz targets (`fuzz/`): no
//! panic; a refusal names at least one problem; what is accepted is within the limits,
//! holds no NUL, and exports to CSV that imports back to the same entries.

use crate::xlsx::registry_from_bytes;
use kaohe_rubric::registry::{Registry, limits};

/// Imports `bytes` as a user's file would be, and checks the result.
pub fn check_import(bytes: &[u8]) -> bool {
    match registry_from_bytes(bytes, "input") {
        Ok(registry) => {
            check_accepted(&registry);
            true
        }
        Err(e) => {
            assert!(!e.problems.is_empty(), "a refusal names a problem");
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

fn check_accepted(registry: &Registry) {
    assert!(registry.entries.len() < limits::MAX_ROWS);
    for e in &registry.entries {
        let texts = [Some(&e.name), e.user.as_ref(), e.location.as_ref(), e.url.as_ref()];
        for t in texts.into_iter().flatten() {
            assert!(!t.contains('\0'), "a NUL was accepted: {t:?}");
            assert!(
                t.chars().count() <= limits::MAX_CELL_CHARS,
                "{} characters",
                t.chars().count()
            );
        }
    }
    let exported = registry.to_csv();
    let again = Registry::from_csv(exported.as_bytes(), "export")
        .unwrap_or_else(|e| panic!("an accepted registry's export must import: {e}\n{exported}"));
    let strip = |r: &Registry| {
        let mut r = r.clone();
        for e in &mut r.entries {
            e.line = 0;
        }
        r
    };
    assert_eq!(
        strip(&again),
        strip(registry),
        "export imports back to the same entries"
    );
}
