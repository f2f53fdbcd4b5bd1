//! Periods as a URL or the command line gives them, mutated: parsing never panics (F10:
//! `202é-1-01` panicked), and what parses prints back to itself. A seeded, bounded run on
//! stable Rust; `rubric/fuzz` has the cargo-fuzz target for longer runs.

use kaohe_rubric::testing::period as period_checks;

use kaohe_rubric::testing::rng::Rng;

const SEEDS: [&str; 8] = [
    "2026",
    "2026-Q4",
    "2026-11",
    "2026-11-02",
    "2026-11-01..2026-11-07",
    "2025-12-01..2026-11-30",
    "202é-1-01",
    " 2026-q1 ",
];

/// Characters a period is made of, and some it must survive: multi-byte letters and digits,
/// signs, NUL, a percent from an undecoded URL.
const ALPHABET: [char; 24] = [
    '0', '1', '2', '6', '9', '-', '.', 'Q', 'q', ' ', '+', 'é', '２', '٣', '\0', '%', 'C', '3', 'A', '9', '…', '中',
    '\u{feff}', ':',
];

#[test]
fn mutated_periods_never_panic_and_what_parses_prints_back() {
    let mut rng = Rng(0x0005_eed0_f9e7_10d5);
    let mut parsed = 0u32;
    for i in 0..200_000u32 {
        let mut s: Vec<char> = if i % 4 == 0 {
            // Any short string of the alphabet.
            (0..rng.next_u64() % 24).map(|_| rng.pick(&ALPHABET)).collect()
        } else {
            rng.pick(&SEEDS).chars().collect()
        };
        for _ in 0..=(rng.next_u64() % 3) {
            let at = if s.is_empty() {
                0
            } else {
                (rng.next_u64() % s.len() as u64) as usize
            };
            match rng.next_u64() % 3 {
                0 if !s.is_empty() => s[at] = rng.pick(&ALPHABET),
                1 => s.insert(at, rng.pick(&ALPHABET)),
                _ if !s.is_empty() => {
                    s.remove(at);
                }
                _ => {}
            }
        }
        let text: String = s.into_iter().collect();
        if period_checks::check_period(&text) {
            parsed += 1;
        }
    }
    assert!(parsed > 1_000, "mutations near valid periods still parse: {parsed}");
}

#[test]
fn the_reported_strings_are_refused() {
    for s in ["202é-1-01", "202%C3%A9-1-01"] {
        assert!(!period_checks::check_period(s), "{s}");
    }
}
