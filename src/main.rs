use clap::Parser;

fn main() {
    // Invoked as `git` or `gt` through a shim symlink: classify and pass on or refuse.
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    let base = argv0.rsplit('/').next().unwrap_or("");
    if let Some(tool) = devloop::guard::policy::Tool::from_name(base) {
        let rest: Vec<String> = args.collect();
        let result = devloop::guard::shim::run_shim(tool, &rest).map(|never| match never {});
        std::process::exit(devloop::cli::finish(result.map_err(Into::into)).code());
    }
    let rest: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if rest.first().is_some_and(|a| a == devloop::proc::SUPERVISE_ARG) {
        std::process::exit(devloop::proc::supervise(&rest[1..]));
    }
    // Agent phases run under this same binary as their supervisor (src/proc.rs). On Linux through
    // /proc/self/exe, which still execs this binary if its file was replaced during the run.
    let self_exe = std::path::Path::new("/proc/self/exe");
    if self_exe.exists() {
        devloop::proc::set_supervisor_exe(self_exe.to_path_buf());
    } else if let Ok(exe) = std::env::current_exe() {
        devloop::proc::set_supervisor_exe(exe);
    }
    let cli = devloop::cli::Cli::parse();
    std::process::exit(devloop::cli::finish(devloop::cli::run(cli)).code());
}
