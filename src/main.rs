use clap::Parser;

fn main() {
    let cli = devloop::cli::Cli::parse();
    let code = match devloop::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = e.to_string();
            let one_line = msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
            eprintln!("loop: error: {one_line}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
