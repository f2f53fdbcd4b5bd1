//! `kaohe-lab`: the lab, the demo and the benchmarks (see [`kaohe_lab::cli`]).

fn main() {
    std::process::exit(kaohe_lab::cli::main());
}
