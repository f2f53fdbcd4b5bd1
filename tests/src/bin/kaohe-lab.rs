//! `kaohe-lab`: builds, inspects and tears down the network lab, and runs the lab's
//! helpers (probes, listeners, flapper) inside its namespaces. `deploy/lab/lab` runs
//! it; the logic lives in `kaohe_tests::lab`.

fn main() {
    std::process::exit(kaohe_tests::lab::cli::main());
}
