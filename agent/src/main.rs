//! kaohe-agent: observes a bureau's private network and reports to the collector.
//! So far only the command-line shell exists; the checks follow.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "kaohe-agent",
    version,
    about = "考核代理: 探测司法行政专网连通性、隔离与串联, 清点局域网设备 (Kaohe agent)"
)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!(
        "kaohe-agent {}: 检测功能尚未实现, 见 issue 4 (checks not implemented yet)",
        env!("CARGO_PKG_VERSION")
    );
}
