//! `kaohe-lab`: builds, inspects and tears down the network lab, and runs the lab's
//! helpers (probes, listeners, flapper) inside its namespaces. `deploy/lab/lab` runs
//! it; the logic lives in `kaohe_tests::lab`. `kaohe-lab demo` (`deploy/demo`) runs the
//! whole chain in the lab for people: see `tests/src/demo.rs`.

#[path = "../demo.rs"]
mod demo;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("demo") {
        std::process::exit(demo::main(&args[1..]));
    }
    let code = kaohe_tests::lab::cli::main();
    if matches!(args.first().map(String::as_str), None | Some("help" | "--help" | "-h")) {
        println!("\n  demo [--minutes N] [--port N] [--exit-after-table] ...");
        println!("                                 the demo: lab, collector, agents, score table (demo --help)");
    }
    std::process::exit(code);
}
